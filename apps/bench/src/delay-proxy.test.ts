import { randomBytes } from "node:crypto";
import * as net from "node:net";
import { describe, expect, it } from "vitest";
import { DelayProxy, measureRtt } from "./delay-proxy.js";

describe("DelayProxy", () => {
  it("adds about twice the one-way delay to the round trip", async () => {
    const rtt = await measureRtt(5, 10);
    expect(rtt.minMs).toBeGreaterThanOrEqual(9.5);
    expect(rtt.medianMs).toBeLessThan(40);
  });

  it("preserves every byte in order in both directions, with backpressure", async () => {
    const payload = randomBytes(8 * 1024 * 1024);
    const echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", () => resolve()));
    const proxy = await DelayProxy.start({
      target: { host: "127.0.0.1", port: (echo.address() as net.AddressInfo).port },
      oneWayDelayMs: 2,
      maxQueuedBytes: 1024 * 1024,
    });
    try {
      const socket = net.connect({ host: "127.0.0.1", port: proxy.port });
      const received: Buffer[] = [];
      let length = 0;
      const done = new Promise<void>((resolve, reject) => {
        socket.on("data", (data: Buffer) => {
          received.push(data);
          length += data.length;
          if (length >= payload.length) resolve();
        });
        socket.on("error", reject);
      });
      socket.write(payload);
      await done;
      socket.destroy();
      expect(Buffer.compare(Buffer.concat(received), payload)).toBe(0);
      // Every byte counted once each way: what the migration benchmark reports as moved.
      expect(proxy.forwarded).toEqual({ toTarget: payload.length, fromTarget: payload.length });
    } finally {
      await proxy.close();
      await new Promise<void>((resolve) => echo.close(() => resolve()));
    }
  });
});
