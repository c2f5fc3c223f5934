// QEMU's isa-debug-exit: a write of V ends the run with exit code (V << 1) | 1, so a guest can
// never report 0 through it (0 stays "clean halt"). QEMU's device returns 0 on reads.

import type { Device, DeviceContext, DeviceRange } from "./device.js";
import { DeviceOptionReader } from "./options.js";

/** Options of {@link DebugExit}. */
export interface DebugExitOptions {
  /** default 0xf4 */
  port?: number;
  /** bytes decoded, 1, 2 or 4; default 4 (QEMU's common `iobase=0xf4,iosize=0x04`) */
  size?: 1 | 2 | 4;
}

/**
 * QEMU's isa-debug-exit (port 0xF4 by default): a guest write of V ends the run with reason "debug-exit" and
 * `exitCode` `(V << 1) | 1`, so a guest can never report 0 through it. Reads return 0.
 */
export class DebugExit implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "isa-debug-exit";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  #ctx: DeviceContext | undefined;
  #lastCode: number | undefined;

  constructor(opts?: DebugExitOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    const size = o.integer("size", 4, 1, 4);
    if (size === 3) o.fail("size", "must be 1, 2 or 4, got the number 3");
    const port = o.port("port", 0xf4, size);
    this.ranges = [{ space: "io", base: port, length: size }];
  }

  /** the exit code of the last write, if the guest wrote */
  get lastCode(): number | undefined {
    return this.#lastCode;
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
  }

  /** {@inheritDoc Device.read} */
  read(): number {
    return 0;
  }

  /** snapshots: the last code written (plain data) */
  snapshot(): { lastCode: number | null } {
    return { lastCode: this.#lastCode ?? null };
  }
  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: { lastCode: number | null }): void {
    this.#lastCode = typeof s?.lastCode === "number" ? s.lastCode : undefined;
  }

  /** {@inheritDoc Device.write} */
  write(_offset: number, size: number, value: number): void {
    const v = value % 2 ** (8 * size);
    // kept as a Number (not int32) so a 32-bit value does not wrap; the CLI takes & 0xff
    this.#lastCode = v * 2 + 1;
    this.#ctx?.requestStop({ reason: "debug-exit", code: this.#lastCode });
  }
}
