// What users call to put their own handlers on the buses: vm.io.onIn/onOut, vm.mmio.onRead/onWrite.
// Handlers get the absolute port/address; each registration returns a function that removes it.

import { Bus, type UnhandledAccess } from "./bus.js";

export type PortInHandler = (port: number, size: number) => number;
export type PortOutHandler = (port: number, size: number, value: number) => void;
export type MmioReadHandler = (address: number, size: number) => number;
export type MmioWriteHandler = (address: number, size: number, value: number) => void;

const hex = (n: number) => `0x${n.toString(16)}`;

export class IoBusApi {
  readonly bus = new Bus("io", 0x10000);

  /** Answers guest reads of [port, port+length). */
  onIn(port: number, handler: PortInHandler, length = 1): () => void {
    return this.bus.claim({
      name: `io.onIn(${hex(port)})`,
      base: port,
      length,
      read: (off, size) => handler(port + off, size),
    });
  }

  /** Receives guest writes to [port, port+length). */
  onOut(port: number, handler: PortOutHandler, length = 1): () => void {
    return this.bus.claim({
      name: `io.onOut(${hex(port)})`,
      base: port,
      length,
      write: (off, size, value) => handler(port + off, size, value),
    });
  }

  /** Host-side access through the bus, as if the guest did it (all-ones when unclaimed). */
  read(port: number, size: 1 | 2 | 4): number {
    return this.bus.read(port, size) ?? 2 ** (8 * size) - 1;
  }
  write(port: number, size: 1 | 2 | 4, value: number): boolean {
    return this.bus.write(port, size, value);
  }

  get unhandledReads(): number {
    return this.bus.unhandledReads;
  }
  get unhandledWrites(): number {
    return this.bus.unhandledWrites;
  }
}

export class MmioBusApi {
  // guest-physical addresses up to 2^52 (the architectural maximum), kept within safe integers
  readonly bus = new Bus("mmio", 2 ** 52);

  onRead(address: number, length: number, handler: MmioReadHandler): () => void {
    return this.bus.claim({
      name: `mmio.onRead(${hex(address)})`,
      base: address,
      length,
      read: (off, size) => handler(address + off, size),
    });
  }

  onWrite(address: number, length: number, handler: MmioWriteHandler): () => void {
    return this.bus.claim({
      name: `mmio.onWrite(${hex(address)})`,
      base: address,
      length,
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
