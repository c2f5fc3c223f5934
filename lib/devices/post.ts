// POST code port 0x80. Firmware writes progress codes; Linux also writes it as an I/O delay, so
// the history is bounded. Reads return 0xff: on PCs (and QEMU) the port is write-only.

import type { Device, DeviceRange } from "./device.js";
import { DeviceOptionReader } from "./options.js";

/** Options of {@link PostPort}. */
export interface PostPortOptions {
  /** default 0x80 */
  port?: number;
  /** how many codes to remember; default 64 */
  historyLength?: number;
  /** called on every code written */
  onCode?: (code: number) => void;
}

/**
 * The POST code port (0x80 by default): records the progress codes firmware writes (Linux also writes it as
 * an I/O delay). Reads return 0xFF.
 */
export class PostPort implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "post";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  #history: number[] = [];
  #max: number;
  #onCode: ((code: number) => void) | undefined;
  #last: number | undefined;
  #writes = 0;

  constructor(opts?: PostPortOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    const port = o.port("port", 0x80);
    this.ranges = [{ space: "io", base: port, length: 1 }];
    this.#max = o.integer("historyLength", 64, 0, 2 ** 24);
    this.#onCode = o.callback("onCode");
  }

  /** The last code written, if any. */
  get lastCode(): number | undefined {
    return this.#last;
  }

  /** oldest first, at most historyLength codes */
  get history(): readonly number[] {
    return this.#history;
  }

  /** How many codes the guest wrote in all (the history keeps only the last historyLength). */
  get writes(): number {
    return this.#writes;
  }

  /** {@inheritDoc Device.read} */
  read(_offset: number, size: number): number {
    return 2 ** (8 * size) - 1;
  }

  /** {@inheritDoc Device.write} */
  write(_offset: number, _size: number, value: number): void {
    const code = value & 0xff;
    this.#last = code;
    this.#writes++;
    if (this.#max > 0) {
      if (this.#history.length >= this.#max) this.#history.shift();
      this.#history.push(code);
    }
    this.#onCode?.(code);
  }

  /** snapshots: the codes seen (plain data; the onCode callback is the new owner's) */
  snapshot(): { history: number[]; last: number | null; writes: number } {
    return { history: [...this.#history], last: this.#last ?? null, writes: this.#writes };
  }
  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: { history: number[]; last: number | null; writes: number }): void {
    const codes = Array.isArray(s?.history) ? s.history.map((c) => c & 0xff) : [];
    this.#history = this.#max > 0 ? codes.slice(-this.#max) : [];
    this.#last = typeof s?.last === "number" ? s.last & 0xff : undefined;
    this.#writes = Number.isSafeInteger(s?.writes) ? s.writes : 0;
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#history = [];
    this.#last = undefined;
    this.#writes = 0;
  }
}
