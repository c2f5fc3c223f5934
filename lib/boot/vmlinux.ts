// The kernel's own ELF image, vmlinux, as Firecracker boots it on x86_64: PT_LOAD segments at their
// physical addresses (p_paddr: LOAD_PHYSICAL_ADDR, 16 MiB, and up), entered at e_entry, which the
// kernel's linker script sets to phys_startup_64 - the 64-bit entry that "a 64bit bootloader" jumps
// to directly (arch/x86/kernel/head_64.S): long mode, an identity map covering the kernel and the
// zero page, RSI = the zero page. It comes from a bzImage's payload decompressed on the host, or as
// a file the user gives.
//
// Which ELF files are Linux kernels (detectFormat sends the others to the generic ELF loader):
// ELF64, little-endian, EM_X86_64, ET_EXEC, with a PT_NOTE segment holding a note owned by "Linux"
// (every kernel since 4.19 has one: init/version.c's BUILD_SALT note, and later the LTO note), and
// an e_entry that lies inside a PT_LOAD segment's physical range at or above 1 MiB. A Xen PVH note
// alone is not enough: other kernels (FreeBSD's) carry one too. Older kernels load with an explicit
// `format: "linux"`, which skips the note test.

import { hasElfMagic, Reader } from "./elf.js";
import { GuestImageError, hex } from "./errors.js";
import {
  CAN_USE_HEAP,
  LINUX_BOOT_FLAG,
  LINUX_HEADER_MAGIC,
  type LinuxSetupHeader,
  LOADED_HIGH,
  LOADER_TYPE_UNDEFINED,
  SETUP_HEADER,
  XLF_KERNEL_64,
} from "./linux-header.js";
import type { Placement } from "./plan.js";

const ET_EXEC = 2;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const PT_NOTE = 4;
const EHSIZE = 64;
const PHENTSIZE = 56;
const MAX_PHNUM = 256;
const HIGH_MEMORY = 0x100000;

export interface VmlinuxImage {
  /** e_entry as a physical address (phys_startup_64) */
  entry: number;
  /** PT_LOAD segments at p_paddr */
  segments: Placement[];
  /** the physical span the segments cover, [start, end) */
  start: number;
  end: number;
  /** owners of the ELF notes, e.g. ["Xen", "GNU", "Linux"] (each once) */
  noteOwners: string[];
}

interface ProgramHeader {
  index: number;
  at: number;
  type: number;
  offset: number;
  /** kernel virtual addresses are beyond 2^53 */
  vaddr: bigint;
  paddr: number;
  filesz: number;
  memsz: number;
}

/** The ELF64 x86-64 header checks; returns the program headers. */
function programHeaders(image: Uint8Array): { r: Reader; phs: ProgramHeader[]; entry: bigint } {
  if (!hasElfMagic(image)) {
    throw new GuestImageError("e_ident[EI_MAG]", 0, "not an ELF file (magic is not 7f 45 4c 46)");
  }
  if (image.length < EHSIZE) {
    throw new GuestImageError(
      "ELF header",
      0,
      `file is ${image.length} bytes, an ELF64 header needs ${EHSIZE}`,
    );
  }
  if (image[4] !== 2) {
    throw new GuestImageError(
      "e_ident[EI_CLASS]",
      4,
      `class ${String(image[4])} is not ELFCLASS64 (2): an x86_64 vmlinux is ELF64`,
    );
  }
  if (image[5] !== 1) {
    throw new GuestImageError(
      "e_ident[EI_DATA]",
      5,
      `data encoding ${String(image[5])} is not little-endian (1)`,
    );
  }
  const r = new Reader(image);
  const type = r.u16(16);
  if (type !== ET_EXEC) throw new GuestImageError("e_type", 16, `type ${type} is not ET_EXEC (2)`);
  const machine = r.u16(18);
  if (machine !== EM_X86_64) {
    throw new GuestImageError(
      "e_machine",
      18,
      `machine ${machine} is not EM_X86_64 (62): not an x86_64 kernel`,
    );
  }
  const entry = r.big(24);
  const phoff = r.u64(32, "e_phoff");
  const phentsize = r.u16(54);
  const phnum = r.u16(56);
  if (phentsize !== PHENTSIZE) {
    throw new GuestImageError("e_phentsize", 54, `program header size ${phentsize} is not ${PHENTSIZE}`);
  }
  if (phnum === 0 || phnum > MAX_PHNUM) {
    throw new GuestImageError("e_phnum", 56, `${phnum} program headers (a kernel has 1 to ${MAX_PHNUM})`);
  }
  if (phoff + phnum * PHENTSIZE > image.length) {
    throw new GuestImageError(
      "e_phoff",
      32,
      `program headers [${hex(phoff)}, ${hex(phoff + phnum * PHENTSIZE)}) run past the end of the ${hex(image.length)}-byte file`,
    );
  }
  const phs: ProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHENTSIZE;
    const f = (name: string) => `ph[${i}].${name}`;
    phs.push({
      index: i,
      at,
      type: r.u32(at),
      offset: r.u64(at + 8, f("p_offset")),
      vaddr: r.big(at + 16),
      paddr: r.u64(at + 24, f("p_paddr")),
      filesz: r.u64(at + 32, f("p_filesz")),
      memsz: r.u64(at + 40, f("p_memsz")),
    });
  }
  return { r, phs, entry };
}

