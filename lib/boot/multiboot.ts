// Multiboot v1 as QEMU's -kernel does it: find the header in the first 8 KiB (magic 0x1BADB002 with a
// valid checksum), load by the a.out-kludge addresses when flag 16 is set, else as ELF32 by its
// program headers; modules page-aligned after the kernel; enter in flat 32-bit protected mode with
// EAX = 0x2BADB002 and EBX = the multiboot information structure (memory sizes, memory map,
// command line, boot loader name, modules).

import { hasElfMagic, parseElf } from "./elf.js";
import { protectedModeEntry } from "./entry.js";
import { BootSetupError, GuestImageError, hex } from "./errors.js";
import { type LoadResult, resolveLayout } from "./flat.js";
import {
  type BootLayout,
  checkReservedInRam,
  GDT_LIMIT,
  GDT_SIZE,
  gdtBytes,
  IDENTITY_MAP_BYTES,
  type ReservedRange,
} from "./layout.js";
import { applyPlacements, checkPlacements, type Placement } from "./plan.js";
import type { LoadTarget, RamRange } from "./target.js";

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must sit 4-byte aligned in the first 8 KiB of the file. */
export const MULTIBOOT_SEARCH = 8192;

const FLAG_PAGE_ALIGN = 1 << 0;
const FLAG_MEMORY_INFO = 1 << 1;
const FLAG_VIDEO_MODE = 1 << 2;
const FLAG_AOUT_KLUDGE = 1 << 16;
/** Bits 0-15 are requirements: a loader must refuse a kernel asking for one it does not know. */
const KNOWN_REQUIRED = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

// multiboot_info.flags bits we fill in
export const MBI_FLAG_MEMORY = 1 << 0;
export const MBI_FLAG_BOOT_DEVICE = 1 << 1;
export const MBI_FLAG_CMDLINE = 1 << 2;
export const MBI_FLAG_MODS = 1 << 3;
export const MBI_FLAG_MMAP = 1 << 6;
export const MBI_FLAG_LOADER_NAME = 1 << 9;

// Offsets inside the boot-info block; the strings follow the module list, and the block grows in
// whole pages to hold them.
const MMAP_AT = 0x80;
const MMAP_END = 0x200;
const MODS_AT = 0x200;
const MODS_END = 0x300;
const STRINGS_AT = 0x300;
const MMAP_ENTRY = 24;
const MOD_ENTRY = 16;
/** QEMU's address for the information structure: tried first when the caller names none. */
const QEMU_BOOT_INFO = 0x9000;
/** The real-mode IVT and the BIOS data area: firmware's, never the loader's. */
const BDA_END = 0x500;

export const MEMORY_TYPE_AVAILABLE = 1;
export const MEMORY_TYPE_RESERVED = 2;
/** The EBDA and the legacy VGA/ROM hole: kept out of the map as QEMU's e820 does. */
const EBDA = 0x9fc00;
const HIGH_MEMORY = 0x100000;

export interface MultibootHeader {
  /** file offset of the magic */
  offset: number;
  flags: number;
  aout?: { headerAddr: number; loadAddr: number; loadEndAddr: number; bssEndAddr: number; entryAddr: number };
}

/**
 * A multiboot module (e.g. an initrd) the loader places in guest memory and lists in the multiboot
 * information.
 */
export interface MultibootModule {
  /** The module's bytes, placed page-aligned above the kernel. */
  data: Uint8Array;
  /** the module's string (its command line) */
  cmdline?: string;
}

