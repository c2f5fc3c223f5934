// Linux, x86 boot protocol 2.06 and later (Documentation/arch/x86/boot.rst), entered as a boot loader
// without BIOS services does: skip the real-mode setup code, build the zero page (struct boot_params:
// the setup header plus what the loader writes - e820 map, command line, initrd, loader type), put
// the kernel in memory and enter it with RSI = the zero page, a GDT with __BOOT_CS = 0x10 and
// __BOOT_DS = 0x18, interrupts off, RBP/RDI/RBX = 0. Three ways in:
// - vmlinux, decompressed on the host (the default when it can be): the bzImage's payload is
//   unpacked here (decompress.ts) and its ELF segments loaded at their physical addresses, entered
//   at phys_startup_64 in long mode, as Firecracker boots a vmlinux. The kernel's decompressor never
//   runs: on the software backend it takes tens of seconds for an XZ kernel.
// - vmlinux given as the kernel file: the same, with a setup header made up for it (vmlinux.ts).
// - bzImage, decompressed in the guest (`decompress: "guest"`, or when the host cannot): the
//   protected-mode kernel at its preferred address when it is relocatable and that address is
//   aligned and fits (else at 1 MiB), entered through the 64-bit boot protocol (RIP = load address
//   + 0x200) when XLF_KERNEL_64 is set, else through the 32-bit protocol (flat protected mode, EIP =
//   load address).

import { findBzImagePayload, type PayloadFormat } from "./bzimage-payload.js";
import { type DecompressOptions, decompressPayload } from "./decompress.js";
import { E820_MAX_ENTRIES_ZEROPAGE, type E820Entry, e820Bytes, e820Map } from "./e820.js";
import { hasElfMagic } from "./elf.js";
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
  PAGE_TABLES_SIZE,
  pageTableBytes,
  type ReservedRange,
} from "./layout.js";
import {
  BOOT_CS,
  BOOT_DS,
  BOOT_PARAMS,
  LINUX_ENTRY64_OFFSET,
  type LinuxSetupHeader,
  LOADER_TYPE_UNDEFINED,
  parseLinuxHeader,
  protocolString,
  SETUP_HEADER,
  XLF_KERNEL_64,
} from "./linux-header.js";
import {
  HIGH_MEMORY,
  type KernelPlacement,
  overlaps,
  placeHigh,
  planBzImageKernel,
  planVmlinuxKernel,
  type Span,
} from "./linux-placement.js";
import { applyPlacements, checkPlacements, type Placement } from "./plan.js";
import type { LoadTarget, RamRange } from "./target.js";
import { parseVmlinux, synthesizedSetupHeader, type VmlinuxImage } from "./vmlinux.js";

export {
  type BzImagePayload,
  findBzImagePayload,
  PAYLOAD_MAGICS,
  type PayloadFormat,
  payloadFormat,
} from "./bzimage-payload.js";
export { type DecompressOptions, type DecompressOutcome, decompressPayload } from "./decompress.js";
export * from "./linux-header.js";
export { isLinuxVmlinux, parseVmlinux, synthesizedSetupHeader, type VmlinuxImage } from "./vmlinux.js";

const FOUR_GIB = 0x1_0000_0000;
/** Where the command line goes by default (QEMU and Firecracker use the same address). */
export const DEFAULT_CMDLINE_ADDRESS = 0x20000;

/**
 * Where the Linux loader puts its structures: the {@link BootLayout} (bootInfo holds the zero page) plus the
 * command line.
 */
export interface LinuxLayout extends BootLayout {
  /** the kernel command line (bootInfo holds the zero page) */
  cmdline: number;
}

export const DEFAULT_LINUX_LAYOUT: Readonly<LinuxLayout> = Object.freeze({
  ...DEFAULT_LAYOUT,
  cmdline: DEFAULT_CMDLINE_ADDRESS,
});

/**
 * Options of `vm.loadLinux()`: the kernel, initrd, command line and how the kernel is entered (x86 boot
 * protocol).
 */
