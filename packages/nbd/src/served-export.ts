import type { Backend } from "@r3map/core";
import { R3mapError } from "@r3map/core";
import { DEFAULT_MAX_BLOCK, TF } from "./protocol.js";

/** One export the server offers. */
export interface NbdExport {
  /** Name clients ask for; "" is the default export. */
  name: string;
  backend: Backend;
  /** Shown by `nbdinfo --list` and in NBD_INFO_DESCRIPTION. */
  description?: string;
  /** Refuse writes even when the backend accepts them. The backend's own `readOnly` is always honoured. */
  readOnly?: boolean;
  /** Smallest offset/length granularity (power of two, ≤ 64 KiB); default 1. */
  minimumBlockSize?: number;
  /** Preferred request granularity (power of two ≥ 512); default 4096. */
  preferredBlockSize?: number;
  /**
   * Advertise NBD_FLAG_CAN_MULTI_CONN (default true): every connection shares
   * this one backend object, so a flush on one covers writes from all.
   */
  multiConn?: boolean;
}

/** An export with its limits resolved and validated. */
export class ServedExport {
  readonly name: string;
  readonly description: string;
  readonly backend: Backend;
  readonly readOnly: boolean;
  readonly minimumBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maximumBlockSize: number;
  readonly multiConn: boolean;

  constructor(spec: NbdExport, maxRequestSize = DEFAULT_MAX_BLOCK) {
    const min = spec.minimumBlockSize ?? 1;
    const preferred = spec.preferredBlockSize ?? 4096;
    if (!isPowerOfTwo(min) || min > 65536) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `export "${spec.name}": minimumBlockSize must be a power of two ≤ 65536, got ${min}`,
      );
    }
    if (!isPowerOfTwo(preferred) || preferred < Math.max(min, 512)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `export "${spec.name}": preferredBlockSize must be a power of two ≥ max(512, minimumBlockSize), got ${preferred}`,
      );
    }
    if (Buffer.byteLength(spec.name) > 4096) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        "export names are limited to 4096 bytes by the NBD protocol",
      );
    }
    this.name = spec.name;
    this.description = spec.description ?? "";
    this.backend = spec.backend;
    this.readOnly = spec.readOnly === true || spec.backend.readOnly === true;
    this.minimumBlockSize = min;
    this.preferredBlockSize = preferred;
    this.maximumBlockSize = Math.floor(maxRequestSize / min) * min;
    this.multiConn = spec.multiConn ?? true;
  }

  get size(): number {
    return this.backend.size;
  }

  /** Zero writes go to the backend's own writeZeroes; otherwise we write zero buffers. */
  get nativeZeroes(): boolean {
    return typeof this.backend.writeZeroes === "function";
  }

  /** Transmission flags, advertising only what this export really does. */
  transmissionFlags(structured: boolean): number {
    let flags = TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_FUA | TF.SEND_CACHE;
    if (this.readOnly) flags |= TF.READ_ONLY;
    else {
      flags |= TF.SEND_WRITE_ZEROES;
      if (this.nativeZeroes) flags |= TF.SEND_FAST_ZERO;
      if (typeof this.backend.trim === "function") flags |= TF.SEND_TRIM;
    }
    if (this.multiConn) flags |= TF.CAN_MULTI_CONN;
    // Every read reply is one content chunk, so "don't fragment" always holds.
    if (structured) flags |= TF.SEND_DF;
    return flags;
  }
}

function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && (value & (value - 1)) === 0;
}