/** Options of `vm.loadMultiboot()`. */
export interface MultibootOptions {
  /** The kernel command line, passed in the multiboot information (flag bit 2). */
  cmdline?: string;
  /**
   * The image's name (its path, as the user gave it). GRUB and QEMU's `-kernel` start the command
   * line the kernel sees with it, and kernels that parse their arguments skip that first word: with
   * a name, the multiboot command line is `"<imageName> <cmdline>"`, or `"<imageName>"` alone when
   * `cmdline` is empty or absent. Without one (the default for API callers) the command line is
   * `cmdline` exactly as given. `nodevmm run` passes the image path it was given.
   */
  imageName?: string;
  /** Modules to load after the kernel, in this order. */
  modules?: readonly MultibootModule[];
  /** default "nodevmm" */
  bootLoaderName?: string;
  /**
   * Where the loader puts its GDT and the multiboot information; default DEFAULT_LAYOUT for the GDT.
   * Without `layout.bootInfo` the information goes to QEMU's 0x9000 when that is free, else to the
   * first free pages below the EBDA, else just above the highest loaded byte: never over the kernel,
   * its modules, the GDT or the BIOS areas (a GuestImageError only when no RAM is left for it). With
   * `layout.bootInfo` it goes there, and an image overlapping it is refused.
   */
  layout?: Partial<BootLayout>;
}

export interface MemoryMapEntry {
  base: number;
  length: number;
  type: number;
}

function u32(image: Uint8Array, off: number): number {
  return (image[off]! | (image[off + 1]! << 8) | (image[off + 2]! << 16) | (image[off + 3]! << 24)) >>> 0;
}

function scanLimit(image: Uint8Array): number {
  return Math.min(MULTIBOOT_SEARCH, image.length - 12);
}

/** True when the first 8 KiB hold a multiboot magic with a valid checksum (QEMU's test). */
export function hasMultibootHeader(image: Uint8Array): boolean {
  for (let i = 0; i < scanLimit(image); i += 4) {
    if (
      u32(image, i) === MULTIBOOT_HEADER_MAGIC &&
      (MULTIBOOT_HEADER_MAGIC + u32(image, i + 4) + u32(image, i + 8)) >>> 0 === 0
    ) {
      return true;
    }
  }
  return false;
}

export function parseMultibootHeader(image: Uint8Array): MultibootHeader {
  let badChecksum = -1;
  let offset = -1;
  for (let i = 0; i < scanLimit(image); i += 4) {
    if (u32(image, i) !== MULTIBOOT_HEADER_MAGIC) continue;
    if ((MULTIBOOT_HEADER_MAGIC + u32(image, i + 4) + u32(image, i + 8)) >>> 0 === 0) {
      offset = i;
      break;
    }
    if (badChecksum < 0) badChecksum = i;
  }
  if (offset < 0) {
    if (badChecksum >= 0) {
      throw new GuestImageError(
        "checksum",
        badChecksum + 8,
        `multiboot checksum ${hex(u32(image, badChecksum + 8))} does not make magic + flags + checksum zero`,
      );
    }
    throw new GuestImageError(
      "magic",
      0,
      `no multiboot header (magic ${hex(MULTIBOOT_HEADER_MAGIC)}) in the first 8 KiB`,
    );
  }
  const flags = u32(image, offset + 4);
  const unknown = flags & 0xffff & ~KNOWN_REQUIRED;
  if (unknown) {
    throw new GuestImageError(
      "flags",
      offset + 4,
      `requires features ${hex(unknown)} this loader does not provide`,
    );
  }
  const header: MultibootHeader = { offset, flags };
  if (flags & FLAG_AOUT_KLUDGE) {
    if (offset + 32 > image.length) {
      throw new GuestImageError(
        "header_addr",
        offset + 12,
        "file ends inside the a.out-kludge address fields",
      );
    }
    header.aout = {
      headerAddr: u32(image, offset + 12),
      loadAddr: u32(image, offset + 16),
      loadEndAddr: u32(image, offset + 20),
      bssEndAddr: u32(image, offset + 24),
      entryAddr: u32(image, offset + 28),
    };
  }
  return header;
}