export interface LinuxOptions {
  /** the bzImage, or the kernel's vmlinux ELF (x86_64) */
  kernel: Uint8Array;
  /** initial ramdisk (a cpio archive, possibly compressed), placed as high as the kernel allows */
  initrd?: Uint8Array;
  /** kernel command line; default empty */
  cmdline?: string;
  /** default: "long" when the kernel has a 64-bit entry (XLF_KERNEL_64), else "protected" */
  mode?: "long" | "protected";
  /**
   * "host": decompress a bzImage's payload on the host when this host can, and enter the vmlinux
   * directly (else as "guest"); "guest": enter the bzImage and let its own decompressor run.
   * "auto" (default): a Machine decides by its backend — "guest" on KVM, where the kernel's
   * decompressor runs at native speed (faster than the host's), "host" on the soft backend (tens of
   * seconds saved); the loader alone takes it as "host".
   */
  decompress?: "auto" | "host" | "guest";
  /** which decompressors "auto" may use (in-process, programs on PATH); see decompress.ts */
  decompressors?: DecompressOptions["use"];
  /** physical address of the ACPI RSDP, passed in boot_params.acpi_rsdp_addr (protocol 2.14+) */
  acpiRsdp?: number;
  /** extra e820 entries (ACPI tables, device windows); they replace the RAM they cover */
  e820?: readonly E820Entry[];
  /** zero page (bootInfo), command line, GDT and page tables; defaults in DEFAULT_LINUX_LAYOUT */
  layout?: Partial<LinuxLayout>;
}

/**
 * How a Linux kernel was loaded (`LoadResult.linux`): header, protocol, entry path and where everything went.
 */
export interface LinuxBootInfo {
  /** the kernel's setup header: the bzImage's, or the one made up for a vmlinux file */
  header: LinuxSetupHeader;
  /** "2.15" */
  protocol: string;
  /** what the kernel file was: a bzImage, or a vmlinux ELF */
  kernelFile: "bzImage" | "vmlinux";
  /** how the kernel is entered: its vmlinux at phys_startup_64, or the bzImage's own entry */
  entry: "vmlinux" | "bzImage";
  /** the bzImage payload's compression that the host undid (entry "vmlinux" from a bzImage) */
  decompressed?: PayloadFormat;
  /** what undid it (`node:zlib`, `@napi-rs/lzma`, `xz` ...) and how long it took */
  decompressor?: string;
  /** Milliseconds the host decompression took. */
  decompressMs?: number;
  /** why the kernel is entered the way it is (the reason the host did not decompress, when it did not) */
  why: string;
  /** bzImage entry: where the protected-mode kernel was loaded; vmlinux: its lowest segment (both in code32_start) */
  loadAddress: number;
  /** where the kernel runs: [runtimeStart, runtimeStart + initSize) (bzImage: after it decompresses) */
  runtimeStart: number;
  /** Bytes the kernel needs from runtimeStart while it boots (the setup header's init_size). */
  initSize: number;
  /** the physical address the vCPU starts at */
  entryPoint: number;
  /** Guest-physical address of the zero page (struct boot_params; RSI at entry). */
  zeroPage: number;
  /** Where the NUL-terminated command line went (guest-physical address, bytes). */
  cmdline: { gpa: number; size: number };
  /** Where the initrd went (guest-physical address, bytes), when there is one. */
  initrd?: { gpa: number; size: number };
  /** The memory map given to the kernel in the zero page. */
  e820: E820Entry[];
}

