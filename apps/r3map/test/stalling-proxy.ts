import * as net from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 that passes the first `budget` bytes a client
 * sends and then holds the rest (and the client, through backpressure): a
 * transfer caught in the middle, for a test to kill its sender there.
 * Replies flow freely.
 */
export class StallingProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #forwarded = 0;

  private constructor(
    server: net.Server,
    readonly budget: number,
  ) {
    this.#server = server;
  }

  static async start(targetPort: number, budget: number): Promise<StallingProxy> {
    let proxy: StallingProxy | undefined;
    const server = net.createServer((client) => proxy!.#forward(client, targetPort));
    proxy = new StallingProxy(server, budget);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Bytes passed on to the server so far (all clients). */
  get forwarded(): number {
    return this.#forwarded;
  }

  get stalled(): boolean {
    return this.#forwarded >= this.budget;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #forward(client: net.Socket, port: number): void {
    const upstream = net.connect(port, "127.0.0.1");
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.pipe(client);
    client.on("data", (data: Buffer) => {
      const room = Math.max(0, this.budget - this.#forwarded);
      if (room > 0) upstream.write(data.subarray(0, room));
      this.#forwarded += Math.min(room, data.length);
      // Past the budget: hold everything, and stop reading so the sender blocks.
      if (room < data.length) client.pause();
    });
  }
}
