/** TLS settings of the Connect server and client. */

/** PEM text or bytes. */
export type Pem = string | Buffer;

export interface ServerTlsOptions {
  /** The server's certificate chain and private key. */
  cert: Pem;
  key: Pem;
  /**
   * CA(s) that sign client certificates. With `ca` set, clients must present a
   * certificate it signed (mutual TLS) unless `requireClientCert` is false.
   */
  ca?: Pem | Pem[];
  requireClientCert?: boolean;
}

export interface ClientTlsOptions {
  /** CA(s) that sign the server's certificate (default: the system's). */
  ca?: Pem | Pem[];
  /** Client certificate and key, for servers that require mutual TLS. */
  cert?: Pem;
  key?: Pem;
  /** Server name to verify the certificate against (default: the URL's host). */
  servername?: string;
}
