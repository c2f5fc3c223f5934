// What users call to put their own handlers on the buses: vm.io.onIn/onOut, vm.mmio.onRead/onWrite.
// Handlers get the absolute port/address; each registration returns a function that removes it.
// Arguments are checked here, when the handler is registered, not at the guest's first access.
//
// Argument order: (where, handler, length = 1) on both buses. mmio.onRead/onWrite also take the
// older (address, length, handler) order: a function in second place tells the two apart.

import { Bus, type UnhandledAccess } from "./bus.js";
import { InvalidArgumentError } from "./errors.js";
import { describeValue, functionArg, integerArg } from "./validate.js";

/**
 * Answers a guest IN: `port` is the absolute port, `size` 1, 2 or 4 bytes; returns the value (low `size`
 * bytes are used).
 */
export type PortInHandler = (port: number, size: number) => number;
/** Receives a guest OUT: the absolute port, the size in bytes (1, 2 or 4) and the value written. */
export type PortOutHandler = (port: number, size: number, value: number) => void;
/**
 * Answers a guest MMIO read: absolute guest-physical address, size 1, 2, 4 or 8 bytes; returns the value
 * (8-byte values are exact up to 2^53).
 */
export type MmioReadHandler = (address: number, size: number) => number;
/**
 * Receives a guest MMIO write: absolute guest-physical address, size in bytes (1, 2, 4 or 8) and the value.
 */
export type MmioWriteHandler = (address: number, size: number, value: number) => void;

const hex = (n: number) => `0x${n.toString(16)}`;
const PORTS = 0x10000;
/** guest-physical addresses up to 2^52 (the architectural maximum), kept within safe integers */
const MMIO_END = 2 ** 52;

/** `where` and `length` as integers with the range inside the bus. */
function checkRange(what: string, where: number, length: unknown, end: number): number {
  integerArg(what, where, 0, end - 1);
  return integerArg("length", length, 1, end - where);
}

/** Access sizes the buses carry. */
function checkSize(size: unknown): 1 | 2 | 4 | 8 {
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) {
    throw new InvalidArgumentError(`size must be 1, 2, 4 or 8, got ${describeValue(size)}`, "size");
  }
  return size;
}

/**
 * The port-I/O bus as `vm.io`: register IN/OUT handlers on ports 0 to 0xFFFF, or access ports from the host.
 * Overlapping claims in the same direction throw BusConflictError.
 */
export class IoBusApi {
  /** The underlying bus: its claims, the unhandled-access counters and strict mode. */
  readonly bus = new Bus("io", PORTS);

  /** Answers guest reads of [port, port+length). */
  onIn(port: number, handler: PortInHandler, length = 1): () => void {
    const n = checkRange("port", port, length, PORTS);
    functionArg("handler", handler);
    return this.bus.claim({
      name: `io.onIn(${hex(port)})`,
      base: port,
      length: n,
      read: (off, size) => handler(port + off, size),
    });
  }

  /** Receives guest writes to [port, port+length). */
  onOut(port: number, handler: PortOutHandler, length = 1): () => void {
    const n = checkRange("port", port, length, PORTS);
    functionArg("handler", handler);
    return this.bus.claim({
      name: `io.onOut(${hex(port)})`,
      base: port,
      length: n,
      write: (off, size, value) => handler(port + off, size, value),
    });
  }

  /** Host-side access through the bus, as if the guest did it (all-ones when unclaimed). */
  read(port: number, size: 1 | 2 | 4): number {
    integerArg("port", port, 0, PORTS - 1);
    const s = checkSize(size);
    return this.bus.read(port, s) ?? 2 ** (8 * s) - 1;
  }
  /**
   * Host-side write through the bus, as if the guest did it. Returns false when nothing claims the port (the
   * write is dropped and counted).
   */
  write(port: number, size: 1 | 2 | 4, value: number): boolean {
    integerArg("port", port, 0, PORTS - 1);
    const s = checkSize(size);
    integerArg("value", value, 0, 2 ** (8 * Math.min(s, 6)) - 1);
    return this.bus.write(port, s, value);
  }

  /**
   * Guest reads of addresses nobody claimed on this bus (each read as all-ones), over the machine's lifetime.
   */
  get unhandledReads(): number {
    return this.bus.unhandledReads;
  }
  /** Guest writes to addresses nobody claimed on this bus (each dropped), over the machine's lifetime. */
  get unhandledWrites(): number {
    return this.bus.unhandledWrites;
  }
}

/** (address, handler, length?) or the older (address, length, handler): handler and length. */
function mmioArgs<H>(b: unknown, c: unknown): { handler: H; length: unknown } {
  return typeof b === "function" ? { handler: b as H, length: c ?? 1 } : { handler: c as H, length: b };
}

/**
 * The MMIO bus as `vm.mmio`: register read/write handlers on guest-physical ranges outside RAM (up to 2^52),
 * or access them from the host. Overlapping claims in the same direction throw BusConflictError.
 */
export class MmioBusApi {
  /** The underlying bus: its claims, the unhandled-access counters and strict mode. */
  readonly bus = new Bus("mmio", MMIO_END);

  /** Answers guest reads of [address, address+length). */
  onRead(address: number, handler: MmioReadHandler, length?: number): () => void;
  /** The older argument order (address, length, handler), kept for existing callers. */
  onRead(address: number, length: number, handler: MmioReadHandler): () => void;
  onRead(address: number, b: number | MmioReadHandler, c?: number | MmioReadHandler): () => void {
    const { handler, length } = mmioArgs<MmioReadHandler>(b, c);
    const n = checkRange("address", address, length, MMIO_END);
    functionArg("handler", handler);
    return this.bus.claim({
      name: `mmio.onRead(${hex(address)})`,
      base: address,
      length: n,
      read: (off, size) => handler(address + off, size),
    });
  }

  /** Receives guest writes to [address, address+length). */
  onWrite(address: number, handler: MmioWriteHandler, length?: number): () => void;
  /** The older argument order (address, length, handler), kept for existing callers. */
  onWrite(address: number, length: number, handler: MmioWriteHandler): () => void;
  onWrite(address: number, b: number | MmioWriteHandler, c?: number | MmioWriteHandler): () => void {
    const { handler, length } = mmioArgs<MmioWriteHandler>(b, c);
    const n = checkRange("address", address, length, MMIO_END);
    functionArg("handler", handler);
    return this.bus.claim({
      name: `mmio.onWrite(${hex(address)})`,
      base: address,
      length: n,
      write: (off, size, value) => handler(address + off, size, value),
    });
  }

  /**
   * Guest reads of addresses nobody claimed on this bus (each read as all-ones), over the machine's lifetime.
   */
  get unhandledReads(): number {
    return this.bus.unhandledReads;
  }
  /** Guest writes to addresses nobody claimed on this bus (each dropped), over the machine's lifetime. */
  get unhandledWrites(): number {
    return this.bus.unhandledWrites;
  }
}

export type { UnhandledAccess };
