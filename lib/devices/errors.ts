// Typed errors for device configuration and host-side API misuse. Guest accesses never throw: a
// guest poking a register wrongly gets what the hardware would give it, not an exception.

import { describeValue } from "../types/describe-value.js";
import { VmmRangeError } from "../types/errors.js";

/**
 * A device was given an option (or a host-side call an argument) it cannot use: `device` names the
 * device, `option` the option as its options type spells it (`base`, `modem.cts`, `kernel.addr`).
 * A VmmError (`code` ERR_VMM_DEVICE_CONFIG) and, as before, a RangeError.
 */
export class DeviceConfigError extends VmmRangeError {
  /** Always "DeviceConfigError" (the class name, for people). */
  override name = "DeviceConfigError";
  /** Always "ERR_VMM_DEVICE_CONFIG": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_DEVICE_CONFIG";
  constructor(
    /** the device's name (`uart16550`, `virtio-blk`) */
    readonly device: string,
    /** the option or argument at fault */
    readonly option: string,
    message: string,
  ) {
    super(`${device}: ${option}: ${message}`);
  }
}

export function checkPort(device: string, option: string, value: unknown, length = 1): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value + length > 0x10000) {
    const last = (0x10000 - length).toString(16);
    throw new DeviceConfigError(device, option, `port ${describeValue(value)} is not in 0..0x${last}`);
  }
  return value;
}

export function checkIrq(device: string, value: unknown, option = "irq", max = 255): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    throw new DeviceConfigError(device, option, `${describeValue(value)} is not an interrupt line 0-${max}`);
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