/** One line for `nodevmm run --verbose`: how the kernel is entered and why. */
export function describeLinuxBoot(info: LinuxBootInfo): string {
  const how =
    info.entry === "bzImage"
      ? `bzImage entry at ${hex(info.entryPoint)} (the kernel decompresses itself in the guest)`
      : `vmlinux entry at ${hex(info.entryPoint)}${info.decompressed ? ` (${info.decompressed} payload decompressed on the host by ${info.decompressor ?? "?"} in ${Math.round(info.decompressMs ?? 0)} ms)` : ""}`;
  return `linux: protocol ${info.protocol}, ${how}: ${info.why}`;
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

/** How the kernel goes in: its header bytes for the zero page, where it lands, where it starts. */
interface KernelChoice {
  header: LinuxSetupHeader;
  /** the setup header as a bzImage file holds it: [0x1F1, header.headerEnd) is copied */
  headerBytes: Uint8Array;
  mode: "long" | "protected";
  entry: "vmlinux" | "bzImage";
  kernelFile: "bzImage" | "vmlinux";
  why: string;
  decompressed?: { format: PayloadFormat; via: string; ms: number };
  vmlinux?: VmlinuxImage;
}

/** What everything but the kernel needs: the command line's bytes and the loader's own structures. */
interface Common {
  layout: LinuxLayout;
  cmdlineBytes: Uint8Array;
  reserved: ReservedRange[];
}

function commonSetup(target: LoadTarget, opts: LinuxOptions, h: LinuxSetupHeader, mode: string): Common {
  const layout: LinuxLayout = { ...DEFAULT_LINUX_LAYOUT, ...opts.layout };
  checkLayout(layout);
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
  return { layout, cmdlineBytes, reserved };
}

/**
 * The bzImage's payload as a vmlinux this header agrees with, or why not: not asked for, no 64-bit
 * entry, no payload, no decompressor, not an x86_64 ELF, or an ELF that is not where the header
 * says the kernel runs.
 */
function unpackBzImage(
  image: Uint8Array,
  h: LinuxSetupHeader,
  mode: "long" | "protected",
  opts: LinuxOptions,
):
  | { ok: true; vm: VmlinuxImage; format: PayloadFormat; via: string; ms: number }
  | { ok: false; why: string } {
  if (opts.decompress === "guest") {
    return {
      ok: false,
      why: 'decompress: "guest" (asked for, or a KVM machine\'s default: its guest decompresses at native speed)',
    };
  }
  if (mode !== "long")
    return { ok: false, why: "the 32-bit boot protocol was asked for; a vmlinux is entered in long mode" };
  const found = findBzImagePayload(image, h);
  if (!found.ok) return { ok: false, why: found.reason };
  const { payload } = found;
  const out = decompressPayload(payload, opts.decompressors ? { use: opts.decompressors } : {});
  if (!out.ok) return { ok: false, why: out.reason };
  let vm: VmlinuxImage;
  try {
    vm = parseVmlinux(out.data);
  } catch (e) {
    return { ok: false, why: `the decompressed payload is not an x86_64 vmlinux: ${(e as Error).message}` };
  }
  if (h.prefAddress && vm.start !== h.prefAddress) {
    return {
      ok: false,
      why: `the vmlinux starts at ${hex(vm.start)}, the header's pref_address is ${hex(h.prefAddress)}: they disagree`,
    };
  }
  if (h.initSize && vm.end > vm.start + h.initSize) {
    return {
      ok: false,
      why: `the vmlinux ends at ${hex(vm.end)}, beyond pref_address + init_size (${hex(vm.start + h.initSize)})`,
    };
  }
  return { ok: true, vm, format: payload.format, via: out.via, ms: out.ms };
}

function chooseKernel(opts: LinuxOptions): KernelChoice {
  const image = opts.kernel;
  if (hasElfMagic(image)) {
    if (opts.mode === "protected") {
      throw new BootSetupError(
        "a vmlinux ELF is entered in long mode (phys_startup_64); mode protected needs a bzImage",
      );
    }
    const vm = parseVmlinux(image);
    const { bytes, header } = synthesizedSetupHeader(vm);
    return {
      header,
      headerBytes: bytes,
      mode: "long",
      entry: "vmlinux",
      kernelFile: "vmlinux",
      why: "the kernel file is a vmlinux ELF",
      vmlinux: vm,
    };
  }
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
  return { header: h, headerBytes: image, mode, kernelFile: "bzImage", entry: "bzImage", why: "" };
}

/** A bzImage's choice turned into its vmlinux when the host can unpack it, else told why not. */
function withHostDecompression(k: KernelChoice, opts: LinuxOptions): KernelChoice {
  const u = unpackBzImage(opts.kernel, k.header, k.mode, opts);
  if (!u.ok) return { ...k, why: u.why };
  return {
    ...k,
    entry: "vmlinux",
    why: "the bzImage's payload was decompressed on the host",
    decompressed: { format: u.format, via: u.via, ms: u.ms },
    vmlinux: u.vm,
  };
}

/** Everything checked and laid out; `write` puts it in guest memory. */
interface LinuxPlan {
  kernel: KernelPlacement;
  initrd?: { gpa: number; size: number };
  placements: Placement[];
  e820: E820Entry[];
  entryPoint: number;
}

function plan(target: LoadTarget, opts: LinuxOptions, k: KernelChoice, c: Common): LinuxPlan {
  const h = k.header;
  const kernel = k.vmlinux
    ? planVmlinuxKernel(target, k.vmlinux, c.reserved, opts.e820 ?? [])
    : planBzImageKernel(target, h, opts.kernel, c.reserved);
  const placements = [...kernel.placements];

  // initrd: as high as possible below initrd_addr_max and the top of RAM, clear of everything else
  let initrd: { gpa: number; size: number } | undefined;
  if (opts.initrd && opts.initrd.length > 0) {
    const size = opts.initrd.length;
    const limit = Math.min(h.initrdAddrMax + 1, FOUR_GIB);
    const avoid: Span[] = [
      { start: 0, end: HIGH_MEMORY },
      ...kernel.footprint,
      ...c.reserved.map((x) => ({ start: x.gpa, end: x.gpa + x.size })),
      ...(opts.e820 ?? []).map((e) => ({ start: e.addr, end: e.addr + e.size })),
    ];
    const gpa = placeHigh(target.regions, size, limit, avoid);
    if (gpa === undefined) {
      const ramTop = Math.max(...target.regions.map((x) => x.guestPhysAddr + x.size), 0);
      const lo = Math.min(...kernel.footprint.map((s) => s.start));
      const hi = Math.max(...kernel.footprint.map((s) => s.end));
      throw new GuestImageError(
        "initrd_addr_max",
        0x22c,
        `the initrd (${hex(size)} bytes) does not fit in RAM between 1 MiB and min(initrd_addr_max + 1 = ${hex(h.initrdAddrMax + 1)}, RAM top ${hex(ramTop)}) clear of the kernel at [${hex(lo)}, ${hex(hi)})`,
      );
    }
    initrd = { gpa, size };
    placements.push({ gpa, data: opts.initrd, memSize: size, field: "ramdisk_image", offset: 0x218 });
  }
  checkPlacements(target, placements, c.reserved);

  const e820 = e820Map(target.regions, opts.e820 ?? []);
  if (e820.length > E820_MAX_ENTRIES_ZEROPAGE) {
    throw new BootSetupError(
      `the memory map has ${e820.length} entries; the zero page holds ${E820_MAX_ENTRIES_ZEROPAGE}`,
    );
  }
  const entryPoint = k.vmlinux
    ? k.vmlinux.entry
    : kernel.loadAddress + (k.mode === "long" ? LINUX_ENTRY64_OFFSET : 0);
  return { kernel, ...(initrd ? { initrd } : {}), placements, e820, entryPoint };
}

/** The zero page: the setup header as the file has it plus the loader's fields. */
function zeroPage(
  target: LoadTarget,
  opts: LinuxOptions,
  k: KernelChoice,
  c: Common,
  p: LinuxPlan,
): Uint8Array {
  const zp = new Uint8Array(BOOT_PARAMS.size);
  const dv = new DataView(zp.buffer);
  zp.set(
    k.headerBytes.subarray(BOOT_PARAMS.hdr, Math.min(k.header.headerEnd, BOOT_PARAMS.hdr_end)),
    BOOT_PARAMS.hdr,
  );
  dv.setUint8(SETUP_HEADER.type_of_loader.offset, LOADER_TYPE_UNDEFINED);
  dv.setUint32(SETUP_HEADER.code32_start.offset, p.kernel.loadAddress, true);
  dv.setUint32(SETUP_HEADER.ramdisk_image.offset, p.initrd?.gpa ?? 0, true);
  dv.setUint32(SETUP_HEADER.ramdisk_size.offset, p.initrd?.size ?? 0, true);
  dv.setUint32(SETUP_HEADER.cmd_line_ptr.offset, c.layout.cmdline, true);
  dv.setUint32(BOOT_PARAMS.alt_mem_k, altMemK(target.regions), true);
  if (opts.acpiRsdp !== undefined) dv.setBigUint64(BOOT_PARAMS.acpi_rsdp_addr, BigInt(opts.acpiRsdp), true);
  dv.setUint8(BOOT_PARAMS.e820_entries, p.e820.length);
  zp.set(e820Bytes(p.e820), BOOT_PARAMS.e820_table);
  return zp;
}

export function loadLinux(target: LoadTarget, opts: LinuxOptions): LoadResult & { linux: LinuxBootInfo } {
  const image = opts.kernel;
  if (!(image instanceof Uint8Array)) {
    throw new BootSetupError(`kernel must be a Uint8Array (or Buffer), got ${typeof image}`);
  }
  if (opts.initrd !== undefined && !(opts.initrd instanceof Uint8Array)) {
    throw new BootSetupError(`initrd must be a Uint8Array (or Buffer), got ${typeof opts.initrd}`);
  }
  if (opts.decompress !== undefined && !["auto", "host", "guest"].includes(opts.decompress)) {
    throw new BootSetupError(`decompress ${String(opts.decompress)} is not one of auto, host, guest`);
  }
  if (opts.acpiRsdp !== undefined) checkAddress("acpiRsdp", opts.acpiRsdp);

  let k = chooseKernel(opts);
  let c = commonSetup(target, opts, k.header, k.mode);
  // after the cheap checks, so a bad command line or layout does not wait for a decompression
  if (k.kernelFile === "bzImage") k = withHostDecompression(k, opts);
  let p: LinuxPlan;
  try {
    p = plan(target, opts, k, c);
  } catch (e) {
    // a vmlinux unpacked here that does not fit goes back to the bzImage, which says what it needs
    if (k.kernelFile !== "bzImage" || k.entry !== "vmlinux") throw e;
    const { vmlinux: _, decompressed: __, ...rest } = k;
    k = {
      ...rest,
      entry: "bzImage",
      why: `the decompressed vmlinux cannot be placed: ${(e as Error).message}`,
    };
    c = commonSetup(target, opts, k.header, k.mode);
    p = plan(target, opts, k, c);
  }
  const zp = zeroPage(target, opts, k, c, p);

  const loadedRanges = applyPlacements(target, p.placements);
  target.write(c.layout.gdt, linuxGdtBytes(k.mode));
  target.write(c.layout.bootInfo, zp);
  target.write(c.layout.cmdline, c.cmdlineBytes);
  if (k.mode === "long") target.write(c.layout.pageTables, pageTableBytes(c.layout.pageTables));

  const state = withBootSelectors(
    k.mode === "long"
      ? longModeEntry(c.layout.gdt, GDT_LIMIT, c.layout.pageTables, p.entryPoint)
      : protectedModeEntry(c.layout.gdt, GDT_LIMIT, p.entryPoint),
  );
  state.regs.rsi = BigInt(c.layout.bootInfo);
  // the protocol wants no stack; one below the zero page keeps an early push from faulting
  state.regs.rsp = BigInt(c.layout.bootInfo);

  return {
    format: "linux",
    entry: state,
    loaded: loadedRanges,
    reserved: c.reserved,
    bootInfo: c.layout.bootInfo,
    linux: {
      header: k.header,
      protocol: protocolString(k.header.version),
      kernelFile: k.kernelFile,
      entry: k.entry,
      ...(k.decompressed
        ? {
            decompressed: k.decompressed.format,
            decompressor: k.decompressed.via,
            decompressMs: k.decompressed.ms,
          }
        : {}),
      why: k.why,
      loadAddress: p.kernel.loadAddress,
      runtimeStart: p.kernel.runtimeStart,
      initSize: p.kernel.initSize,
      entryPoint: p.entryPoint,
      zeroPage: c.layout.bootInfo,
      cmdline: { gpa: c.layout.cmdline, size: c.cmdlineBytes.length },
      ...(p.initrd ? { initrd: p.initrd } : {}),
      e820: p.e820,
    },
  };
}
