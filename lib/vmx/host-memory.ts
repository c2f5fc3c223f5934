// Host-physical memory of the soft machine: the address space that VMXON regions, VMCS regions,
// EPT paging structures, I/O and MSR bitmaps and the RAM backing guests live in. Chunks are byte
// arrays placed at host-physical addresses; small allocations come from page arenas.

import { MAXPHYADDR } from "./capabilities.js";

const PAGE = 4096;
const ARENA = 64 * PAGE;
/** Host-physical address 0 is never handed out so that 0 stays an obviously invalid pointer. */
const FIRST_HPA = 0x100000;

export class HostMemoryError extends RangeError {
  override name = "HostMemoryError";
}

interface Chunk {
  base: number;
  bytes: Uint8Array;
  view: DataView;
  /** the chunk in WINDOW-sized views (resolve() hands these out); [bytes] when it is no larger */
  windows: Uint8Array[];
}

/**
 * resolve() hands out a chunk in views of at most 1 GiB, so that an offset into one always fits 31
 * bits: the interpreter's TLB keeps offsets in Int32Arrays (a 3 GiB RAM chunk read at 2.5 GiB
 * through an offset that wrapped gave wrong data, or a RangeError from a DataView).
 */
const WINDOW = 2 ** 30;

function windowsOf(bytes: Uint8Array): Uint8Array[] {
  if (bytes.length <= WINDOW) return [bytes];
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += WINDOW)
    out.push(bytes.subarray(at, Math.min(at + WINDOW, bytes.length)));
  return out;
}

export interface HostLocation {
  bytes: Uint8Array;
  offset: number;
}

/** A chunk as another thread attaches it (HostMemory.sharedChunks / attach). */
export interface SharedChunk {
  base: number;
  buffer: SharedArrayBuffer;
}

export interface HostMemoryOptions {
  /**
   * Chunks live in SharedArrayBuffers, so that another thread (a vCPU's worker) can attach them and
   * see the same host-physical memory.
   */
  shared?: boolean;
  /** the first host-physical address this instance hands out (a worker allocates apart from its parent) */
  firstHpa?: number;
}

export class HostMemory {
  readonly #chunks: Chunk[] = [];
  #next: number;
  #arena: Chunk | undefined;
  #arenaUsed = ARENA;
  readonly #shared: boolean;

  constructor(opts: HostMemoryOptions = {}) {
    this.#shared = opts.shared ?? false;
    this.#next = opts.firstHpa ?? FIRST_HPA;
  }

