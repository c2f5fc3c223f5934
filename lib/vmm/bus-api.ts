// What users call to put their own handlers on the buses: vm.io.onIn/onOut, vm.mmio.onRead/onWrite.
// Handlers get the absolute port/address; each registration returns a function that removes it.
// Arguments are checked here, when the handler is registered, not at the guest's first access.
//
// Argument order: (where, handler, length = 1) on both buses. mmio.onRead/onWrite also take the
// older (address, length, handler) order: a function in second place tells the two apart.

import { Bus, type UnhandledAccess } from "./bus.js";
import { InvalidArgumentError } from "./errors.js";
import { describeValue, functionArg, integerArg } from "./validate.js";

export type PortInHandler = (port: number, size: number) => number;
export type PortOutHandler = (port: number, size: number, value: number) => void;
export type MmioReadHandler = (address: number, size: number) => number;
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

export class IoBusApi {
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
  write(port: number, size: 1 | 2 | 4, value: number): boolean {
    integerArg("port", port, 0, PORTS - 1);
    const s = checkSize(size);
    integerArg("value", value, 0, 2 ** (8 * Math.min(s, 6)) - 1);
    return this.bus.write(port, s, value);
  }

  get unhandledReads(): number {
    return this.bus.unhandledReads;
  }
  get unhandledWrites(): number {
    return this.bus.unhandledWrites;
  }
}

/** (address, handler, length?) or the older (address, length, handler): handler and length. */
function mmioArgs<H>(b: unknown, c: unknown): { handler: H; length: unknown } {
  return typeof b === "function" ? { handler: b as H, length: c ?? 1 } : { handler: c as H, length: b };
}

export class MmioBusApi {
  readonly bus = new Bus("mmio", MMIO_END);

  /** Answers guest reads of [address, address+length). */
  onRead(address: number, handler: MmioReadHandler, length?: number): () => void;
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

  get unhandledReads(): number {
    return this.bus.unhandledReads;
  }
  get unhandledWrites(): number {
    return this.bus.unhandledWrites;
  }
}

export type { UnhandledAccess };
