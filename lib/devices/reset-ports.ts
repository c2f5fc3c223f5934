// The two reset ports a PC has besides the keyboard controller's 0xFE command:
// - 0xCF9, the Reset Control register of PIIX/ICH chipsets (the FADT's RESET_REG): a write with
//   RST_CPU (bit 2) set resets the machine; SYS_RST (bit 1, hard reset) and FULL_RST (bit 3) are kept
//   and read back. Linux's default reboot path writes the FADT's value 6 here.
// - 0x92, System Control Port A ("fast A20 and init"): bit 0 going from 0 to 1 resets the machine,
//   bit 1 is the A20 gate.
// Both end the run with reason "reset" (the machine stops rather than rebooting the guest).

import type { Device, DeviceContext, DeviceRange } from "./device.js";
import { DeviceOptionReader } from "./options.js";

export const RST_CNT_SYS_RST = 1 << 1;
export const RST_CNT_RST_CPU = 1 << 2;
export const RST_CNT_FULL_RST = 1 << 3;
const RST_CNT_KEPT = RST_CNT_SYS_RST | RST_CNT_FULL_RST;

/** Options of {@link ResetControl}. */
export interface ResetControlOptions {
  /** default 0xCF9 */
  port?: number;
}

/**
 * The PIIX/ICH Reset Control register (port 0xCF9, the FADT's RESET_REG): a write with RST_CPU (bit 2) ends
 * the run as "reset"; SYS_RST and FULL_RST read back.
 */
export class ResetControl implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "reset-control";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  #ctx: DeviceContext | undefined;
  #value = 0;

  constructor(opts?: ResetControlOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    this.ranges = [{ space: "io", base: o.port("port", 0xcf9), length: 1 }];
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
  }

  /** The register's value as the guest last wrote it (the kept bits). */
  get value(): number {
    return this.#value;
  }

  /** {@inheritDoc Device.read} */
  read(): number {
    return this.#value;
  }

  /** {@inheritDoc Device.write} */
  write(_offset: number, _size: number, value: number): void {
    const v = value & 0xff;
    this.#value = v & RST_CNT_KEPT;
    if (v & RST_CNT_RST_CPU) this.#ctx?.requestStop({ reason: "reset" });
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#value = 0;
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): { value: number } {
    return { value: this.#value };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: { value: number }): void {
    this.#value = s.value & RST_CNT_KEPT;
  }
}

export const PORT92_RESET = 1 << 0;
export const PORT92_A20 = 1 << 1;

/** Options of {@link SystemControlPortA}. */
export interface SystemControlPortAOptions {
  /** default 0x92 */
  port?: number;
  /** A20 at reset; default true (as the i8042 and QEMU start) */
  a20?: boolean;
  /** called when the guest changes the A20 gate through this port */
  onA20?: (enabled: boolean) => void;
}

/**
 * System Control Port A (0x92, "fast A20 and init"): bit 1 gates A20; bit 0 going from 0 to 1 ends the run as
 * "reset".
 */
export class SystemControlPortA implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "port92";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  #ctx: DeviceContext | undefined;
  readonly #resetValue: number;
  readonly #onA20: ((enabled: boolean) => void) | undefined;
  #value: number;

  constructor(opts?: SystemControlPortAOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    this.ranges = [{ space: "io", base: o.port("port", 0x92), length: 1 }];
    this.#resetValue = o.boolean("a20", true) ? PORT92_A20 : 0;
    this.#value = this.#resetValue;
    this.#onA20 = o.callback("onA20");
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
  }

  /** Whether A20 is enabled through this port. */
  get a20(): boolean {
    return (this.#value & PORT92_A20) !== 0;
  }

  /** {@inheritDoc Device.read} */
  read(): number {
    return this.#value;
  }

  /** {@inheritDoc Device.write} */
  write(_offset: number, _size: number, value: number): void {
    const old = this.#value;
    this.#value = value & (PORT92_RESET | PORT92_A20);
    if ((old ^ this.#value) & PORT92_A20) this.#onA20?.((this.#value & PORT92_A20) !== 0);
    if (this.#value & PORT92_RESET && !(old & PORT92_RESET)) this.#ctx?.requestStop({ reason: "reset" });
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#value = this.#resetValue;
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): { value: number } {
    return { value: this.#value };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: { value: number }): void {
    this.#value = s.value & (PORT92_RESET | PORT92_A20);
  }
}
