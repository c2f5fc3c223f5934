// Linux bzImage, x86 boot protocol 2.06 and later (Documentation/arch/x86/boot.rst), entered as a
// boot loader without BIOS services does: skip the real-mode setup code, build the zero page
// (struct boot_params: the file's setup header plus what the loader writes - e820 map, command line,
// initrd, loader type), load the protected-mode kernel at its preferred address when it is
// relocatable and that address is aligned and fits (else at 1 MiB), and enter through the 64-bit
// boot protocol (long mode on an identity map, RIP = load address + 0x200) when XLF_KERNEL_64 is set,
// else through the 32-bit protocol (flat protected mode, EIP = load address). Both: a GDT with
// __BOOT_CS = 0x10 and __BOOT_DS = 0x18, interrupts off, RSI = the zero page, RBP/RDI/RBX = 0.

import { E820_MAX_ENTRIES_ZEROPAGE, type E820Entry, e820Bytes, e820Map } from "./e820.js";
import { type EntryState, longModeEntry, protectedModeEntry } from "./entry.js";
import { BootSetupError, GuestImageError, hex } from "./errors.js";
import type { LoadResult } from "./flat.js";
import {
  type BootLayout,
  checkLayout,
  checkReservedInRam,
  DEFAULT_LAYOUT,
  GDT_LIMIT,
  GDT_SIZE,
  IDENTITY_MAP_BYTES,
  PAGE_TABLES_SIZE,
  pageTableBytes,
  type ReservedRange,
} from "./layout.js";
import { applyPlacements, checkPlacements, type Placement } from "./plan.js";
import type { LoadTarget, RamRange } from "./target.js";

/** boot_flag at 0x1FE: the boot-sector signature 55 AA. */
export const LINUX_BOOT_FLAG = 0xaa55;
/** header at 0x202: "HdrS". */
export const LINUX_HEADER_MAGIC = 0x53726448;
/** Oldest protocol this loader takes: 2.06 has cmdline_size and the 32-bit protocol as documented. */
export const LINUX_MIN_PROTOCOL = 0x0206;

/** Setup-header fields: offset in the file, which is also their offset in boot_params. */
export const SETUP_HEADER = {
  setup_sects: { offset: 0x1f1, size: 1 },
  root_flags: { offset: 0x1f2, size: 2 },
  syssize: { offset: 0x1f4, size: 4 },
  ram_size: { offset: 0x1f8, size: 2 },
  vid_mode: { offset: 0x1fa, size: 2 },
  root_dev: { offset: 0x1fc, size: 2 },
  boot_flag: { offset: 0x1fe, size: 2 },
  jump: { offset: 0x200, size: 2 },
  header: { offset: 0x202, size: 4 },
  version: { offset: 0x206, size: 2 },
  realmode_swtch: { offset: 0x208, size: 4 },
  start_sys_seg: { offset: 0x20c, size: 2 },
  kernel_version: { offset: 0x20e, size: 2 },
  type_of_loader: { offset: 0x210, size: 1 },
  loadflags: { offset: 0x211, size: 1 },
  setup_move_size: { offset: 0x212, size: 2 },
  code32_start: { offset: 0x214, size: 4 },
  ramdisk_image: { offset: 0x218, size: 4 },
  ramdisk_size: { offset: 0x21c, size: 4 },
  bootsect_kludge: { offset: 0x220, size: 4 },
  heap_end_ptr: { offset: 0x224, size: 2 },
  ext_loader_ver: { offset: 0x226, size: 1 },
  ext_loader_type: { offset: 0x227, size: 1 },
  cmd_line_ptr: { offset: 0x228, size: 4 },
  initrd_addr_max: { offset: 0x22c, size: 4 },
  kernel_alignment: { offset: 0x230, size: 4 },
  relocatable_kernel: { offset: 0x234, size: 1 },
  min_alignment: { offset: 0x235, size: 1 },
  xloadflags: { offset: 0x236, size: 2 },
  cmdline_size: { offset: 0x238, size: 4 },
  hardware_subarch: { offset: 0x23c, size: 4 },
  hardware_subarch_data: { offset: 0x240, size: 8 },
  payload_offset: { offset: 0x248, size: 4 },
  payload_length: { offset: 0x24c, size: 4 },
  setup_data: { offset: 0x250, size: 8 },
  pref_address: { offset: 0x258, size: 8 },
  init_size: { offset: 0x260, size: 4 },
  handover_offset: { offset: 0x264, size: 4 },
  kernel_info_offset: { offset: 0x268, size: 4 },
} as const;
export type SetupHeaderField = keyof typeof SETUP_HEADER;

