// Guest-physical memory: one byte array per region. On KVM each region's bytes are the mmap'd
// memory handed to KVM_SET_USER_MEMORY_REGION (zero-copy); on the soft backend they are the RAM the
// EPT maps. Loaders and devices reach guest memory only through this class.

import { VmmRangeError } from "../types/errors.js";
import { MachineClosedError } from "./errors.js";
import { bytesArg, integerArg } from "./validate.js";

/** One contiguous, page-aligned range of guest RAM and the bytes behind it. */
export interface MemoryRegion {
  /** KVM slot number / soft-backend region index */
  readonly slot: number;
  /** Guest-physical address of the first byte (4 KiB-aligned). */
  readonly guestPhysAddr: number;
  /** Length in bytes (a multiple of 4 KiB). */
  readonly size: number;
  /** the region's memory; bytes.length === size */
  readonly bytes: Uint8Array;
  /** Whether the region is read-only for the guest. */
  readonly readonly: boolean;
}

/**
 * A guest-physical range that is not RAM (or a bad region): `address` and `length` say which. Also a
 * RangeError.
 */
export class GuestMemoryError extends VmmRangeError {
  /** Always "GuestMemoryError" (the class name, for people). */
  override name = "GuestMemoryError";
  /** Always "ERR_VMM_GUEST_MEMORY": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_GUEST_MEMORY";
  constructor(
    message: string,
    /** The guest-physical address asked for. */
    readonly address: number,
    /** The length asked for, in bytes. */
    readonly length: number,
  ) {
    super(message);
  }
}

const PAGE = 4096;

/**
 * Guest-physical RAM as `vm.memory`: read and write guest memory from the host, all addresses guest-physical.
 * Accessing a range that is not RAM throws GuestMemoryError; after the machine is closed every access throws
 * MachineClosedError. Multi-byte values are little-endian.
 */
export class GuestMemory {
  readonly #regions: MemoryRegion[] = [];
  #closed = false;
  /**
   * Set by a backend whose vCPUs run in other threads (soft vCPU threads): called after the host
   * or a device wrote guest memory, so that those vCPUs drop code they decoded from there (they
   * cannot be called while they run). The write and fill methods and virtio's used buffers call it.
   */
  onHostWrite: ((gpa: number, length: number) => void) | undefined;

  /**
   * Moves whenever the host may have written guest RAM: write(), fill(), writeU8-64, every view()
   * handed out (a view is writable), and hostWrote(). A soft vCPU re-checks the code it cached
   * against memory at a VM entry only when this moved since its last run (lib/vmx/processor.ts).
   */
  get generation(): number {
    return this.#generation;
  }
  #generation = 0;

  /**
   * The host wrote guest-physical [gpa, gpa+length) some way that did not just go through this
   * class: through a view it kept from an earlier view() call (virtio's rings and buffers, written
   * as requests complete), through a region's `bytes` (a snapshot restore), or with an emulator of
   * its own (a task switch). Soft vCPUs then re-check their cached code at their next entry, and
   * vCPU threads hear of it (onHostWrite).
   */
  hostWrote(gpa: number, length: number): void {
    this.#generation++;
    this.onHostWrite?.(gpa, length);
  }

  /** The machine closed: from now on reads and writes throw MachineClosedError (KVM unmapped it). */
  close(): void {
    this.#closed = true;
  }

  /**
   * The RAM regions, in the order they were added. Who writes a region's `bytes` directly calls
   * hostWrote() after.
   */
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

  /** per region, one flag per 4 KiB page that view() handed out since takeHostWrites() */
  #hostWritten: Uint8Array[] | undefined;

  /**
   * From now on, remembers every page the host may have written: the write and fill methods', and
   * each page view() hands out (loaders and devices write through views; a view is writable, so a
   * device that only reads through one counts too; read() and readU8-32 do not). KVM's dirty log
   * sees only the guest's own writes; an incremental snapshot adds these.
   */
  trackHostWrites(): void {
    this.#hostWritten ??= this.#regions.map((r) => new Uint8Array(Math.ceil(r.size / PAGE)));
  }