/** Owners of the notes in the PT_NOTE segments (malformed notes end the walk; they prove nothing). */
function noteOwners(r: Reader, phs: readonly ProgramHeader[]): string[] {
  const owners = new Set<string>();
  const image = r.image;
  for (const ph of phs.filter((p) => p.type === PT_NOTE)) {
    let off = ph.offset;
    const end = Math.min(ph.offset + ph.filesz, image.length);
    while (off + 12 <= end) {
      const namesz = r.u32(off);
      const descsz = r.u32(off + 4);
      const next = off + 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
      if (next > end || namesz === 0) break;
      const name = new TextDecoder("latin1").decode(image.subarray(off + 12, off + 12 + namesz));
      owners.add(name.replace(/\0+$/, ""));
      off = next;
    }
  }
  return [...owners];
}

const inPhys = (entry: bigint, s: ProgramHeader) =>
  entry >= BigInt(s.paddr) && entry < BigInt(s.paddr + s.memsz);

/** e_entry as a physical address: inside a segment's [p_paddr, +p_memsz), else through its p_vaddr. */
function physicalEntry(entry: bigint, loads: readonly ProgramHeader[]): number | undefined {
  if (loads.some((s) => inPhys(entry, s))) return Number(entry);
  const byVirt = loads.find((s) => entry >= s.vaddr && entry < s.vaddr + BigInt(s.memsz));
  return byVirt ? Number(entry - byVirt.vaddr) + byVirt.paddr : undefined;
}

/** The detection rule above; never throws. */
export function isLinuxVmlinux(image: Uint8Array): boolean {
  try {
    const { r, phs, entry } = programHeaders(image);
    const loads = phs.filter((p) => p.type === PT_LOAD && p.memsz > 0);
    return (
      loads.some((s) => inPhys(entry, s)) &&
      entry >= BigInt(HIGH_MEMORY) &&
      noteOwners(r, phs).includes("Linux")
    );
  } catch {
    return false;
  }
}

/** Parses and checks a vmlinux; touches no guest memory. Where it goes is checked by the loader. */
export function parseVmlinux(image: Uint8Array): VmlinuxImage {
  const { r, phs, entry } = programHeaders(image);
  const segments: Placement[] = [];
  const loads: ProgramHeader[] = [];
  for (const ph of phs) {
    const f = (name: string) => `ph[${ph.index}].${name}`;
    if (ph.type === PT_INTERP || ph.type === PT_DYNAMIC) {
      throw new GuestImageError(f("p_type"), ph.at, "a kernel is not dynamically linked");
    }
    if (ph.type !== PT_LOAD || ph.memsz === 0) continue;
    if (ph.filesz > ph.memsz) {
      throw new GuestImageError(
        f("p_filesz"),
        ph.at + 32,
        `file size ${hex(ph.filesz)} exceeds memory size ${hex(ph.memsz)}`,
      );
    }
    if (ph.offset + ph.filesz > image.length) {
      throw new GuestImageError(
        f("p_offset"),
        ph.at + 8,
        `segment data [${hex(ph.offset)}, ${hex(ph.offset + ph.filesz)}) runs past the end of the ${hex(image.length)}-byte file (truncated?)`,
      );
    }
    if (ph.paddr < HIGH_MEMORY) {
      throw new GuestImageError(
        f("p_paddr"),
        ph.at + 24,
        `segment at physical ${hex(ph.paddr)} is below 1 MiB, where no x86_64 kernel loads (LOAD_PHYSICAL_ADDR is at least 1 MiB)`,
      );
    }
    loads.push(ph);
    segments.push({
      gpa: ph.paddr,
      data: image.subarray(ph.offset, ph.offset + ph.filesz),
      memSize: ph.memsz,
      field: f("p_paddr"),
      offset: ph.at + 24,
    });
  }
  if (segments.length === 0)
    throw new GuestImageError("e_phnum", 56, "no PT_LOAD segment with a non-zero size");
  const phys = physicalEntry(entry, loads);
  if (phys === undefined) {
    throw new GuestImageError(
      "e_entry",
      24,
      `entry ${hex(entry)} is inside no PT_LOAD segment, physically or virtually`,
    );
  }
  return {
    entry: phys,
    segments,
    start: Math.min(...segments.map((s) => s.gpa)),
    end: Math.max(...segments.map((s) => s.gpa + s.memSize)),
    noteOwners: noteOwners(r, phs),
  };
}