/** The kernel's placements and physical entry from the a.out-kludge fields (QEMU's arithmetic). */
function aoutPlacement(
  image: Uint8Array,
  h: MultibootHeader,
  ramSize: number,
): { placement: Placement; entry: number } {
  const a = h.aout!;
  const at = h.offset;
  if (a.headerAddr < a.loadAddr) {
    throw new GuestImageError(
      "load_addr",
      at + 16,
      `load_addr ${hex(a.loadAddr)} is above header_addr ${hex(a.headerAddr)}`,
    );
  }
  if (a.headerAddr - a.loadAddr > at) {
    throw new GuestImageError(
      "header_addr",
      at + 12,
      `header_addr - load_addr = ${hex(a.headerAddr - a.loadAddr)} puts the load start before the file start`,
    );
  }
  const textOffset = at - (a.headerAddr - a.loadAddr);
  let loadSize: number;
  if (a.loadEndAddr) {
    if (a.loadEndAddr < a.loadAddr) {
      throw new GuestImageError(
        "load_end_addr",
        at + 20,
        `load_end_addr ${hex(a.loadEndAddr)} is below load_addr`,
      );
    }
    loadSize = a.loadEndAddr - a.loadAddr;
    if (textOffset + loadSize > image.length) {
      throw new GuestImageError(
        "load_end_addr",
        at + 20,
        `needs file bytes [${hex(textOffset)}, ${hex(textOffset + loadSize)}) but the file has ${hex(image.length)} (truncated?)`,
      );
    }
  } else {
    loadSize = image.length - textOffset;
  }
  let memSize = loadSize;
  if (a.bssEndAddr) {
    if (a.bssEndAddr < a.loadAddr + loadSize) {
      throw new GuestImageError(
        "bss_end_addr",
        at + 24,
        `bss_end_addr ${hex(a.bssEndAddr)} is below the end of the loaded text`,
      );
    }
    memSize = a.bssEndAddr - a.loadAddr;
  }
  if (memSize > ramSize) {
    throw new GuestImageError(
      "bss_end_addr",
      at + 24,
      `kernel size ${hex(memSize)} is larger than guest RAM (${hex(ramSize)} bytes)`,
    );
  }
  if (a.entryAddr < a.loadAddr || a.entryAddr >= a.loadAddr + memSize) {
    throw new GuestImageError(
      "entry_addr",
      at + 28,
      `entry ${hex(a.entryAddr)} is outside the loaded kernel`,
    );
  }
  return {
    placement: {
      gpa: a.loadAddr,
      data: image.subarray(textOffset, textOffset + loadSize),
      memSize,
      field: "load_addr",
      offset: at + 16,
    },
    entry: a.entryAddr,
  };
}

/** The memory map handed to the kernel: RAM regions minus the EBDA and the 640K-1M hole. */
export function multibootMemoryMap(regions: readonly RamRange[]): MemoryMapEntry[] {
  const out: MemoryMapEntry[] = [];
  let ebda = false;
  for (const r of regions) {
    const start = r.guestPhysAddr;
    const end = start + r.size;
    const pieces: [number, number][] = [];
    if (start < EBDA) pieces.push([start, Math.min(end, EBDA)]);
    if (end > HIGH_MEMORY) pieces.push([Math.max(start, HIGH_MEMORY), end]);
    if (start < 0xa0000 && end > EBDA) ebda = true;
    for (const [b, e] of pieces) out.push({ base: b, length: e - b, type: MEMORY_TYPE_AVAILABLE });
  }
  if (ebda) out.push({ base: EBDA, length: 0xa0000 - EBDA, type: MEMORY_TYPE_RESERVED });
  return out.sort((x, y) => x.base - y.base);
}

function memorySizesKiB(regions: readonly RamRange[]): { lower: number; upper: number } {
  const low = regions.find((r) => r.guestPhysAddr === 0);
  const high = regions.find((r) => r.guestPhysAddr <= HIGH_MEMORY && r.guestPhysAddr + r.size > HIGH_MEMORY);
  return {
    lower: low ? Math.floor(Math.min(low.size, 0xa0000) / 1024) : 0,
    upper: high ? Math.floor((high.guestPhysAddr + high.size - HIGH_MEMORY) / 1024) : 0,
  };
}

const PAGE = 0x1000;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

