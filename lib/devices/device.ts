// What a device is. Devices know nothing of backends: the machine maps their ranges on the port-I/O
// or MMIO bus, calls read/write with the offset inside the range, and hands them interrupt lines
// that it routes to KVM's irqchip or to the soft backend's emulated PIC/APIC.

/** "io": the port-I/O space (ports 0 to 0xFFFF); "mmio": guest-physical addresses outside RAM. */
export type AddressSpace = "io" | "mmio";

/** A range of ports or MMIO addresses a device serves. */
export interface DeviceRange {
  /** Which bus the range is on. */
  space: AddressSpace;
  /** First port or guest-physical address. */
  base: number;
  /** Number of ports or bytes (at least 1). */
  length: number;
}

/** An interrupt line as a device sees it (level-triggered; pulse = raise then lower). */
export interface IrqLine {
  /** Raises (true) or lowers (false) the line. */
  set(level: boolean): void;
  /** Raises then lowers the line: one edge for edge-triggered inputs. */
  pulse(): void;
}

/** Virtual time, in nanoseconds, as the machine keeps it (guest time, not necessarily wall time). */
export interface Clock {
  /** The current virtual time in nanoseconds (monotonic; starts near 0 when the machine is made). */
  nowNs(): number;
}

/** What the machine gives a device in `attach()`: its interrupt line, the clock and a way to stop the run. */
export interface DeviceContext {
  /** interrupt line for the device's `irq` (undefined when it declares none) */
  irq?: IrqLine;
  /** The machine's virtual clock: use it, not the host clock, for device timers. */
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

/**
 * Why a device asks the machine to end the run; becomes the run's `reason` ("debug-exit" with `code` as
 * `exitCode`).
 */
export type StopRequest =
  | { reason: "reset" }
  | { reason: "debug-exit"; code: number }
  | { reason: "poweroff" };

/**
 * A device the machine maps on its buses (`vm.addDevice()`): it sees offsets inside its ranges, never
 * backends. Implement this to write your own; read/write run on the machine's thread, between exits.
 */
export interface Device {
  /** Shown in bus-conflict errors and traces; a restore matches saved devices by name and ranges. */
  readonly name: string;
  /**
   * The ports or MMIO ranges the device serves; mapped all or none when it is added (BusConflictError on
   * overlap).
   */
  readonly ranges: readonly DeviceRange[];
  /** ISA IRQ / GSI number the device raises, if any */
  readonly irq?: number;
  /** offset is relative to ranges[rangeIndex].base; size is 1, 2, 4 or 8 */
  read(offset: number, size: number, rangeIndex: number): number;
  /**
   * A guest write: offset relative to ranges[rangeIndex].base, size 1, 2, 4 or 8 bytes, the value written.
   */
  write(offset: number, size: number, value: number, rangeIndex: number): void;
  /** called once when the machine attaches the device */
  attach?(ctx: DeviceContext): void;
  /** periodic service from the loop (timers); returns ns until it next needs a call, or undefined */
  poll?(nowNs: number): number | undefined;
  /** Puts the device in its power-on state. */
  reset?(): void;
}

/** Devices whose state can be saved and put back (plain JSON-able data). */
export interface SnapshottableDevice<S = unknown> extends Device {
  /** The device's state as plain JSON-able data. */
  snapshot(): S;
  /** Puts back a state snapshot() returned (throws DeviceConfigError for a state it cannot take). */
  restore(state: S): void;
}
