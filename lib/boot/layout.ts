// Where the loader puts its own structures in guest-physical memory. The defaults keep clear of the
// boot-sector address (0x7C00), of the 1 MiB mark where kernels load, and of each other:
//   0x00500  GDT (null, code32, data, code64)
//   0x09000  multiboot information, memory map and module list (QEMU uses the same address; when a
//            kernel or module covers it, the multiboot loader picks another free spot)
//   0x9A000  identity page tables for long mode: PML4, PDPT, four page directories (4 GiB, 2 MiB pages)

import { BootSetupError, hex } from "./errors.js";
import type { LoadTarget } from "./target.js";

/**
 * Guest-physical addresses of the loader's own structures (defaults in DEFAULT_LAYOUT); images must not
 * overlap them (GuestImageError otherwise).
 */
export interface BootLayout {
  /** The GDT (null, 32-bit code, data, 64-bit code: GDT_SIZE bytes); default 0x500. */
  gdt: number;
  /**
   * The multiboot information structure, memory map and module list; default 0x9000, or, when the
   * kernel or a module covers that, the first free spot (see MultibootOptions.layout).
   */
  bootInfo: number;
  /**
   * Long mode's identity page tables (PML4, PDPT, four page directories: 24 KiB, 4 KiB-aligned); default
   * 0x9A000.
   */
  pageTables: number;
}

export const DEFAULT_LAYOUT: Readonly<BootLayout> = Object.freeze({
  gdt: 0x500,
  bootInfo: 0x9000,
  pageTables: 0x9a000,
});

/** A guest-physical range the loader writes for itself; image data must not overlap it. */
export interface ReservedRange {
  /** Start guest-physical address. */
  gpa: number;
  /** Length in bytes. */
  size: number;
  /** What the loader keeps there ("GDT", "page tables", ...). */
  what: string;
}

// Flat 4 GiB descriptors with the accessed bit set (types 0x9B/0x93), matching entry.ts.
const GDT_ENTRIES = [
  0n,
  0x00cf9b000000ffffn, // 0x08: 32-bit code
  0x00cf93000000ffffn, // 0x10: data
  0x00af9b000000ffffn, // 0x18: 64-bit code (L=1, D=0)
];
export const GDT_SIZE = GDT_ENTRIES.length * 8;
export const GDT_LIMIT = GDT_SIZE - 1;

/** Identity-mapped span of the long-mode page tables. */
export const IDENTITY_MAP_BYTES = 4 * 1024 * 1024 * 1024;
const PAGE = 0x1000;
const PAGE_DIRECTORIES = IDENTITY_MAP_BYTES / (1 << 30);
export const PAGE_TABLES_SIZE = (2 + PAGE_DIRECTORIES) * PAGE;

export function gdtBytes(): Uint8Array {
  const out = new Uint8Array(GDT_SIZE);
  const dv = new DataView(out.buffer);
  GDT_ENTRIES.forEach((e, i) => {
    dv.setBigUint64(i * 8, e, true);
  });
  return out;
}

// Present + writable; leaf entries also carry PS (2 MiB) and accessed/dirty already set, so the CPU
// never updates them (one write less per first touch on the soft MMU).
const P_RW = 0x3n;
const LEAF = 0xe3n;

/** PML4 at `base`, PDPT at base+4K, page directories after: 4 GiB identity map with 2 MiB pages. */
export function pageTableBytes(base: number): Uint8Array {
  const out = new Uint8Array(PAGE_TABLES_SIZE);
  const dv = new DataView(out.buffer);
  const pdpt = base + PAGE;
  dv.setBigUint64(0, BigInt(pdpt) | P_RW, true);
  for (let d = 0; d < PAGE_DIRECTORIES; d++) {
    const pd = base + (2 + d) * PAGE;
    dv.setBigUint64(PAGE + d * 8, BigInt(pd) | P_RW, true);
    for (let i = 0; i < 512; i++) {
      const phys = (BigInt(d) << 30n) | (BigInt(i) << 21n);
      dv.setBigUint64((2 + d) * PAGE + i * 8, phys | LEAF, true);
    }
  }
  return out;
}

export function checkLayout(layout: BootLayout): void {
  for (const [name, value] of Object.entries(layout)) {
    if (!Number.isSafeInteger(value) || value < 0 || value >= IDENTITY_MAP_BYTES) {
      throw new BootSetupError(`layout.${name} ${String(value)} is not a guest-physical address below 4 GiB`);
    }
  }
  if (layout.pageTables % PAGE !== 0) {
    throw new BootSetupError(`layout.pageTables ${hex(layout.pageTables)} is not 4 KiB-aligned`);
  }
}

/** The loader's own structures must sit in RAM (checked before anything is written). */
export function checkReservedInRam(target: LoadTarget, reserved: readonly ReservedRange[]): void {
  for (const r of reserved) {
    if (!target.find(r.gpa, r.size)) {
      throw new BootSetupError(
        `${r.what} at [${hex(r.gpa)}, ${hex(r.gpa + r.size)}) is not RAM (guest has ${target.size} bytes)`,
      );
    }
  }
}
