import * as net from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 that a test can cut: every connection through
 * it is destroyed and new ones are refused (accepted and reset) until
 * `restore()` — a network that fails between two hosts. With `capBytes`,
 * each connection delivers at most that many bytes from the target and then
 * stalls (a link that stops delivering), until `restore()` lifts the cap for
 * the connections made after it.
 */
export class CuttableProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #cut = false;
  #capBytes = Number.POSITIVE_INFINITY;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(
    targetPort: number,
    { host = "127.0.0.1", capBytes }: { host?: string; capBytes?: number } = {},
  ): Promise<CuttableProxy> {
    let proxy: CuttableProxy | undefined;
    const server = net.createServer((client) => proxy!.#forward(client, targetPort, host));
    proxy = new CuttableProxy(server);
    if (capBytes !== undefined) proxy.#capBytes = capBytes;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  cut(): void {
    this.#cut = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  restore(): void {
    this.#cut = false;
    this.#capBytes = Number.POSITIVE_INFINITY;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #forward(client: net.Socket, port: number, host: string): void {
    if (this.#cut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(port, host);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      socket.on("error", () => {});
    }
    client.pipe(upstream);
    let left = this.#capBytes;
    upstream.on("data", (data: Buffer) => {
      if (data.length <= left) {
        left -= data.length;
        client.write(data);
        return;
      }
      client.write(data.subarray(0, left));
      left = 0;
      upstream.pause(); // and stays so: this link delivers nothing more
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  }
}