  /** The chunks allocated so far, for attach() on another thread (only with `shared`). */
  sharedChunks(): SharedChunk[] {
    if (!this.#shared) throw new HostMemoryError("this host memory is not shared");
    return this.#chunks.map((c) => ({ base: c.base, buffer: c.bytes.buffer as SharedArrayBuffer }));
  }

  /** Maps chunks another instance allocated (sharedChunks) at their host-physical addresses. */
  attach(chunks: readonly SharedChunk[]): void {
    for (const { base, buffer } of chunks) {
      if (this.#find(base) || this.#find(base + buffer.byteLength - 1)) {
        throw new HostMemoryError(`host-physical 0x${base.toString(16)} is already backed`);
      }
      const bytes = new Uint8Array(buffer);
      this.#chunks.push({ base, bytes, view: new DataView(buffer), windows: windowsOf(bytes) });
    }
  }

  /** Allocates `size` bytes (zeroed, page-aligned) and returns its host-physical address. */
  allocate(size: number): { hpa: number; bytes: Uint8Array } {
    if (!Number.isSafeInteger(size) || size <= 0) throw new HostMemoryError(`bad allocation size ${size}`);
    const rounded = Math.ceil(size / PAGE) * PAGE;
    // 2-MiB alignment for large chunks lets EPT map them with large pages
    const align = rounded >= 0x200000 ? 0x200000 : PAGE;
    const base = Math.ceil(this.#next / align) * align;
    if (base + rounded > 2 ** MAXPHYADDR) throw new HostMemoryError("host-physical address space exhausted");
    const bytes = this.#shared ? new Uint8Array(new SharedArrayBuffer(rounded)) : new Uint8Array(rounded);
    this.#chunks.push({ base, bytes, view: new DataView(bytes.buffer), windows: windowsOf(bytes) });
    this.#next = base + rounded;
    return { hpa: base, bytes: rounded === size ? bytes : bytes.subarray(0, size) };
  }

  /** One zeroed 4-KiB page from an arena. */
  allocatePage(): number {
    if (this.#arenaUsed >= ARENA || !this.#arena) {
      const { hpa } = this.allocate(ARENA);
      this.#arena = this.#find(hpa)!;
      this.#arenaUsed = 0;
    }
    const hpa = this.#arena.base + this.#arenaUsed;
    this.#arenaUsed += PAGE;
    return hpa;
  }

  #find(hpa: number): Chunk | undefined {
    const chunks = this.#chunks;
    for (let i = chunks.length - 1; i >= 0; i--) {
      const c = chunks[i]!;
      if (hpa >= c.base && hpa < c.base + c.bytes.length) return c;
    }
    return undefined;
  }

  /** Whether [hpa, hpa+length) is backed by one chunk. */
  isBacked(hpa: number, length = 1): boolean {
    const c = this.#find(hpa);
    return c !== undefined && hpa + length <= c.base + c.bytes.length;
  }

  /**
   * The bytes holding hpa, or undefined when nothing is there: a view of at most 1 GiB (WINDOW,
   * page-aligned), so the offset fits 31 bits and the page at hpa lies wholly in it.
   */
  resolve(hpa: number): HostLocation | undefined {
    const c = this.#find(hpa);
    if (!c) return undefined;
    const offset = hpa - c.base;
    if (c.windows.length === 1) return { bytes: c.bytes, offset };
    const k = Math.floor(offset / WINDOW);
    return { bytes: c.windows[k]!, offset: offset - k * WINDOW };
  }

  /** [hpa, hpa + length) as a view of the one chunk that holds it (no copy). */
  view(hpa: number, length: number): Uint8Array {
    const c = this.#find(hpa);
    if (!c || hpa + length > c.base + c.bytes.length) {
      throw new HostMemoryError(`host-physical 0x${hpa.toString(16)} (+${length}) is not backed`);
    }
    return c.bytes.subarray(hpa - c.base, hpa - c.base + length);
  }

  #at(hpa: number, length: number): { view: DataView; offset: number } {
    const c = this.#find(hpa);
    if (!c || hpa + length > c.base + c.bytes.length) {
      throw new HostMemoryError(`host-physical 0x${hpa.toString(16)} (+${length}) is not backed`);
    }
    return { view: c.view, offset: hpa - c.base };
  }

  readU32(hpa: number): number {
    const { view, offset } = this.#at(hpa, 4);
    return view.getUint32(offset, true);
  }
  writeU32(hpa: number, value: number): void {
    const { view, offset } = this.#at(hpa, 4);
    view.setUint32(offset, value >>> 0, true);
  }
  readU64(hpa: number): bigint {
    const { view, offset } = this.#at(hpa, 8);
    return view.getBigUint64(offset, true);
  }
  writeU64(hpa: number, value: bigint): void {
    const { view, offset } = this.#at(hpa, 8);
    view.setBigUint64(offset, BigInt.asUintN(64, value), true);
  }
  readU8(hpa: number): number {
    const { view, offset } = this.#at(hpa, 1);
    return view.getUint8(offset);
  }
  writeU8(hpa: number, value: number): void {
    const { view, offset } = this.#at(hpa, 1);
    view.setUint8(offset, value);
  }
  /** A copy of [hpa, hpa+length). */
  read(hpa: number, length: number): Uint8Array {
    const { view, offset } = this.#at(hpa, length);
    return new Uint8Array(view.buffer, view.byteOffset + offset, length).slice();
  }
}