  /**
   * The pages handed out since the last call or trackHostWrites() (one flag per 4 KiB page per
   * region, in `regions` order), and a fresh start; undefined when not tracking.
   */
  takeHostWrites(): Uint8Array[] | undefined {
    const out = this.#hostWritten;
    if (out) this.#hostWritten = this.#regions.map((r) => new Uint8Array(Math.ceil(r.size / PAGE)));
    return out;
  }

  /**
   * A view of guest memory (no copy). Throws GuestMemoryError when the range is not RAM. The view is
   * writable: handing it out counts as a host write (generation). A caller that keeps it and writes
   * through it after a vCPU ran again calls hostWrote() for what it wrote.
   */
  view(gpa: number, length: number): Uint8Array {
    this.#generation++;
    return this.#view(gpa, length, true);
  }

  /** view(); `writable`: the caller may write it (tracked host writes count its pages) */
  #view(gpa: number, length: number, writable: boolean): Uint8Array {
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
    const written = writable ? this.#hostWritten?.[r.slot] : undefined;
    if (written && length > 0)
      written.fill(1, Math.floor(off / PAGE), Math.floor((off + length - 1) / PAGE) + 1);
    return r.bytes.subarray(off, off + length);
  }

  /** Copies `length` bytes from `gpa` (use view() to avoid the copy). */
  read(gpa: number, length: number): Uint8Array {
    return this.#view(gpa, length, false).slice();
  }

  /** Copies `data` to guest memory at `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    bytesArg("data", data);
    this.view(gpa, data.length).set(data);
    this.onHostWrite?.(gpa, data.length);
  }

  /** Sets `length` bytes at `gpa` to `value` (a byte; default 0). */
  fill(gpa: number, length: number, value = 0): void {
    this.view(gpa, length).fill(value);
    this.onHostWrite?.(gpa, length);
  }

  /** Reads the byte at `gpa`. */
  readU8(gpa: number): number {
    return this.#view(gpa, 1, false)[0]!;
  }
  /** Reads a little-endian 16-bit value at `gpa`. */
  readU16(gpa: number): number {
    const v = this.#view(gpa, 2, false);
    return v[0]! | (v[1]! << 8);
  }
  /** Reads a little-endian 32-bit value at `gpa` (unsigned). */
  readU32(gpa: number): number {
    const v = this.#view(gpa, 4, false);
    return (v[0]! | (v[1]! << 8) | (v[2]! << 16) | (v[3]! << 24)) >>> 0;
  }
  /** Reads a little-endian 64-bit value at `gpa` (unsigned). */
  readU64(gpa: number): bigint {
    return BigInt(this.readU32(gpa)) | (BigInt(this.readU32(gpa + 4)) << 32n);
  }
  /** Writes the low 8 bits of `value` at `gpa`. */
  writeU8(gpa: number, value: number): void {
    this.view(gpa, 1)[0] = value;
    this.onHostWrite?.(gpa, 1);
  }
  /** Writes the low 16 bits of `value` at `gpa`, little-endian. */
  writeU16(gpa: number, value: number): void {
    const v = this.view(gpa, 2);
    v[0] = value;
    v[1] = value >>> 8;
    this.onHostWrite?.(gpa, 2);
  }
  /** Writes the low 32 bits of `value` at `gpa`, little-endian. */
  writeU32(gpa: number, value: number): void {
    const v = this.view(gpa, 4);
    v[0] = value;
    v[1] = value >>> 8;
    v[2] = value >>> 16;
    v[3] = value >>> 24;
    this.onHostWrite?.(gpa, 4);
  }
  /** Writes the low 64 bits of `value` at `gpa`, little-endian. */
  writeU64(gpa: number, value: bigint): void {
    this.writeU32(gpa, Number(value & 0xffffffffn));
    this.writeU32(gpa + 4, Number((value >> 32n) & 0xffffffffn));
  }
}
