import * as net from "node:net";

/** Bytes a proxy forwarded: from its clients to the target, and back. */
export interface Forwarded {
  toTarget: number;
  fromTarget: number;
}

/** Time as the proxy sees it: the real clock, or one a test holds still to observe what is queued. */
export interface DelayClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls `callback` once `ms` milliseconds have passed on this clock. */
  after(ms: number, callback: () => void): void;
}

export const realClock: DelayClock = {
  now: () => performance.now(),
  after: (ms, callback) => {
    setTimeout(callback, ms);
  },
};

export interface DelayProxyOptions {
  /** Where connections are forwarded to. */
  target: { host: string; port: number } | { path: string };
  /** Delay added to each direction, in milliseconds (RTT grows by twice this). */
  oneWayDelayMs: number;
  /** Bytes held per direction before the sender is paused (backpressure). Default 64 MiB. */
  maxQueuedBytes?: number;
  /** Default: the real clock. */
  clock?: DelayClock;
}

/** What a proxy holds right now, over all its connections and both directions. */
export interface DelayProxyState {
  /** Bytes received and not yet released. */
  queuedBytes: number;
  /** Sockets paused because their direction holds `maxQueuedBytes` (backpressure). */
  pausedSenders: number;
}

/**
 * A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each
 * direction — the stand-in for netem, which this kernel lacks. Bytes keep their
 * order, and throughput is preserved: data is released in bursts as its time
 * comes, not throttled. Timers make the delay about +1 ms coarse; `measureRtt`
 * reports what a run actually got.
 */
export class DelayProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** Bytes forwarded so far, each way, over every connection (what crossed the "network"). */
  readonly forwarded: Forwarded = { toTarget: 0, fromTarget: 0 };
  /** Bytes queued per direction (a socket is the sending side of one). */
  readonly #queued = new Map<net.Socket, number>();

  private constructor(
    server: net.Server,
    readonly options: DelayProxyOptions,
  ) {
    this.#server = server;
  }

  static async start(options: DelayProxyOptions): Promise<DelayProxy> {
    const server = net.createServer();
    const proxy = new DelayProxy(server, options);
    server.on("connection", (client) => proxy.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  state(): DelayProxyState {
    let queuedBytes = 0;
    let pausedSenders = 0;
    for (const [from, bytes] of this.#queued) {
      queuedBytes += bytes;
      if (from.isPaused()) pausedSenders++;
    }
    return { queuedBytes, pausedSenders };
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    const upstream = net.connect(
      "path" in this.options.target ? this.options.target : { ...this.options.target },
    );
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    this.#pipe(client, upstream, "toTarget");
    this.#pipe(upstream, client, "fromTarget");
  }

  /** Forwards `from` → `to`, each piece released `oneWayDelayMs` after it arrived. */
  #pipe(from: net.Socket, to: net.Socket, direction: keyof Forwarded): void {
    const delay = this.options.oneWayDelayMs;
    const limit = this.options.maxQueuedBytes ?? 64 * 1024 * 1024;
    const clock = this.options.clock ?? realClock;
    const queue: Array<{ at: number; data: Buffer }> = [];
    let queued = 0;
    let scheduled = false;
    let ended = false;
    const count = (bytes: number) => {
      queued += bytes;
      if (queued > 0 || !from.destroyed) this.#queued.set(from, queued);
      else this.#queued.delete(from);
    };
    from.on("close", () => count(0));

    const release = () => {
      scheduled = false;
      const now = clock.now();
      while (queue.length > 0 && queue[0]!.at <= now) {
        const { data } = queue.shift()!;
        count(-data.length);
        to.write(data);
      }
      if (queued < limit / 2 && from.isPaused()) from.resume();
      if (queue.length > 0) schedule();
      else if (ended) to.end();
    };
    const schedule = () => {
      if (scheduled) return;
      scheduled = true;
      clock.after(Math.max(0, queue[0]!.at - clock.now()), release);
    };

    from.on("data", (data: Buffer) => {
      this.forwarded[direction] += data.length;
      if (delay <= 0) {
        to.write(data);
        return;
      }
      queue.push({ at: clock.now() + delay, data });
      count(data.length);
      if (queued >= limit) from.pause();
      schedule();
    });
    from.on("end", () => {
      ended = true;
      if (queue.length === 0) to.end();
    });
    from.on("close", () => {
      if (queue.length === 0) to.end();
    });
  }
}

export interface RttSample {
  medianMs: number;
  minMs: number;
  p99Ms: number;
}

/**
 * Measures the round-trip time through a proxy with small ping-pong messages
 * against an echo server behind it, so each benchmark can print the RTT it
 * really ran at.
 */
export async function measureRtt(oneWayDelayMs: number, samples = 20): Promise<RttSample> {
  const echo = net.createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", () => resolve()));
  const proxy = await DelayProxy.start({
    target: { host: "127.0.0.1", port: (echo.address() as net.AddressInfo).port },
    oneWayDelayMs,
  });
  const socket = net.connect({ host: "127.0.0.1", port: proxy.port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const start = performance.now();
      const reply = new Promise<void>((resolve) => socket.once("data", () => resolve()));
      socket.write("x");
      await reply;
      times.push(performance.now() - start);
    }
  } finally {
    socket.destroy();
    await proxy.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  }
  times.sort((a, b) => a - b);
  return {
    medianMs: times[Math.floor(times.length / 2)]!,
    minMs: times[0]!,
    p99Ms: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))]!,
  };
}
