// ELF32 and ELF64 executables: PT_LOAD segments at their physical addresses (p_paddr), bss zeroed
// (p_memsz beyond p_filesz), entered at e_entry translated through the segment holding it. ELF32
// starts in protected mode, ELF64 in long mode on the loader's identity page tables.

import { GuestImageError, hex } from "./errors.js";
import { entryFor, type LoadResult, modeStructures, resolveLayout } from "./flat.js";
import { type BootLayout, checkReservedInRam, IDENTITY_MAP_BYTES } from "./layout.js";
import { applyPlacements, checkPlacements, type Placement } from "./plan.js";
import type { LoadTarget } from "./target.js";

export const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46] as const;
const ET_EXEC = 2;
const EM_386 = 3;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
/** More program headers than any real kernel has; beyond this the header is garbage. */
const MAX_PHNUM = 256;

export function hasElfMagic(image: Uint8Array): boolean {
  return image.length >= 4 && ELF_MAGIC.every((b, i) => image[i] === b);
}

export interface ElfSegment extends Placement {
  vaddr: number;
  /** index of the program header */
  index: number;
}

export interface ElfImage {
  bits: 32 | 64;
  /** e_entry as linked (virtual) */
  entry: number;
  /** e_entry translated to a physical address through its PT_LOAD segment */
  entryPhys: number;
  segments: ElfSegment[];
}

/** Little-endian fields of an ELF image; absurd 64-bit values are the image's fault. */
export class Reader {
  readonly dv: DataView;
  constructor(readonly image: Uint8Array) {
    this.dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  }
  u16(off: number): number {
    return this.dv.getUint16(off, true);
  }
  u32(off: number): number {
    return this.dv.getUint32(off, true);
  }
  big(off: number): bigint {
    return this.dv.getBigUint64(off, true);
  }
  /** a 64-bit field as a number; values no address can have are the image's fault */
  u64(off: number, field: string): number {
    const v = this.dv.getBigUint64(off, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GuestImageError(field, off, `value ${hex(v)} is absurd (beyond 2^53)`);
    }
    return Number(v);
  }
  word(bits: 32 | 64, off: number, field: string): number {
    return bits === 32 ? this.u32(off) : this.u64(off, field);
  }
}

