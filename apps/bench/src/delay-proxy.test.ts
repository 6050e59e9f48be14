import * as net from "node:net";
import { testRandom, waitFor } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { type DelayClock, DelayProxy, measureRtt, realClock } from "./delay-proxy.js";

/**
 * A clock the test holds still: timers wait until the test advances it, so
 * what the proxy has queued can be observed at a chosen instant. `run()`
 * lets it follow real time from then on.
 */
class HeldClock implements DelayClock {
  #time = 0;
  #running: { since: number; from: number } | undefined;
  readonly #timers: Array<{ at: number; callback: () => void }> = [];

  now(): number {
    return this.#running ? this.#running.from + performance.now() - this.#running.since : this.#time;
  }

  after(ms: number, callback: () => void): void {
    if (this.#running) realClock.after(ms, callback);
    else this.#timers.push({ at: this.#time + ms, callback });
  }

  /** Moves the held clock forward, firing the timers that came due, in order. */
  advance(ms: number): void {
    this.#time += ms;
    this.#timers.sort((a, b) => a.at - b.at);
    while (this.#timers.length > 0 && this.#timers[0]!.at <= this.#time) this.#timers.shift()!.callback();
  }

  /** From now on the clock follows real time; held timers fire when theirs comes. */
  run(): void {
    this.#running = { since: performance.now(), from: this.#time };
    for (const { at, callback } of this.#timers.splice(0)) realClock.after(at - this.#time, callback);
  }
}

/** An echo server that counts what reached it. */
async function echoServer() {
  const received = { bytes: 0 };
  const server = net.createServer((socket) => {
    socket.on("data", (data: Buffer) => {
      received.bytes += data.length;
    });
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return { port, received, close };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function proxied(oneWayDelayMs: number, clock: DelayClock, maxQueuedBytes?: number) {
  const echo = await echoServer();
  cleanups.push(echo.close);
  const proxy = await DelayProxy.start({
    target: { host: "127.0.0.1", port: echo.port },
    oneWayDelayMs,
    clock,
    ...(maxQueuedBytes === undefined ? {} : { maxQueuedBytes }),
  });
  cleanups.push(() => proxy.close());
  const socket = net.connect({ host: "127.0.0.1", port: proxy.port });
  cleanups.push(() => {
    socket.destroy();
  });
  const received: Buffer[] = [];
  socket.on("data", (data: Buffer) => received.push(data));
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const receivedBytes = () => received.reduce((sum, data) => sum + data.length, 0);
  return { echo, proxy, socket, received, receivedBytes };
}

describe("DelayProxy", () => {
  it("holds every byte exactly the one-way delay in each direction", async () => {
    const clock = new HeldClock();
    const { echo, proxy, socket, receivedBytes } = await proxied(5, clock);
    socket.write("ping");
    await waitFor(() => proxy.state().queuedBytes === 4, "the proxy to queue the request");
    clock.advance(4.9);
    expect(proxy.state().queuedBytes).toBe(4); // not released early
    clock.advance(0.1);
    await waitFor(() => echo.received.bytes === 4, "the request to reach the server");
    // The echo comes back and is held again, the same time.
    await waitFor(() => proxy.state().queuedBytes === 4, "the proxy to queue the reply");
    clock.advance(4.9);
    expect(receivedBytes()).toBe(0);
    expect(proxy.state().queuedBytes).toBe(4);
    clock.advance(0.1);
    await waitFor(() => receivedBytes() === 4, "the reply to reach the client");
  });

  // The delay is what is measured here: on the real clock it adds at least twice the one-way delay.
  it("adds at least twice the one-way delay to a real round trip", async () => {
    const rtt = await measureRtt(5, 10);
    expect(rtt.minMs).toBeGreaterThanOrEqual(9.5);
  });

  it("preserves every byte in order in both directions, with backpressure", async () => {
    const payload = testRandom().bytes(8 * 1024 * 1024);
    const limit = 1024 * 1024;
    const clock = new HeldClock();
    const { proxy, socket, received, receivedBytes } = await proxied(2, clock, limit);
    socket.write(payload);
    // Time stands still, so nothing is released: the sender is paused once a direction holds the limit.
    await waitFor(() => proxy.state().pausedSenders === 1, "the proxy to pause the sender");
    expect(proxy.state().queuedBytes).toBeGreaterThanOrEqual(limit);
    expect(proxy.state().queuedBytes).toBeLessThan(payload.length);
    clock.run();
    await waitFor(() => receivedBytes() >= payload.length, {
      timeoutMs: 30_000,
      message: "the whole payload to come back",
    });
    expect(Buffer.compare(Buffer.concat(received), payload)).toBe(0);
    // Every byte counted once each way: what the migration benchmark reports as moved.
    expect(proxy.forwarded).toEqual({ toTarget: payload.length, fromTarget: payload.length });
  });
});