export function loadMultiboot(
  target: LoadTarget,
  image: Uint8Array,
  opts: MultibootOptions = {},
): LoadResult {
  const layout = resolveLayout(opts.layout);
  const header = parseMultibootHeader(image);

  let kernel: Placement[];
  let entry: number;
  if (header.aout) {
    const k = aoutPlacement(image, header, target.size);
    kernel = [k.placement];
    entry = k.entry;
  } else if (hasElfMagic(image)) {
    if (image[4] === 2) {
      throw new GuestImageError(
        "e_ident[EI_CLASS]",
        4,
        "multiboot kernels are ELF32; this is ELF64 (set flag 16 for a.out addresses)",
      );
    }
    const elf = parseElf(image, target.size);
    kernel = elf.segments;
    entry = elf.entryPhys;
  } else {
    throw new GuestImageError(
      "flags",
      header.offset + 4,
      "flag 16 (a.out-kludge addresses) is clear and the file is not ELF: no way to know where to load it",
    );
  }
  if (entry >= IDENTITY_MAP_BYTES) {
    throw new GuestImageError("entry", header.offset, `entry ${hex(entry)} is not a 32-bit address`);
  }

  // modules go page-aligned after the kernel, as QEMU places them
  const modules = opts.modules ?? [];
  if (modules.length * MOD_ENTRY > MODS_END - MODS_AT) {
    throw new BootSetupError(
      `${modules.length} modules do not fit the module list (max ${(MODS_END - MODS_AT) / MOD_ENTRY})`,
    );
  }
  let next = alignUp(Math.max(...kernel.map((k) => k.gpa + k.memSize)), PAGE);
  const modPlacements: Placement[] = modules.map((m, i) => {
    const p: Placement = {
      gpa: next,
      data: m.data,
      memSize: m.data.length,
      field: `modules[${i}]`,
      offset: 0,
    };
    next = alignUp(next + m.data.length, PAGE);
    return p;
  });

  const gdt: ReservedRange = { gpa: layout.gdt, size: GDT_SIZE, what: "GDT" };
  const images = [...kernel, ...modPlacements];
  checkReservedInRam(target, [gdt]);
  checkPlacements(target, images, [gdt]);

  // The strings decide the block's size, and so where it fits: encode them all first.
  const encoder = new TextEncoder();
  const strings: Uint8Array[] = [];
  let stringBytes = 0;
  const addString = (s: string): number => {
    const bytes = encoder.encode(`${s}\0`);
    strings.push(bytes);
    const at = STRINGS_AT + stringBytes;
    stringBytes += bytes.length;
    return at;
  };
  const modStrings = modules.map((m) => addString(m.cmdline ?? ""));
  const cmdlineAt = addString(kernelCommandLine(opts));
  const loaderNameAt = addString(opts.bootLoaderName ?? "nodevmm");
  const infoSize = alignUp(STRINGS_AT + stringBytes, PAGE);

  let bootInfo: number;
  if (opts.layout?.bootInfo !== undefined) {
    bootInfo = layout.bootInfo;
    const mine: ReservedRange = { gpa: bootInfo, size: infoSize, what: "multiboot information" };
    checkReservedInRam(target, [mine]);
    checkPlacements(target, images, [gdt, mine]);
  } else {
    const busy = [...images.map((p) => ({ gpa: p.gpa, size: p.memSize })), gdt];
    const found = freeBootInfoSpot(target, infoSize, busy);
    if (found === undefined) {
      throw new GuestImageError(
        "multiboot information",
        header.offset,
        `no free 32-bit RAM for the multiboot information (${hex(infoSize)} bytes) below the EBDA or above the kernel and modules`,
      );
    }
    bootInfo = found;
  }
  const reserved: ReservedRange[] = [gdt, { gpa: bootInfo, size: infoSize, what: "multiboot information" }];

  // Build the information block in a scratch buffer first: errors here must not leave a half load.
  const info = new Uint8Array(infoSize);
  const dv = new DataView(info.buffer);
  let at = STRINGS_AT;
  for (const bytes of strings) {
    info.set(bytes, at);
    at += bytes.length;
  }
  const map = multibootMemoryMap(target.regions);
  if (map.length * MMAP_ENTRY > MMAP_END - MMAP_AT) {
    throw new BootSetupError(
      `memory map of ${map.length} entries does not fit the multiboot information page`,
    );
  }
  map.forEach((e, i) => {
    const at = MMAP_AT + i * MMAP_ENTRY;
    dv.setUint32(at, MMAP_ENTRY - 4, true);
    dv.setBigUint64(at + 4, BigInt(e.base), true);
    dv.setBigUint64(at + 12, BigInt(e.length), true);
    dv.setUint32(at + 20, e.type, true);
  });
  modPlacements.forEach((p, i) => {
    const at = MODS_AT + i * MOD_ENTRY;
    dv.setUint32(at, p.gpa, true);
    dv.setUint32(at + 4, p.gpa + p.memSize, true);
    dv.setUint32(at + 8, bootInfo + modStrings[i]!, true);
  });
  const mem = memorySizesKiB(target.regions);
  dv.setUint32(
    0,
    MBI_FLAG_MEMORY |
      MBI_FLAG_BOOT_DEVICE |
      MBI_FLAG_CMDLINE |
      MBI_FLAG_MODS |
      MBI_FLAG_MMAP |
      MBI_FLAG_LOADER_NAME,
    true,
  );
  dv.setUint32(4, mem.lower, true);
  dv.setUint32(8, mem.upper, true);
  dv.setUint32(12, 0x8000ffff, true); // first BIOS disk, no partition: what QEMU reports
  dv.setUint32(16, bootInfo + cmdlineAt, true);
  dv.setUint32(20, modules.length, true);
  dv.setUint32(24, bootInfo + MODS_AT, true);
  dv.setUint32(44, map.length * MMAP_ENTRY, true);
  dv.setUint32(48, bootInfo + MMAP_AT, true);
  dv.setUint32(64, bootInfo + loaderNameAt, true);

  const loaded = applyPlacements(target, images);
  target.write(layout.gdt, gdtBytes());
  target.write(bootInfo, info);

  const state = protectedModeEntry(layout.gdt, GDT_LIMIT, entry);
  state.regs.rax = BigInt(MULTIBOOT_BOOTLOADER_MAGIC);
  state.regs.rbx = BigInt(bootInfo);
  return { format: "multiboot", entry: state, loaded, reserved, bootInfo };
}

