// Builders for synthetic guest images: small ELF32/ELF64 executables and multiboot kernels whose
// every field a test can set, so each bad-image class is one field away from a good image.
import { GuestMemory } from "../../lib/vmm/memory.js";

export const MiB = 1024 * 1024;

/** Guest RAM filled with a marker byte, so tests can see what the loader wrote and zeroed. */
export function ram(sizeMiB = 4, fill = 0xaa): { mem: GuestMemory; bytes: Uint8Array } {
  const mem = new GuestMemory();
  const bytes = new Uint8Array(sizeMiB * MiB).fill(fill);
  mem.addRegion(0, bytes);
  return { mem, bytes };
}

export interface SegmentSpec {
  type?: number;
  vaddr: number;
  paddr?: number;
  data: Uint8Array;
  memsz?: number;
  /** override p_offset / p_filesz (defaults: where the builder puts data, data.length) */
  offset?: number;
  filesz?: number;
}

export interface ElfSpec {
  bits: 32 | 64;
  entry: number;
  segments: SegmentSpec[];
  machine?: number;
  type?: number;
  /** bytes placed right after the program headers, before segment data (e.g. a multiboot header) */
  prefix?: Uint8Array;
}

export function ehsize(bits: 32 | 64): number {
  return bits === 32 ? 52 : 64;
}
export function phentsize(bits: 32 | 64): number {
  return bits === 32 ? 32 : 56;
}
/** File offset of program header i. */
export function phAt(bits: 32 | 64, i: number): number {
  return ehsize(bits) + i * phentsize(bits);
}
/** Offsets of fields inside a program header. */
export function phField(bits: 32 | 64, field: "p_offset" | "p_paddr" | "p_filesz" | "p_memsz"): number {
  const t32 = { p_offset: 4, p_paddr: 12, p_filesz: 16, p_memsz: 20 };
  const t64 = { p_offset: 8, p_paddr: 24, p_filesz: 32, p_memsz: 40 };
  return (bits === 32 ? t32 : t64)[field];
}

export function buildElf(spec: ElfSpec): Uint8Array {
  const { bits } = spec;
  const phoff = ehsize(bits);
  let cursor = phoff + spec.segments.length * phentsize(bits) + (spec.prefix?.length ?? 0);
  const offsets = spec.segments.map((s) => {
    const at = cursor;
    cursor += s.data.length;
    return at;
  });
  const out = new Uint8Array(cursor);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, bits === 32 ? 1 : 2, 1, 1]);
  dv.setUint16(16, spec.type ?? 2, true);
  dv.setUint16(18, spec.machine ?? (bits === 32 ? 3 : 62), true);
  dv.setUint32(20, 1, true);
  if (bits === 32) {
    dv.setUint32(24, spec.entry, true);
    dv.setUint32(28, phoff, true);
    dv.setUint16(40, 52, true);
    dv.setUint16(42, 32, true);
    dv.setUint16(44, spec.segments.length, true);
  } else {
    dv.setBigUint64(24, BigInt(spec.entry), true);
    dv.setBigUint64(32, BigInt(phoff), true);
    dv.setUint16(52, 64, true);
    dv.setUint16(54, 56, true);
    dv.setUint16(56, spec.segments.length, true);
  }
  if (spec.prefix) out.set(spec.prefix, phoff + spec.segments.length * phentsize(bits));
  spec.segments.forEach((s, i) => {
    const ph = phAt(bits, i);
    const offset = s.offset ?? offsets[i]!;
    const filesz = s.filesz ?? s.data.length;
    const memsz = s.memsz ?? s.data.length;
    const paddr = s.paddr ?? s.vaddr;
    out.set(s.data, offsets[i]!);
    dv.setUint32(ph, s.type ?? 1, true);
    if (bits === 32) {
      dv.setUint32(ph + 4, offset, true);
      dv.setUint32(ph + 8, s.vaddr, true);
      dv.setUint32(ph + 12, paddr, true);
      dv.setUint32(ph + 16, filesz, true);
      dv.setUint32(ph + 20, memsz, true);
      dv.setUint32(ph + 24, 7, true);
    } else {
      dv.setUint32(ph + 4, 7, true);
      dv.setBigUint64(ph + 8, BigInt(offset), true);
      dv.setBigUint64(ph + 16, BigInt(s.vaddr), true);
      dv.setBigUint64(ph + 24, BigInt(paddr), true);
      dv.setBigUint64(ph + 32, BigInt(filesz), true);
      dv.setBigUint64(ph + 40, BigInt(memsz), true);
    }
  });
  return out;
}

export const MB_MAGIC = 0x1badb002;

export function multibootHeader(flags: number, aout?: number[], checksumDelta = 0): Uint8Array {
  const words = [MB_MAGIC, flags >>> 0, (-(MB_MAGIC + flags) + checksumDelta) >>> 0, ...(aout ?? [])];
  const out = new Uint8Array(words.length * 4);
  const dv = new DataView(out.buffer);
  words.forEach((w, i) => {
    dv.setUint32(i * 4, w >>> 0, true);
  });
  return out;
}

/** An a.out-kludge multiboot kernel: header at `headerOffset`, file loaded at loadAddr from offset 0. */
export function aoutKernel(opts: {
  loadAddr: number;
  size: number;
  headerOffset?: number;
  bss?: number;
  entry?: number;
  fields?: Partial<
    Record<"header_addr" | "load_addr" | "load_end_addr" | "bss_end_addr" | "entry_addr", number>
  >;
}): Uint8Array {
  const at = opts.headerOffset ?? 16;
  const image = new Uint8Array(opts.size);
  for (let i = 0; i < image.length; i++) image[i] = (i * 7 + 1) & 0xff;
  const f = {
    header_addr: opts.loadAddr + at,
    load_addr: opts.loadAddr,
    load_end_addr: opts.loadAddr + opts.size,
    bss_end_addr: opts.loadAddr + opts.size + (opts.bss ?? 0),
    entry_addr: opts.entry ?? opts.loadAddr,
    ...opts.fields,
  };
  image.set(
    multibootHeader(0x10003, [f.header_addr, f.load_addr, f.load_end_addr, f.bss_end_addr, f.entry_addr]),
    at,
  );
  return image;
}

export function u32At(bytes: Uint8Array, off: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(off, true);
}

export function setU32(bytes: Uint8Array, off: number, v: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(off, v >>> 0, true);
  return copy;
}

export function setU16(bytes: Uint8Array, off: number, v: number): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint16(off, v, true);
  return copy;
}

export function setU64(bytes: Uint8Array, off: number, v: bigint): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setBigUint64(off, v, true);
  return copy;
}

/** True when every byte is `fill` (fast: compares 32-bit words). */
export function isFilled(bytes: Uint8Array, fill = 0xaa): boolean {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  const w = (fill * 0x01010101) >>> 0;
  for (let i = 0; i < words.length; i++) if (words[i] !== w) return false;
  for (let i = words.length * 4; i < bytes.length; i++) if (bytes[i] !== fill) return false;
  return true;
}
