// The port-I/O and MMIO buses. A range is claimed for reads, writes or both; two claims conflict
// only when they overlap in the same direction, so `io.onIn(0x60)` and a separate `io.onOut(0x60)`
// can coexist while a device that takes both directions owns its range outright. Accesses nothing
// claims read as all-ones and are counted (and reported to `onUnhandled`); strict mode throws.

import type { AddressSpace } from "../devices/device.js";
import { BusConflictError, hex, UnhandledAccessError } from "./errors.js";

/** A claim's read callback: `offset` from the claim's base, `size` in bytes; returns the value. */
export type BusReader = (offset: number, size: number) => number;
/** A claim's write callback: `offset` from the claim's base, `size` in bytes, the value written. */
export type BusWriter = (offset: number, size: number, value: number) => void;

/** A range of a bus held for reads, writes or both (see {@link Bus.claim}). */
export interface BusClaim {
  /** who holds the range (device name or "io.onIn(0x60)"), shown in conflict errors */
  name: string;
  /** First port or guest-physical address of the range. */
  base: number;
  /** Length of the range in ports or bytes (at least 1). */
  length: number;
  /** Serves reads in the range; absent: reads fall to another claim or read as all-ones. */
  read?: BusReader;
  /** Serves writes in the range; absent: writes fall to another claim or are dropped. */
  write?: BusWriter;
}

/**
 * An access to a port or address no claim serves, as the machine's "unhandled" event and strict mode report
 * it.
 */
export interface UnhandledAccess {
  /** "io" for ports, "mmio" for guest-physical addresses. */
  space: AddressSpace;
  /** The port or guest-physical address accessed. */
  address: number;
  /** Access size in bytes (1, 2, 4 or 8). */
  size: number;
  /** true for a write (OUT, MMIO store), false for a read. */
  write: boolean;
  /** the value written (writes only) */
  value?: number;
}

const TWO32 = 2 ** 32;

/**
 * One address space (ports or MMIO) and the claims on it. Two claims conflict only when they overlap in the
 * same direction. Unclaimed reads return undefined (the vCPU sees all-ones), unclaimed writes are dropped;
 * both are counted, and throw UnhandledAccessError in strict mode.
 */
export class Bus {
  readonly #claims: BusClaim[] = [];
  #lastRead: BusClaim | undefined;
  #lastWrite: BusClaim | undefined;
  /** Reads nobody claimed, counted since the bus was made. */
  unhandledReads = 0;
  /** Writes nobody claimed, counted since the bus was made. */
  unhandledWrites = 0;
  /**
   * When true, an unclaimed access throws UnhandledAccessError (the machine's `strict` sets it on both
   * buses).
   */
  strict = false;
  /**
   * Called for each unclaimed access, before strict mode throws. A machine's buses report through its
   * "unhandled" event and set this themselves.
   */
  onUnhandled: ((access: UnhandledAccess) => void) | undefined;

  constructor(
    /** "io" or "mmio". */
    readonly space: AddressSpace,
    /** one past the highest address (0x10000 for ports) */
    readonly limit: number,
  ) {}

  /** The current claims, sorted by base address. */
  get claims(): readonly BusClaim[] {
    return this.#claims;
  }