/** struct boot_params (the zero page) outside the setup header (arch/x86/include/uapi/asm/bootparam.h). */
export const BOOT_PARAMS = {
  size: 0x1000,
  screen_info: 0x000,
  acpi_rsdp_addr: 0x070,
  ext_ramdisk_image: 0x0c0,
  ext_ramdisk_size: 0x0c4,
  ext_cmd_line_ptr: 0x0c8,
  alt_mem_k: 0x1e0,
  scratch: 0x1e4,
  e820_entries: 0x1e8,
  sentinel: 0x1ef,
  hdr: 0x1f1,
  /** the setup header may not run past this (edd_mbr_sig_buffer) */
  hdr_end: 0x290,
  e820_table: 0x2d0,
} as const;

// loadflags / xloadflags bits
export const LOADED_HIGH = 1 << 0;
export const XLF_KERNEL_64 = 1 << 0;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1;
/** type_of_loader 0xFF: "undefined" boot loader (no registered id). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** Selectors the boot protocol's GDT must provide. */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
/** The 64-bit entry point's offset from the load address. */
export const LINUX_ENTRY64_OFFSET = 0x200;

const SECTOR = 512;
const PAGE = 0x1000;
const DEFAULT_SETUP_SECTS = 4;
const HIGH_MEMORY = 0x100000;
const FOUR_GIB = 0x1_0000_0000;
/** Where the command line goes by default (QEMU and Firecracker use the same address). */
export const DEFAULT_CMDLINE_ADDRESS = 0x20000;

export interface LinuxLayout extends BootLayout {
  /** the kernel command line (bootInfo holds the zero page) */
  cmdline: number;
}

export const DEFAULT_LINUX_LAYOUT: Readonly<LinuxLayout> = Object.freeze({
  ...DEFAULT_LAYOUT,
  cmdline: DEFAULT_CMDLINE_ADDRESS,
});

export interface LinuxOptions {
  /** the bzImage */
  kernel: Uint8Array;
  /** initial ramdisk (a cpio archive, possibly compressed), placed as high as the kernel allows */
  initrd?: Uint8Array;
  /** kernel command line; default empty */
  cmdline?: string;
  /** default: "long" when the kernel has a 64-bit entry (XLF_KERNEL_64), else "protected" */
  mode?: "long" | "protected";
  /** physical address of the ACPI RSDP, passed in boot_params.acpi_rsdp_addr (protocol 2.14+) */
  acpiRsdp?: number;
  /** extra e820 entries (ACPI tables, device windows); they replace the RAM they cover */
  e820?: readonly E820Entry[];
  /** zero page (bootInfo), command line, GDT and page tables; defaults in DEFAULT_LINUX_LAYOUT */
  layout?: Partial<LinuxLayout>;
}

export interface LinuxSetupHeader {
  /** protocol version, e.g. 0x020f for 2.15 */
  version: number;
  /** setup sectors after the boot sector (0 in the file means 4) */
  setupSects: number;
  /** file offset of the protected-mode kernel: (setup_sects + 1) * 512 */
  setupSize: number;
  /** end of the setup header in the file: 0x202 + the byte at 0x201 */
  headerEnd: number;
  syssize: number;
  loadflags: number;
  code32Start: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatable: boolean;
  /** 0 before protocol 2.12 */
  xloadflags: number;
  cmdlineSize: number;
  /** 0 before protocol 2.10 */
  prefAddress: number;
  /** 0 before protocol 2.10 */
  initSize: number;
}

