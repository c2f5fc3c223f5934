// The Bochs/QEMU debug console (port 0xE9): every byte written goes to the output; reads return
// the readback value (0xE9 in QEMU), which is how guests detect the port is there.

import type { Device, DeviceRange } from "./device.js";
import { DeviceOptionReader } from "./options.js";
import { type ByteOutput, type ByteSink, byteSink } from "./output.js";

/** Options of {@link DebugConsole}. */
export interface DebugConsoleOptions {
  /** default 0xe9 */
  port?: number;
  /** default: discard */
  output?: ByteOutput;
  /** value a read returns; default 0xe9 as QEMU */
  readback?: number;
}

/**
 * The Bochs/QEMU debug console (port 0xE9 by default): every byte the guest writes goes to `output`; reads
 * return `readback`, which is how guests detect the port.
 */
export class DebugConsole implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "debugcon";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** The value a guest read returns (0 to 0xFF). */
  readonly readback: number;
  #sink: ByteSink;
  #count = 0;

  constructor(opts?: DebugConsoleOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    const port = o.port("port", 0xe9);
    this.ranges = [{ space: "io", base: port, length: 1 }];
    this.readback = o.integer("readback", 0xe9, 0, 0xff);
    this.#sink = byteSink(o.output("output"));
  }

  /** bytes written by the guest so far */
  get bytesWritten(): number {
    return this.#count;
  }

  /** {@inheritDoc Device.read} */
  read(_offset: number, size: number): number {
    // wider reads see the readback byte repeated, as a byte-wide port decoded on every lane
    let v = 0;
    for (let i = 0; i < size; i++) v += this.readback * 2 ** (8 * i);
    return v;
  }

  /** {@inheritDoc Device.write} */
  write(_offset: number, size: number, value: number): void {
    // outw/outl to a byte port: QEMU splits into byte writes, low byte first
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
    this.#count += size;
    this.#sink.write(bytes);
  }

  /** snapshots: the byte count (what was written went to the sink already) */
  snapshot(): { bytesWritten: number } {
    return { bytesWritten: this.#count };
  }
  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: { bytesWritten: number }): void {
    this.#count = Number.isSafeInteger(s?.bytesWritten) ? s.bytesWritten : 0;
  }

  /** Closes the output when the device opened it (a file path); streams you passed stay open. */
  close(): void {
    this.#sink.close();
  }
}
