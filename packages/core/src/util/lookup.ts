import * as dns from "node:dns";
import * as fs from "node:fs";
import * as net from "node:net";

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

let hostsFile: Map<string, dns.LookupAddress[]> | undefined;

/** /etc/hosts, read once (synchronously, a small local file). */
function hosts(): Map<string, dns.LookupAddress[]> {
  if (hostsFile) return hostsFile;
  hostsFile = new Map([
    [
      "localhost",
      [
        { address: "127.0.0.1", family: 4 },
        { address: "::1", family: 6 },
      ],
    ],
  ]);
  try {
    for (const line of fs.readFileSync("/etc/hosts", "utf8").split("\n")) {
      const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
      const family = address ? net.isIP(address) : 0;
      if (!address || family === 0) continue;
      for (const name of names) {
        const known = hostsFile.get(name.toLowerCase()) ?? [];
        if (!known.some((entry) => entry.address === address)) known.push({ address, family });
        hostsFile.set(name.toLowerCase(), known);
      }
    }
  } catch {
    // No hosts file: DNS alone.
  }
  return hostsFile;
}

async function resolve(hostname: string, family: number): Promise<dns.LookupAddress[]> {
  const known = hosts().get(hostname.toLowerCase());
  if (known) return known.filter((entry) => family === 0 || entry.family === family);
  const [v4, v6] = await Promise.all([
    family === 6 ? [] : dns.promises.resolve4(hostname).catch(() => [] as string[]),
    family === 4 ? [] : dns.promises.resolve6(hostname).catch(() => [] as string[]),
  ]);
  return [...v4.map((address) => ({ address, family: 4 })), ...v6.map((address) => ({ address, family: 6 }))];
}

/**
 * A `lookup` for `net.connect`, `tls.connect` and `http2.connect` that never
 * uses the libuv threadpool. Node's default (`dns.lookup`, getaddrinfo) runs
 * there, and threads blocked on a mount can hold every pool thread — so a
 * reconnect to a remote named by host name would wait forever. This answers IP
 * addresses directly, then /etc/hosts, then DNS through c-ares (sockets only).
 */
export function lookupWithoutThreadpool(
  hostname: string,
  options: dns.LookupOptions | number | LookupCallback,
  callback?: LookupCallback,
): void {
  const done = (typeof options === "function" ? options : callback)!;
  const opts: dns.LookupOptions =
    typeof options === "object" ? options : { family: typeof options === "number" ? options : 0 };
  const family = opts.family === "IPv4" ? 4 : opts.family === "IPv6" ? 6 : Number(opts.family ?? 0);
  const literal = net.isIP(hostname);
  const found =
    literal !== 0 ? Promise.resolve([{ address: hostname, family: literal }]) : resolve(hostname, family);
  found.then(
    (addresses) => {
      if (addresses.length === 0) {
        const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
        error.code = "ENOTFOUND";
        done(error, opts.all ? [] : "", 0);
        return;
      }
      if (opts.all) done(null, addresses);
      else done(null, addresses[0]!.address, addresses[0]!.family);
    },
    (error: NodeJS.ErrnoException) => done(error, opts.all ? [] : "", 0),
  );
}
