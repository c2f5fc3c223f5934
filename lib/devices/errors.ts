// Typed errors for device configuration and host-side API misuse. Guest accesses never throw: a
// guest poking a register wrongly gets what the hardware would give it, not an exception.

import { describeValue } from "../types/describe-value.js";

export class DeviceConfigError extends RangeError {
  override name = "DeviceConfigError";
  constructor(
    readonly device: string,
    readonly option: string,
    message: string,
  ) {
    super(`${device}: ${option}: ${message}`);
  }
}

export function checkPort(device: string, option: string, value: number, length = 1): number {
  if (!Number.isInteger(value) || value < 0 || value + length > 0x10000) {
    throw new DeviceConfigError(device, option, `port ${describeValue(value)} is not in 0..0xffff`);
  }
  return value;
}

export function checkIrq(device: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new DeviceConfigError(device, "irq", `${describeValue(value)} is not an interrupt line number`);
  }
  return value;
}

/** A device's options argument: undefined gives the defaults, anything but an object is refused. */
export function deviceOptions<T extends object>(device: string, opts: T | undefined | null): T {
  if (opts === undefined) return {} as T;
  if (typeof opts !== "object" || opts === null || Array.isArray(opts)) {
    throw new DeviceConfigError(
      device,
      "options",
      `must be an object (or left out), got ${describeValue(opts)}`,
    );
  }
  return opts;
}