  /** Claims a range; throws BusConflictError on overlap. Returns a function that releases it. */
  claim(claim: BusClaim): () => void {
    const { base, length, name } = claim;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0) {
      throw new BusConflictError(
        `${name}: invalid ${this.space} range base=${base} length=${length}`,
        this.space,
        base,
        length,
        "",
      );
    }
    if (base + length > this.limit) {
      throw new BusConflictError(
        `${name}: ${this.space} range [${hex(base)}, ${hex(base + length)}) exceeds the bus end ${hex(this.limit)}`,
        this.space,
        base,
        length,
        "",
      );
    }
    if (!claim.read && !claim.write) {
      throw new BusConflictError(`${name}: claims neither reads nor writes`, this.space, base, length, "");
    }
    for (const c of this.#claims) {
      const overlap = base < c.base + c.length && c.base < base + length;
      const sameDirection = (claim.read && c.read) || (claim.write && c.write);
      if (overlap && sameDirection) {
        throw new BusConflictError(
          `${name}: ${this.space} range [${hex(base)}, ${hex(base + length)}) overlaps ${c.name} at [${hex(c.base)}, ${hex(c.base + c.length)})`,
          this.space,
          base,
          length,
          c.name,
        );
      }
    }
    this.#claims.push(claim);
    this.#claims.sort((a, b) => a.base - b.base);
    return () => {
      const i = this.#claims.indexOf(claim);
      if (i >= 0) this.#claims.splice(i, 1);
      if (this.#lastRead === claim) this.#lastRead = undefined;
      if (this.#lastWrite === claim) this.#lastWrite = undefined;
    };
  }

  /** The claim that serves reads (or writes) at address, if any. */
  find(address: number, write: boolean): BusClaim | undefined {
    const last = write ? this.#lastWrite : this.#lastRead;
    if (last && address >= last.base && address < last.base + last.length) return last;
    for (const c of this.#claims) {
      if (c.base > address) break;
      if (address < c.base + c.length && (write ? c.write : c.read)) {
        if (write) this.#lastWrite = c;
        else this.#lastRead = c;
        return c;
      }
    }
    return undefined;
  }

  /** Reads a value; undefined when nothing claims the address (counted; strict mode throws). */
  read(address: number, size: number): number | undefined {
    const c = this.find(address, false);
    if (c) return c.read!(address - c.base, size);
    this.#unhandled({ space: this.space, address, size, write: false });
    return undefined;
  }

  /** Writes a value; false when nothing claims the address (counted; strict mode throws). */
  write(address: number, size: number, value: number): boolean {
    const c = this.find(address, true);
    if (c) {
      c.write!(address - c.base, size, value);
      return true;
    }
    this.#unhandled({ space: this.space, address, size, write: true, value });
    return false;
  }

  /**
   * Fills out[offset, offset+size) from a read (little-endian), all-ones when unclaimed.
   * Returns whether a claim served it.
   */
  readInto(address: number, size: number, out: Uint8Array, offset = 0): boolean {
    const v = this.read(address, size);
    if (v === undefined) {
      out.fill(0xff, offset, offset + size);
      return false;
    }
    putLe(out, offset, size, v);
    return true;
  }

  /** Writes data[offset, offset+size) (little-endian). Returns whether a claim served it. */
  writeFrom(address: number, size: number, data: Uint8Array, offset = 0): boolean {
    return this.write(address, size, getLe(data, offset, size));
  }

  #unhandled(access: UnhandledAccess): void {
    if (access.write) this.unhandledWrites++;
    else this.unhandledReads++;
    this.onUnhandled?.(access);
    if (this.strict) {
      const what = access.write ? `write of ${hex(access.value ?? 0)} to` : "read from";
      throw new UnhandledAccessError(
        `strict mode: ${access.size}-byte ${what} unregistered ${this.space === "io" ? "port" : "MMIO address"} ${hex(access.address)}`,
        this.space,
        access.address,
        access.size,
        access.write,
      );
    }
  }
}

/** Little-endian store of a value of 1..8 bytes (8-byte values exact up to 2^53). */
export function putLe(out: Uint8Array, offset: number, size: number, value: number): void {
  let lo = value >>> 0;
  let hi = size > 4 ? Math.floor(value / TWO32) >>> 0 : 0;
  for (let i = 0; i < size; i++) {
    if (i < 4) {
      out[offset + i] = lo & 0xff;
      lo >>>= 8;
    } else {
      out[offset + i] = hi & 0xff;
      hi >>>= 8;
    }
  }
}

/** Little-endian load of 1..8 bytes. */
export function getLe(data: Uint8Array, offset: number, size: number): number {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < size; i++) {
    const b = data[offset + i] ?? 0;
    if (i < 4) lo |= b << (8 * i);
    else hi |= b << (8 * (i - 4));
  }
  return (lo >>> 0) + (hi >>> 0) * TWO32;
}
