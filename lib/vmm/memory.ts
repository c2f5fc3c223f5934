// Guest-physical memory: one byte array per region. On KVM each region's bytes are the mmap'd
// memory handed to KVM_SET_USER_MEMORY_REGION (zero-copy); on the soft backend they are the RAM the
// EPT maps. Loaders and devices reach guest memory only through this class.

import { VmmRangeError } from "../types/errors.js";
import { MachineClosedError } from "./errors.js";
import { bytesArg, integerArg } from "./validate.js";

export interface MemoryRegion {
  /** KVM slot number / soft-backend region index */
  readonly slot: number;
  readonly guestPhysAddr: number;
  readonly size: number;
  /** the region's memory; bytes.length === size */
  readonly bytes: Uint8Array;
  readonly readonly: boolean;
}

export class GuestMemoryError extends VmmRangeError {
  override name = "GuestMemoryError";
  override readonly code: string = "ERR_VMM_GUEST_MEMORY";
  constructor(
    message: string,
    readonly address: number,
    readonly length: number,
  ) {
    super(message);
  }
}

const PAGE = 4096;

export class GuestMemory {
  readonly #regions: MemoryRegion[] = [];
  #closed = false;

  /** The machine closed: from now on reads and writes throw MachineClosedError (KVM unmapped it). */
  close(): void {
    this.#closed = true;
  }

  get regions(): readonly MemoryRegion[] {
    return this.#regions;
  }

  /** Adds a region. Regions must be page-aligned and must not overlap. */
  addRegion(guestPhysAddr: number, bytes: Uint8Array, opts: { readonly?: boolean } = {}): MemoryRegion {
    const size = bytes.length;
    if (!Number.isSafeInteger(guestPhysAddr) || guestPhysAddr < 0 || guestPhysAddr % PAGE !== 0) {
      throw new GuestMemoryError(
        `region address 0x${guestPhysAddr.toString(16)} is not page-aligned`,
        guestPhysAddr,
        size,
      );
    }
    if (size === 0 || size % PAGE !== 0) {
      throw new GuestMemoryError(
        `region size 0x${size.toString(16)} is not a non-zero multiple of 4 KiB`,
        guestPhysAddr,
        size,
      );
    }
    for (const r of this.#regions) {
      if (guestPhysAddr < r.guestPhysAddr + r.size && r.guestPhysAddr < guestPhysAddr + size) {
        throw new GuestMemoryError(
          `region [0x${guestPhysAddr.toString(16)}, +0x${size.toString(16)}) overlaps slot ${r.slot}`,
          guestPhysAddr,
          size,
        );
      }
    }
    const region: MemoryRegion = {
      slot: this.#regions.length,
      guestPhysAddr,
      size,
      bytes,
      readonly: opts.readonly ?? false,
    };
    this.#regions.push(region);
    return region;
  }

  /** The region holding [gpa, gpa+length), or undefined (MMIO or a hole). */
  find(gpa: number, length = 1): MemoryRegion | undefined {
    for (const r of this.#regions) {
      if (gpa >= r.guestPhysAddr && gpa + length <= r.guestPhysAddr + r.size) return r;
    }
    return undefined;
  }

  /** Total RAM in bytes. */
  get size(): number {
    let n = 0;
    for (const r of this.#regions) n += r.size;
    return n;
  }

  /**
   * No byte of RAM has been handed out by view() (which read, write and the rest go through) nor
   * has a guest run since the machine was made: every byte is still zero. A restore then needs not
   * read all of RAM to find what to clear (the first touch of each page costs a page fault).
   */
  get untouched(): boolean {
    return this.#untouched;
  }
  #untouched = true;

  /** Called when a guest starts to run: from then on RAM may hold anything. */
  markTouched(): void {
    this.#untouched = false;
  }

  /** A view of guest memory (no copy). Throws GuestMemoryError when the range is not RAM. */
  view(gpa: number, length: number): Uint8Array {
    if (this.#closed) throw new MachineClosedError("guest memory");
    this.#untouched = false;
    integerArg("gpa", gpa, 0, Number.MAX_SAFE_INTEGER);
    integerArg("length", length, 0, Number.MAX_SAFE_INTEGER);
    const r = this.find(gpa, length);
    if (!r) {
      throw new GuestMemoryError(
        `guest-physical range [0x${gpa.toString(16)}, +0x${length.toString(16)}) is not RAM`,
        gpa,
        length,
      );
    }
    const off = gpa - r.guestPhysAddr;
    return r.bytes.subarray(off, off + length);
  }

  read(gpa: number, length: number): Uint8Array {
    return this.view(gpa, length).slice();
  }

  write(gpa: number, data: Uint8Array): void {
    bytesArg("data", data);
    this.view(gpa, data.length).set(data);
  }

  fill(gpa: number, length: number, value = 0): void {
    this.view(gpa, length).fill(value);
  }

  readU8(gpa: number): number {
    return this.view(gpa, 1)[0]!;
  }
  readU16(gpa: number): number {
    const v = this.view(gpa, 2);
    return v[0]! | (v[1]! << 8);
  }
  readU32(gpa: number): number {
    const v = this.view(gpa, 4);
    return (v[0]! | (v[1]! << 8) | (v[2]! << 16) | (v[3]! << 24)) >>> 0;
  }
  readU64(gpa: number): bigint {
    return BigInt(this.readU32(gpa)) | (BigInt(this.readU32(gpa + 4)) << 32n);
  }
  writeU8(gpa: number, value: number): void {
    this.view(gpa, 1)[0] = value;
  }
  writeU16(gpa: number, value: number): void {
    const v = this.view(gpa, 2);
    v[0] = value;
    v[1] = value >>> 8;
  }
  writeU32(gpa: number, value: number): void {
    const v = this.view(gpa, 4);
    v[0] = value;
    v[1] = value >>> 8;
    v[2] = value >>> 16;
    v[3] = value >>> 24;
  }
  writeU64(gpa: number, value: bigint): void {
    this.writeU32(gpa, Number(value & 0xffffffffn));
    this.writeU32(gpa + 4, Number((value >> 32n) & 0xffffffffn));
  }
}