/** COMMAND_LINE_SIZE on x86 is 2048; header.S records the longest line without its NUL. */
const VMLINUX_CMDLINE_SIZE = 2047;
/** CONFIG_PHYSICAL_ALIGN's default on x86_64. */
const VMLINUX_KERNEL_ALIGNMENT = 0x200000;
/** The end of the real-mode heap a 64 KiB setup segment allows (no setup code runs on this path). */
const VMLINUX_HEAP_END = 0xfe00;
/** 0x202 + this byte at 0x201 is where a 2.15 header ends (after kernel_info_offset). */
const HEADER_JUMP = 0x6a;

/**
 * The setup header a bzImage of this vmlinux would carry, for a vmlinux given on its own (as
 * Firecracker's linux-loader writes one): protocol 2.15, LOADED_HIGH | CAN_USE_HEAP, the 64-bit
 * entry, the kernel's span as pref_address/init_size. Bytes laid out as in a bzImage file, up to
 * the end of the header, so the loader copies them into the zero page the same way.
 */
export function synthesizedSetupHeader(vm: VmlinuxImage): { bytes: Uint8Array; header: LinuxSetupHeader } {
  const headerEnd = 0x202 + HEADER_JUMP;
  const bytes = new Uint8Array(headerEnd);
  const dv = new DataView(bytes.buffer);
  const put = (name: keyof typeof SETUP_HEADER, value: number) => {
    const { offset, size } = SETUP_HEADER[name];
    if (size === 1) dv.setUint8(offset, value);
    else if (size === 2) dv.setUint16(offset, value, true);
    else if (size === 4) dv.setUint32(offset, value, true);
    else dv.setBigUint64(offset, BigInt(value), true);
  };
  const initSize = vm.end - vm.start;
  put("vid_mode", 0xffff); // NORMAL_VGA: no mode change
  put("boot_flag", LINUX_BOOT_FLAG);
  put("jump", 0xeb | (HEADER_JUMP << 8));
  put("header", LINUX_HEADER_MAGIC);
  put("version", 0x020f);
  put("type_of_loader", LOADER_TYPE_UNDEFINED);
  put("loadflags", LOADED_HIGH | CAN_USE_HEAP);
  put("code32_start", vm.start);
  put("heap_end_ptr", VMLINUX_HEAP_END);
  put("initrd_addr_max", 0x7fffffff);
  put("kernel_alignment", VMLINUX_KERNEL_ALIGNMENT);
  put("min_alignment", 21);
  put("xloadflags", XLF_KERNEL_64);
  put("cmdline_size", VMLINUX_CMDLINE_SIZE);
  put("pref_address", vm.start);
  put("init_size", initSize);
  return {
    bytes,
    header: {
      version: 0x020f,
      setupSects: 0,
      setupSize: 0,
      headerEnd,
      syssize: 0,
      loadflags: LOADED_HIGH | CAN_USE_HEAP,
      code32Start: vm.start,
      initrdAddrMax: 0x7fffffff,
      kernelAlignment: VMLINUX_KERNEL_ALIGNMENT,
      relocatable: false,
      xloadflags: XLF_KERNEL_64,
      cmdlineSize: VMLINUX_CMDLINE_SIZE,
      prefAddress: vm.start,
      initSize,
    },
  };
}