/** Parses and checks the headers; touches no guest memory. */
export function parseElf(image: Uint8Array, ramSize = Number.MAX_SAFE_INTEGER): ElfImage {
  if (image.length < 16) {
    throw new GuestImageError(
      "e_ident",
      0,
      `file is ${image.length} bytes, too short for an ELF identification`,
    );
  }
  if (!hasElfMagic(image)) {
    throw new GuestImageError("e_ident[EI_MAG]", 0, "not an ELF file (magic is not 7f 45 4c 46)");
  }
  const cls = image[4];
  if (cls !== 1 && cls !== 2) {
    throw new GuestImageError(
      "e_ident[EI_CLASS]",
      4,
      `class ${String(cls)} is neither ELFCLASS32 (1) nor ELFCLASS64 (2)`,
    );
  }
  const bits = cls === 1 ? 32 : 64;
  if (image[5] !== 1) {
    throw new GuestImageError(
      "e_ident[EI_DATA]",
      5,
      `data encoding ${String(image[5])} is not little-endian (1)`,
    );
  }
  if (image[6] !== 1) {
    throw new GuestImageError("e_ident[EI_VERSION]", 6, `version ${String(image[6])} is not EV_CURRENT (1)`);
  }
  const ehsize = bits === 32 ? 52 : 64;
  if (image.length < ehsize) {
    throw new GuestImageError(
      "ELF header",
      0,
      `file is ${image.length} bytes, the ELF${bits} header needs ${ehsize}`,
    );
  }
  const r = new Reader(image);
  const type = r.u16(16);
  if (type !== ET_EXEC) {
    throw new GuestImageError("e_type", 16, `type ${type} is not ET_EXEC (2): only static executables load`);
  }
  const machine = r.u16(18);
  const wantMachine = bits === 32 ? EM_386 : EM_X86_64;
  if (machine !== wantMachine) {
    throw new GuestImageError(
      "e_machine",
      18,
      `machine ${machine} is not ${bits === 32 ? "EM_386 (3)" : "EM_X86_64 (62)"} for an ELF${bits} file`,
    );
  }
  const entry = r.word(bits, 24, "e_entry");
  const phoffAt = bits === 32 ? 28 : 32;
  const phoff = r.word(bits, phoffAt, "e_phoff");
  const phentsizeAt = bits === 32 ? 42 : 54;
  const phentsize = r.u16(phentsizeAt);
  const phnum = r.u16(phentsizeAt + 2);
  const wantEnt = bits === 32 ? 32 : 56;
  if (phentsize !== wantEnt) {
    throw new GuestImageError(
      "e_phentsize",
      phentsizeAt,
      `program header size ${phentsize} is not ${wantEnt}`,
    );
  }
  if (phnum === 0) {
    throw new GuestImageError("e_phnum", phentsizeAt + 2, "no program headers: nothing to load");
  }
  if (phnum > MAX_PHNUM) {
    throw new GuestImageError(
      "e_phnum",
      phentsizeAt + 2,
      `${phnum} program headers is absurd (limit ${MAX_PHNUM})`,
    );
  }
  if (phoff + phnum * phentsize > image.length) {
    throw new GuestImageError(
      "e_phoff",
      phoffAt,
      `program headers [${hex(phoff)}, ${hex(phoff + phnum * phentsize)}) run past the end of the ${hex(image.length)}-byte file`,
    );
  }

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const pt = r.u32(ph);
    if (pt === PT_INTERP || pt === PT_DYNAMIC) {
      throw new GuestImageError(`ph[${i}].p_type`, ph, "dynamically linked executables cannot be loaded");
    }
    if (pt !== PT_LOAD) continue;
    const at =
      bits === 32
        ? { offset: ph + 4, vaddr: ph + 8, paddr: ph + 12, filesz: ph + 16, memsz: ph + 20 }
        : { offset: ph + 8, vaddr: ph + 16, paddr: ph + 24, filesz: ph + 32, memsz: ph + 40 };
    const f = (name: string) => `ph[${i}].${name}`;
    const offset = r.word(bits, at.offset, f("p_offset"));
    const vaddr = r.word(bits, at.vaddr, f("p_vaddr"));
    const paddr = r.word(bits, at.paddr, f("p_paddr"));
    const filesz = r.word(bits, at.filesz, f("p_filesz"));
    const memsz = r.word(bits, at.memsz, f("p_memsz"));
    if (filesz > memsz) {
      throw new GuestImageError(
        f("p_filesz"),
        at.filesz,
        `file size ${hex(filesz)} exceeds memory size ${hex(memsz)}`,
      );
    }
    if (memsz > ramSize) {
      throw new GuestImageError(
        f("p_memsz"),
        at.memsz,
        `segment size ${hex(memsz)} is larger than guest RAM (${hex(ramSize)} bytes)`,
      );
    }
    if (offset + filesz > image.length) {
      throw new GuestImageError(
        f("p_offset"),
        at.offset,
        `segment data [${hex(offset)}, ${hex(offset + filesz)}) runs past the end of the ${hex(image.length)}-byte file (truncated?)`,
      );
    }
    segments.push({
      gpa: paddr,
      data: image.subarray(offset, offset + filesz),
      memSize: memsz,
      field: f("p_paddr"),
      offset: at.paddr,
      vaddr,
      index: i,
    });
  }
  if (!segments.some((s) => s.memSize > 0)) {
    throw new GuestImageError("e_phnum", phentsizeAt + 2, "no PT_LOAD segment with a non-zero size");
  }
  const holder = segments.find((s) => entry >= s.vaddr && entry < s.vaddr + s.memSize);
  if (!holder) {
    throw new GuestImageError("e_entry", 24, `entry ${hex(entry)} is not inside any PT_LOAD segment`);
  }
  return { bits, entry, entryPhys: entry - holder.vaddr + holder.gpa, segments };
}

/** Options of `vm.loadElf()`. */
export interface ElfOptions {
  /** Where the loader puts its GDT, boot information and page tables; default DEFAULT_LAYOUT. */
  layout?: Partial<BootLayout>;
}

export function loadElf(target: LoadTarget, image: Uint8Array, opts: ElfOptions = {}): LoadResult {
  const layout = resolveLayout(opts.layout);
  const elf = parseElf(image, target.size);
  const mode = elf.bits === 32 ? "protected" : "long";
  if (elf.entryPhys >= IDENTITY_MAP_BYTES) {
    throw new GuestImageError(
      "e_entry",
      24,
      `entry ${hex(elf.entryPhys)} is above 4 GiB, outside the identity map`,
    );
  }
  const structures = modeStructures(mode, layout);
  checkReservedInRam(target, structures.reserved);
  checkPlacements(target, elf.segments, structures.reserved);
  const loaded = applyPlacements(target, elf.segments);
  structures.reserved.forEach((r, i) => {
    target.write(r.gpa, structures.data[i]!);
  });
  return {
    format: elf.bits === 32 ? "elf32" : "elf64",
    entry: entryFor(mode, layout, elf.entryPhys),
    loaded,
    reserved: structures.reserved,
  };
}
