// Typed errors for device configuration and host-side API misuse. Guest accesses never throw: a
// guest poking a register wrongly gets what the hardware would give it, not an exception.

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
    throw new DeviceConfigError(device, option, `port ${String(value)} is not in 0..0xffff`);
  }
  return value;
}

export function checkIrq(device: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new DeviceConfigError(device, "irq", `${String(value)} is not an interrupt line number`);
  }
  return value;
}
