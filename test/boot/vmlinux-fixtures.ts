// A tiny synthetic vmlinux - ELF64 x86-64 ET_EXEC linked as the kernel is (text at 16 MiB physical,
// 0xffffffff81000000 virtual, e_entry physical), with the "Linux" ELF note every kernel since 4.19
// has - and bzImages that carry it as their compressed payload, as arch/x86/boot/compressed does.
// Its entry code checks that RSI points at a zero page with "HdrS" in it, then reports on port 0xE9
// ('V', a byte of its zeroed bss, then what test/support/bzimage.ts's REPORT reads) and exits through
// the debug-exit port with 0x2a; without "HdrS" it writes '!' and exits with 0x2b.

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import { bzImage, payload as bzPayload, REPORT } from "../support/bzimage.js";

export const KERNEL_PHYS = 0x1000000;
export const KERNEL_VIRT = 0xffffffff81000000n;
export const BSS_PHYS = KERNEL_PHYS + 0x1000;
export const BSS_SIZE = 0x3000;
/** Bytes of the bzImage's own protected-mode part ahead of the payload (its 32/64-bit entries). */
export const PM_HEAD = 0x1000;

const FAIL = [0xb0, 0x21, 0xe6, 0xe9, 0xb0, 0x2b, 0xe6, 0xf4, 0xf4]; // '!', exit 0x2b, hlt
const CHECKED = [
  0xb0,
  0x56,
  0xe6,
  0xe9, // mov al,'V'; out 0xe9,al
  0x8a,
  0x04,
  0x25,
  ...u32(BSS_PHYS + 0x10),
  0xe6,
  0xe9, // mov al,[abs bss+0x10]; out 0xe9,al: the bss is zero
  ...REPORT,
];
/** cmp dword [rsi+0x202],"HdrS"; jne FAIL; then CHECKED. */
export const VMLINUX_CODE = [
  0x81,
  0xbe,
  0x02,
  0x02,
  0x00,
  0x00,
  0x48,
  0x64,
  0x72,
  0x53,
  0x75,
  CHECKED.length,
  ...CHECKED,
  ...FAIL,
];

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

export interface NoteSpec {
  name: string;
  type: number;
  desc?: number[];
}

export interface VmlinuxSpec {
  notes?: NoteSpec[];
  machine?: number;
  type?: number;
  /** e_entry; default the physical address of the code */
  entry?: bigint;
  /** physical address of the text segment */
  textPhys?: number;
  /** the bss segment: p_memsz with p_filesz 0 */
  bssSize?: number;
}

/** The notes a real kernel has: Xen's (PVH entry among them), GNU's build id, Linux's build salt. */
export const KERNEL_NOTES: NoteSpec[] = [
  { name: "Xen", type: 18, desc: u32(KERNEL_PHYS + 0x50) },
  { name: "GNU", type: 3, desc: [1, 2, 3, 4] },
  { name: "Linux", type: 0x100, desc: [0, 0, 0, 0] },
];

function notesBytes(notes: readonly NoteSpec[]): number[] {
  const out: number[] = [];
  for (const n of notes) {
    const name = [...new TextEncoder().encode(n.name), 0];
    const desc = n.desc ?? [];
    out.push(...u32(name.length), ...u32(desc.length), ...u32(n.type), ...name);
    while (out.length % 4) out.push(0);
    out.push(...desc);
    while (out.length % 4) out.push(0);
  }
  return out;
}