export interface LinuxBootInfo {
  header: LinuxSetupHeader;
  /** "2.15" */
  protocol: string;
  /** where the protected-mode kernel was loaded (also written to code32_start) */
  loadAddress: number;
  /** where the kernel will decompress and run: [runtimeStart, runtimeStart + initSize) */
  runtimeStart: number;
  initSize: number;
  zeroPage: number;
  cmdline: { gpa: number; size: number };
  initrd?: { gpa: number; size: number };
  e820: E820Entry[];
}

export function protocolString(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, "0")}`;
}

/** True when the file has a Linux boot sector with a setup header: 55 AA at 0x1FE, "HdrS" at 0x202. */
export function hasBzImageHeader(image: Uint8Array): boolean {
  if (image.length < 0x206) return false;
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  return dv.getUint16(0x1fe, true) === LINUX_BOOT_FLAG && dv.getUint32(0x202, true) === LINUX_HEADER_MAGIC;
}

class HeaderReader {
  readonly #dv: DataView;
  constructor(readonly image: Uint8Array) {
    this.#dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  }
  /** a field's value; a file that ends inside the field is truncated, and the error names it */
  get(name: SetupHeaderField): number {
    const { offset, size } = SETUP_HEADER[name];
    if (offset + size > this.image.length) {
      throw new GuestImageError(
        name,
        offset,
        `the file (${hex(this.image.length)} bytes) ends inside the setup header: truncated?`,
      );
    }
    if (size === 1) return this.#dv.getUint8(offset);
    if (size === 2) return this.#dv.getUint16(offset, true);
    if (size === 4) return this.#dv.getUint32(offset, true);
    const v = this.#dv.getBigUint64(offset, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GuestImageError(name, offset, `value ${hex(v)} is absurd (beyond 2^53)`);
    }
    return Number(v);
  }
}

/** The last field a protocol version defines that this loader reads. */
function lastFieldFor(version: number): SetupHeaderField {
  return version >= 0x020a ? "init_size" : "cmdline_size";
}

/** Parses and checks the setup header and the file's shape; touches no guest memory. */
export function parseLinuxHeader(image: Uint8Array): LinuxSetupHeader {
  const r = new HeaderReader(image);
  const bootFlag = r.get("boot_flag");
  if (bootFlag !== LINUX_BOOT_FLAG) {
    throw new GuestImageError("boot_flag", 0x1fe, `${hex(bootFlag)} is not the boot-sector signature 0xaa55`);
  }
  const magic = r.get("header");
  if (magic !== LINUX_HEADER_MAGIC) {
    throw new GuestImageError(
      "header",
      0x202,
      `${hex(magic)} is not "HdrS": not a Linux kernel, or one older than boot protocol 2.00`,
    );
  }
  const version = r.get("version");
  if (version < LINUX_MIN_PROTOCOL) {
    throw new GuestImageError(
      "version",
      0x206,
      `boot protocol ${protocolString(version)} is older than ${protocolString(LINUX_MIN_PROTOCOL)}, the oldest this loader supports (kernel 2.6.22 and later)`,
    );
  }
  const headerEnd = 0x202 + (image[0x201] ?? 0);
  const last = lastFieldFor(version);
  const needEnd = SETUP_HEADER[last].offset + SETUP_HEADER[last].size;
  if (headerEnd < needEnd) {
    throw new GuestImageError(
      "jump",
      0x200,
      `the setup header ends at ${hex(headerEnd)} (0x202 + byte ${hex(image[0x201] ?? 0)} at 0x201), before ${last} at ${hex(SETUP_HEADER[last].offset)} that protocol ${protocolString(version)} has`,
    );
  }
  const setupSectsRaw = r.get("setup_sects");
  const syssize = r.get("syssize");
  const loadflags = r.get("loadflags");
  const code32Start = r.get("code32_start");
  const initrdAddrMax = r.get("initrd_addr_max");
  const kernelAlignment = r.get("kernel_alignment");
  const relocatable = r.get("relocatable_kernel") !== 0;
  const xloadflags = version >= 0x020c ? r.get("xloadflags") : 0;
  const cmdlineSize = r.get("cmdline_size");
  const prefAddress = version >= 0x020a ? r.get("pref_address") : 0;
  const initSize = version >= 0x020a ? r.get("init_size") : 0;

  const setupSects = setupSectsRaw === 0 ? DEFAULT_SETUP_SECTS : setupSectsRaw;
  const setupSize = (setupSects + 1) * SECTOR;
  if (setupSize > image.length) {
    throw new GuestImageError(
      "setup_sects",
      0x1f1,
      `${setupSects} setup sectors put the protected-mode kernel at ${hex(setupSize)}, beyond the end of the file (${hex(image.length)} bytes): truncated, or setup_sects is wrong`,
    );
  }
  const pmSize = image.length - setupSize;
  if (pmSize === 0) {
    throw new GuestImageError(
      "syssize",
      0x1f4,
      `the file ends right after the ${setupSects} setup sectors: there is no protected-mode kernel`,
    );
  }
  if (syssize === 0 || syssize * 16 > pmSize) {
    throw new GuestImageError(
      "syssize",
      0x1f4,
      syssize === 0
        ? "is 0: the protected-mode kernel has no size"
        : `says ${hex(syssize * 16)} bytes of protected-mode kernel but the file has ${hex(pmSize)} after the ${setupSects} setup sectors: truncated, or setup_sects is wrong`,
    );
  }
  if (!(loadflags & LOADED_HIGH)) {
    throw new GuestImageError(
      "loadflags",
      0x211,
      "LOADED_HIGH is clear: this is a zImage (protected-mode code at 0x10000), which this loader does not support; build a bzImage",
    );
  }
  if (relocatable && (kernelAlignment < PAGE || (kernelAlignment & (kernelAlignment - 1)) !== 0)) {
    throw new GuestImageError(
      "kernel_alignment",
      0x230,
      `${hex(kernelAlignment)} is not a power of two of at least 4 KiB`,
    );
  }
  return {
    version,
    setupSects,
    setupSize,
    headerEnd,
    syssize,
    loadflags,
    code32Start,
    initrdAddrMax,
    kernelAlignment,
    relocatable,
    xloadflags,
    cmdlineSize,
    prefAddress,
    initSize,
  };
}

interface Span {
  start: number;
  end: number;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;
const alignDown = (n: number, a: number) => Math.floor(n / a) * a;
const overlaps = (a: Span, b: Span) => a.start < b.end && b.start < a.end;

/**
 * Where the kernel runs after it relocates itself (the decompressor's arithmetic): a relocatable
 * kernel aligns its load address up to kernel_alignment and never goes below pref_address
 * (LOAD_PHYSICAL_ADDR); a fixed one runs at pref_address.
 */
function runtimeStartFor(h: LinuxSetupHeader, load: number): number {
  if (h.relocatable) return Math.max(alignUp(load, h.kernelAlignment), h.prefAddress);
  return h.prefAddress || load;
}

/** The highest page-aligned spot for `size` bytes in one RAM region below `limit`, clear of `avoid`. */
function placeHigh(regions: readonly RamRange[], size: number, limit: number, avoid: readonly Span[]) {
  const byTop = [...regions].sort((a, b) => b.guestPhysAddr + b.size - (a.guestPhysAddr + a.size));
  for (const r of byTop) {
    let top = Math.min(r.guestPhysAddr + r.size, limit);
    for (;;) {
      const gpa = alignDown(top - size, PAGE);
      if (gpa < r.guestPhysAddr) break;
      const hit = avoid.find((a) => overlaps(a, { start: gpa, end: gpa + size }));
      if (!hit) return gpa;
      top = hit.start;
    }
  }
  return undefined;
}

/** The boot protocol's GDT: __BOOT_CS (0x10) execute/read, __BOOT_DS (0x18) read/write, 4 GiB flat. */
function linuxGdtBytes(mode: "long" | "protected"): Uint8Array {
  const entries = [
    0n,
    0x00cf9b000000ffffn, // 0x08: 32-bit code (unused by the protocol)
    mode === "long" ? 0x00af9b000000ffffn : 0x00cf9b000000ffffn, // 0x10: __BOOT_CS
    0x00cf93000000ffffn, // 0x18: __BOOT_DS
  ];
  const out = new Uint8Array(GDT_SIZE);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    dv.setBigUint64(i * 8, e, true);
  });
  return out;
}

/** The shared entry states with the boot protocol's selectors (same flat descriptors, other slots). */
function withBootSelectors(state: EntryState): EntryState {
  const s = state.sregs;
  s.cs = { ...s.cs, selector: BOOT_CS };
  for (const k of ["ds", "es", "fs", "gs", "ss"] as const) s[k] = { ...s[k], selector: BOOT_DS };
  return state;
}

/** Memory above 1 MiB in KiB (boot_params.alt_mem_k), for kernels that fall back on it. */
function altMemK(regions: readonly RamRange[]): number {
  const r = regions.find((x) => x.guestPhysAddr <= HIGH_MEMORY && x.guestPhysAddr + x.size > HIGH_MEMORY);
  if (!r) return 0;
  return Math.min(
    Math.floor((Math.min(r.guestPhysAddr + r.size, FOUR_GIB) - HIGH_MEMORY) / 1024),
    0xffffffff,
  );
}

function checkAddress(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BootSetupError(`${name} ${String(value)} is not a non-negative integer address`);
  }
}

export function loadLinux(target: LoadTarget, opts: LinuxOptions): LoadResult & { linux: LinuxBootInfo } {
  const image = opts.kernel;
  if (!(image instanceof Uint8Array)) {
    throw new BootSetupError(`kernel must be a Uint8Array (or Buffer), got ${typeof image}`);
  }
  if (opts.initrd !== undefined && !(opts.initrd instanceof Uint8Array)) {
    throw new BootSetupError(`initrd must be a Uint8Array (or Buffer), got ${typeof opts.initrd}`);
  }
  const layout: LinuxLayout = { ...DEFAULT_LINUX_LAYOUT, ...opts.layout };
  checkLayout(layout);
  if (opts.acpiRsdp !== undefined) checkAddress("acpiRsdp", opts.acpiRsdp);

  const h = parseLinuxHeader(image);
  const has64 = (h.xloadflags & XLF_KERNEL_64) !== 0;
  const mode = opts.mode ?? (has64 ? "long" : "protected");
  if (mode !== "long" && mode !== "protected") {
    throw new BootSetupError(`mode ${String(mode)} is not one of long, protected`);
  }
  if (mode === "long" && !has64) {
    throw new GuestImageError(
      "xloadflags",
      0x236,
      `XLF_KERNEL_64 is clear (protocol ${protocolString(h.version)}): this kernel has no 64-bit entry point; use the 32-bit protocol`,
    );
  }

  // command line: at most cmdline_size bytes before its NUL
  const cmdline = opts.cmdline ?? "";
  if (cmdline.includes("\0")) throw new BootSetupError("cmdline contains a NUL byte");
  const cmdlineBytes = new TextEncoder().encode(`${cmdline}\0`);
  if (cmdlineBytes.length - 1 > h.cmdlineSize) {
    throw new GuestImageError(
      "cmdline_size",
      0x238,
      `the command line is ${cmdlineBytes.length - 1} bytes; this kernel takes at most ${h.cmdlineSize}`,
    );
  }

  // the loader's own structures
  const reserved: ReservedRange[] = [
    { gpa: layout.gdt, size: GDT_SIZE, what: "GDT" },
    { gpa: layout.bootInfo, size: BOOT_PARAMS.size, what: "zero page" },
    { gpa: layout.cmdline, size: cmdlineBytes.length, what: "command line" },
  ];
  if (mode === "long") reserved.push({ gpa: layout.pageTables, size: PAGE_TABLES_SIZE, what: "page tables" });
  checkReservedInRam(target, reserved);
  for (let i = 0; i < reserved.length; i++) {
    for (let j = i + 1; j < reserved.length; j++) {
      const a = reserved[i]!;
      const b = reserved[j]!;
      if (overlaps({ start: a.gpa, end: a.gpa + a.size }, { start: b.gpa, end: b.gpa + b.size })) {
        throw new BootSetupError(
          `the ${a.what} at [${hex(a.gpa)}, ${hex(a.gpa + a.size)}) overlaps the ${b.what} at [${hex(b.gpa)}, ${hex(b.gpa + b.size)})`,
        );
      }
    }
  }
  const clearOfReserved = (s: Span) =>
    !reserved.some((r) => overlaps(s, { start: r.gpa, end: r.gpa + r.size }));

  // the protected-mode kernel: at pref_address when relocatable and aligned and it fits, else 1 MiB
  const pm = image.subarray(h.setupSize);
  const footprint = (load: number): Span[] => {
    const run = runtimeStartFor(h, load);
    return [
      { start: load, end: load + pm.length },
      { start: run, end: run + Math.max(h.initSize, pm.length) },
    ];
  };
  const fits = (load: number) =>
    footprint(load).every(
      (s) => s.end <= IDENTITY_MAP_BYTES && target.find(s.start, s.end - s.start) && clearOfReserved(s),
    );
  const usePref =
    h.relocatable &&
    h.prefAddress >= HIGH_MEMORY &&
    h.prefAddress % h.kernelAlignment === 0 &&
    fits(h.prefAddress);
  const load = usePref ? h.prefAddress : HIGH_MEMORY;
  const [loaded, run] = footprint(load) as [Span, Span];
  const ramTop = Math.max(...target.regions.map((x) => x.guestPhysAddr + x.size), 0);
  if (!target.find(loaded.start, loaded.end - loaded.start)) {
    throw new GuestImageError(
      "syssize",
      0x1f4,
      `the protected-mode kernel (${hex(pm.length)} bytes) does not fit in guest RAM at ${hex(load)} (RAM: ${hex(target.size)} bytes, top ${hex(ramTop)})`,
    );
  }
  if (run.end > IDENTITY_MAP_BYTES || !target.find(run.start, run.end - run.start)) {
    const mib = Math.ceil(run.end / (1024 * 1024));
    throw new GuestImageError(
      h.initSize ? "init_size" : "syssize",
      h.initSize ? 0x260 : 0x1f4,
      `the kernel needs [${hex(run.start)}, ${hex(run.end)}) to decompress and run (${h.initSize ? "init_size" : "its size"} ${hex(run.end - run.start)} from ${hex(run.start)}) but guest RAM ends at ${hex(ramTop)}: give the machine at least ${mib} MiB`,
    );
  }
  for (const s of [loaded, run]) {
    const r = reserved.find((x) => overlaps(s, { start: x.gpa, end: x.gpa + x.size }));
    if (r) {
      throw new BootSetupError(
        `the kernel at [${hex(s.start)}, ${hex(s.end)}) overlaps the loader's ${r.what} at [${hex(r.gpa)}, ${hex(r.gpa + r.size)}): move the layout`,
      );
    }
  }
  const placements: Placement[] = [
    {
      gpa: load,
      data: pm,
      memSize: pm.length,
      field: usePref ? "pref_address" : "code32_start",
      offset: usePref ? 0x258 : 0x214,
    },
  ];

  // initrd: as high as possible below initrd_addr_max and the top of RAM, clear of everything else
  let initrd: { gpa: number; size: number } | undefined;
  if (opts.initrd && opts.initrd.length > 0) {
    const size = opts.initrd.length;
    const limit = Math.min(h.initrdAddrMax + 1, FOUR_GIB);
    const avoid: Span[] = [
      { start: 0, end: HIGH_MEMORY },
      loaded,
      run,
      ...reserved.map((x) => ({ start: x.gpa, end: x.gpa + x.size })),
    ];
    const gpa = placeHigh(target.regions, size, limit, avoid);
    if (gpa === undefined) {
      throw new GuestImageError(
        "initrd_addr_max",
        0x22c,
        `the initrd (${hex(size)} bytes) does not fit in RAM between 1 MiB and min(initrd_addr_max + 1 = ${hex(h.initrdAddrMax + 1)}, RAM top ${hex(ramTop)}) clear of the kernel at [${hex(Math.min(loaded.start, run.start))}, ${hex(Math.max(loaded.end, run.end))})`,
      );
    }
    initrd = { gpa, size };
    placements.push({ gpa, data: opts.initrd, memSize: size, field: "ramdisk_image", offset: 0x218 });
  }
  checkPlacements(target, placements, reserved);

  // the zero page, built in a scratch buffer before anything is written
  const e820 = e820Map(target.regions, opts.e820 ?? []);
  if (e820.length > E820_MAX_ENTRIES_ZEROPAGE) {
    throw new BootSetupError(
      `the memory map has ${e820.length} entries; the zero page holds ${E820_MAX_ENTRIES_ZEROPAGE}`,
    );
  }
  const zp = new Uint8Array(BOOT_PARAMS.size);
  const dv = new DataView(zp.buffer);
  zp.set(image.subarray(BOOT_PARAMS.hdr, Math.min(h.headerEnd, BOOT_PARAMS.hdr_end)), BOOT_PARAMS.hdr);
  dv.setUint8(SETUP_HEADER.type_of_loader.offset, LOADER_TYPE_UNDEFINED);
  dv.setUint32(SETUP_HEADER.code32_start.offset, load, true);
  dv.setUint32(SETUP_HEADER.ramdisk_image.offset, initrd?.gpa ?? 0, true);
  dv.setUint32(SETUP_HEADER.ramdisk_size.offset, initrd?.size ?? 0, true);
  dv.setUint32(SETUP_HEADER.cmd_line_ptr.offset, layout.cmdline, true);
  dv.setUint32(BOOT_PARAMS.alt_mem_k, altMemK(target.regions), true);
  if (opts.acpiRsdp !== undefined) dv.setBigUint64(BOOT_PARAMS.acpi_rsdp_addr, BigInt(opts.acpiRsdp), true);
  dv.setUint8(BOOT_PARAMS.e820_entries, e820.length);
  zp.set(e820Bytes(e820), BOOT_PARAMS.e820_table);

  const loadedRanges = applyPlacements(target, placements);
  target.write(layout.gdt, linuxGdtBytes(mode));
  target.write(layout.bootInfo, zp);
  target.write(layout.cmdline, cmdlineBytes);
  if (mode === "long") target.write(layout.pageTables, pageTableBytes(layout.pageTables));

  const state = withBootSelectors(
    mode === "long"
      ? longModeEntry(layout.gdt, GDT_LIMIT, layout.pageTables, load + LINUX_ENTRY64_OFFSET)
      : protectedModeEntry(layout.gdt, GDT_LIMIT, load),
  );
  state.regs.rsi = BigInt(layout.bootInfo);
  // the protocol wants no stack; one below the zero page keeps an early push from faulting
  state.regs.rsp = BigInt(layout.bootInfo);

  return {
    format: "linux",
    entry: state,
    loaded: loadedRanges,
    reserved,
    bootInfo: layout.bootInfo,
    linux: {
      header: h,
      protocol: protocolString(h.version),
      loadAddress: load,
      runtimeStart: run.start,
      initSize: run.end - run.start,
      zeroPage: layout.bootInfo,
      cmdline: { gpa: layout.cmdline, size: cmdlineBytes.length },
      ...(initrd ? { initrd } : {}),
      e820,
    },
  };
}