/** The command line as GRUB and QEMU hand it over: the image's name first, when there is one. */
export function kernelCommandLine(opts: Pick<MultibootOptions, "cmdline" | "imageName">): string {
  const cmdline = opts.cmdline ?? "";
  if (opts.imageName === undefined) return cmdline;
  return cmdline === "" ? opts.imageName : `${opts.imageName} ${cmdline}`;
}

/**
 * A page-aligned spot of `size` bytes of RAM that no busy range touches: QEMU's 0x9000 first, then
 * the conventional memory between the BIOS data area and the EBDA, then just above the highest busy
 * byte (at least 1 MiB, past the BIOS areas). Below 4 GiB: the kernel gets 32-bit pointers.
 */
function freeBootInfoSpot(
  target: LoadTarget,
  size: number,
  busy: readonly { gpa: number; size: number }[],
): number | undefined {
  const free = (gpa: number): boolean =>
    gpa + size <= IDENTITY_MAP_BYTES &&
    target.find(gpa, size) !== undefined &&
    busy.every((b) => b.size === 0 || gpa + size <= b.gpa || b.gpa + b.size <= gpa);
  if (free(QEMU_BOOT_INFO)) return QEMU_BOOT_INFO;
  for (let gpa = alignUp(BDA_END, PAGE); gpa + size <= EBDA; gpa += PAGE) {
    if (free(gpa)) return gpa;
  }
  const top = alignUp(Math.max(HIGH_MEMORY, ...busy.map((b) => b.gpa + b.size)), PAGE);
  return free(top) ? top : undefined;
}
