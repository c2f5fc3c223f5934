// What a device is. Devices know nothing of backends: the machine maps their ranges on the port-I/O
// or MMIO bus, calls read/write with the offset inside the range, and hands them interrupt lines
// that it routes to KVM's irqchip or to the soft backend's emulated PIC/APIC.

export type AddressSpace = "io" | "mmio";

export interface DeviceRange {
  space: AddressSpace;
  base: number;
  length: number;
}

/** An interrupt line as a device sees it (level-triggered; pulse = raise then lower). */
export interface IrqLine {
  set(level: boolean): void;
  pulse(): void;
}

/** Virtual time, in nanoseconds, as the machine keeps it (guest time, not necessarily wall time). */
export interface Clock {
  nowNs(): number;
}

export interface DeviceContext {
  /** interrupt line for the device's `irq` (undefined when it declares none) */
  irq?: IrqLine;
  clock: Clock;
  /** ask the machine to stop the run with a reason (e.g. i8042 reset, debug-exit) */
  requestStop(reason: StopRequest): void;
  /**
   * Optional: the device's next deadline moved (the guest reprogrammed a timer, host input armed
   * a FIFO timeout); the loop should call poll() again soon rather than wait for the deadline poll
   * last returned.
   */
  requestPoll?(): void;
}

export type StopRequest =
  | { reason: "reset" }
  | { reason: "debug-exit"; code: number }
  | { reason: "poweroff" };

export interface Device {
  readonly name: string;
  readonly ranges: readonly DeviceRange[];
  /** ISA IRQ / GSI number the device raises, if any */
  readonly irq?: number;
  /** offset is relative to ranges[rangeIndex].base; size is 1, 2, 4 or 8 */
  read(offset: number, size: number, rangeIndex: number): number;
  write(offset: number, size: number, value: number, rangeIndex: number): void;
  /** called once when the machine attaches the device */
  attach?(ctx: DeviceContext): void;
  /** periodic service from the loop (timers); returns ns until it next needs a call, or undefined */
  poll?(nowNs: number): number | undefined;
  reset?(): void;
}

/** Devices whose state can be saved and put back (plain JSON-able data). */
export interface SnapshottableDevice<S = unknown> extends Device {
  snapshot(): S;
  restore(state: S): void;
}