/** An ELF64 with a text PT_LOAD (code), a bss PT_LOAD (memsz only) and a PT_NOTE. */
export function vmlinux(spec: VmlinuxSpec = {}): Uint8Array {
  const textPhys = spec.textPhys ?? KERNEL_PHYS;
  const code = new Uint8Array(0x1000);
  code.set(VMLINUX_CODE);
  const notes = Uint8Array.from(notesBytes(spec.notes ?? KERNEL_NOTES));
  const phnum = 3;
  const textOff = 0x1000;
  const notesOff = textOff + code.length;
  const out = new Uint8Array(notesOff + notes.length);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  dv.setUint16(16, spec.type ?? 2, true);
  dv.setUint16(18, spec.machine ?? 62, true);
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, spec.entry ?? BigInt(textPhys), true);
  dv.setBigUint64(32, 64n, true);
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, phnum, true);
  const ph = (
    i: number,
    type: number,
    off: number,
    vaddr: bigint,
    paddr: number,
    filesz: number,
    memsz: number,
  ) => {
    const at = 64 + i * 56;
    dv.setUint32(at, type, true);
    dv.setUint32(at + 4, 7, true);
    dv.setBigUint64(at + 8, BigInt(off), true);
    dv.setBigUint64(at + 16, vaddr, true);
    dv.setBigUint64(at + 24, BigInt(paddr), true);
    dv.setBigUint64(at + 32, BigInt(filesz), true);
    dv.setBigUint64(at + 40, BigInt(memsz), true);
  };
  const virt = (phys: number) => KERNEL_VIRT + BigInt(phys - KERNEL_PHYS);
  ph(0, 1, textOff, virt(textPhys), textPhys, code.length, code.length);
  ph(1, 1, notesOff, virt(textPhys + 0x1000), textPhys + 0x1000, 0, spec.bssSize ?? BSS_SIZE);
  ph(2, 4, notesOff, virt(textPhys + 0x800), textPhys + 0x800, notes.length, notes.length);
  out.set(code, textOff);
  out.set(notes, notesOff);
  return out;
}

/** The kernel's size_append: the decompressed size, 4 bytes LE, after the stream. */
export function withSize(stream: Uint8Array, size: number): Uint8Array {
  return Uint8Array.from([...stream, ...u32(size)]);
}

export interface WrapSpec {
  prefAddress?: number;
  initSize?: number;
}

/**
 * A bzImage whose protected-mode part is test/support/bzimage.ts's guest (entries at 0 and 0x200)
 * followed by `compressed` at payload_offset PM_HEAD.
 */
export function wrap(compressed: Uint8Array, spec: WrapSpec = {}): Uint8Array {
  const pm = new Uint8Array(PM_HEAD + compressed.length);
  pm.set(bzPayload(PM_HEAD));
  pm.set(compressed, PM_HEAD);
  const bz = bzImage({
    pm,
    prefAddress: spec.prefAddress ?? KERNEL_PHYS,
    initSize: spec.initSize ?? 0x400000,
  });
  const dv = new DataView(bz.buffer);
  dv.setUint32(0x248, PM_HEAD, true);
  dv.setUint32(0x24c, compressed.length, true);
  return bz;
}

export const gzipped = (data: Uint8Array) => new Uint8Array(gzipSync(data));

/** `xz` (or another tool) compressing `data`; a string says why it could not. */
export function viaTool(program: string, args: string[], data: Uint8Array): Uint8Array | string {
  const r = spawnSync(program, args, { input: data });
  if (r.error) return `${program}: ${r.error.message}`;
  if (r.status !== 0) return `${program} exited ${r.status}: ${r.stderr.toString()}`;
  return new Uint8Array(r.stdout);
}

/** The kernel's xz: BCJ x86 filter, LZMA2, CRC32 (scripts/xz_wrap.sh). */
export const xzKernel = (data: Uint8Array) =>
  viaTool("xz", ["--format=xz", "--check=crc32", "--x86", "--lzma2=preset=6,dict=1MiB", "-c"], data);

/** Whether @napi-rs/lzma loads here (it needs Node 22.20+; npm leaves it out elsewhere). */
export function napiLzmaWhy(): string | undefined {
  try {
    createRequire(import.meta.url)("@napi-rs/lzma");
    return undefined;
  } catch (e) {
    return `@napi-rs/lzma cannot be loaded: ${(e as Error).message.split("\n")[0]}`;
  }
}
