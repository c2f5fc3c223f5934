// Register dumps in the layout of QEMU's `info registers` (what people know), followed by a few
// decoded lines (flag names, CR0/CR3/CR4/EFER bits, mode). Works from Regs/SpecialRegs only, so both
// backends print the same thing for the same state.

import type { Regs, Segment, SpecialRegs } from "../types/regs.js";
import {
  bitSet,
  decodeCr0,
  decodeCr3,
  decodeCr4,
  decodeEfer,
  decodeRflags,
  qemuFlagLetters,
} from "./flags.js";
import { cpuMode, describeSegment, segmentAttributes } from "./segments.js";

const h = (v: bigint | number, width: number): string =>
  (typeof v === "bigint" ? BigInt.asUintN(64, v) : BigInt(v >>> 0)).toString(16).padStart(width, "0");

/** Options of formatRegisters() and `vcpu.dump()`. */
export interface DumpOptions {
  /** force the 64-bit layout even outside long mode (QEMU picks it by EFER.LMA) */
  wide?: boolean;
  /** omit the decoded lines after the QEMU block */
  qemuOnly?: boolean;
}

const GPR_ROWS64: readonly (readonly [string, keyof Regs])[][] = [
  [
    ["RAX", "rax"],
    ["RBX", "rbx"],
    ["RCX", "rcx"],
    ["RDX", "rdx"],
  ],
  [
    ["RSI", "rsi"],
    ["RDI", "rdi"],
    ["RBP", "rbp"],
    ["RSP", "rsp"],
  ],
  [
    ["R8 ", "r8"],
    ["R9 ", "r9"],
    ["R10", "r10"],
    ["R11", "r11"],
  ],
  [
    ["R12", "r12"],
    ["R13", "r13"],
    ["R14", "r14"],
    ["R15", "r15"],
  ],
];

const SEGMENTS: readonly (readonly [string, keyof SpecialRegs])[] = [
  ["ES ", "es"],
  ["CS ", "cs"],
  ["SS ", "ss"],
  ["DS ", "ds"],
  ["FS ", "fs"],
  ["GS ", "gs"],
  ["LDT", "ldt"],
  ["TR ", "tr"],
];

/**
 * A register dump laid out as QEMU's `info registers` (64-bit layout when EFER.LMA), followed by decoded
 * lines: CPU mode, flag names, control-register bits.
 */
export function formatRegisters(regs: Regs, sregs: SpecialRegs, opts: DumpOptions = {}): string {
  const lma = bitSet(sregs.efer, 10);
  const wide = opts.wide ?? lma;
  const pe = bitSet(sregs.cr0, 0);
  const lines: string[] = [];
  if (wide) {
    for (const row of GPR_ROWS64) lines.push(row.map(([n, k]) => `${n}=${h(regs[k], 16)}`).join(" "));
  } else {
    const e = (k: keyof Regs) => h(Number(regs[k] & 0xffffffffn), 8);
    lines.push(`EAX=${e("rax")} EBX=${e("rbx")} ECX=${e("rcx")} EDX=${e("rdx")}`);
    lines.push(`ESI=${e("rsi")} EDI=${e("rdi")} EBP=${e("rbp")} ESP=${e("rsp")}`);
  }
  const rfl = Number(regs.rflags & 0xffffffffn);
  const cpl = pe ? sregs.cs.dpl : 0;
  const ip = wide ? `RIP=${h(regs.rip, 16)}` : `EIP=${h(Number(regs.rip & 0xffffffffn), 8)}`;
  lines.push(`${ip} RFL=${h(rfl, 8)} [${qemuFlagLetters(rfl)}] CPL=${cpl}`);
  for (const [name, key] of SEGMENTS) {
    lines.push(formatSegmentLine(name, sregs[key] as Segment, wide, pe, lma));
  }
  for (const [name, t] of [
    ["GDT", sregs.gdt],
    ["IDT", sregs.idt],
  ] as const) {
    lines.push(`${name}=     ${wide ? h(t.base, 16) : h(Number(t.base & 0xffffffffn), 8)} ${h(t.limit, 8)}`);
  }
  if (wide) {
    lines.push(
      `CR0=${h(Number(sregs.cr0 & 0xffffffffn), 8)} CR2=${h(sregs.cr2, 16)} CR3=${h(sregs.cr3, 16)} CR4=${h(Number(sregs.cr4 & 0xffffffffn), 8)}`,
    );
  } else {
    const w = (v: bigint) => h(Number(v & 0xffffffffn), 8);
    lines.push(`CR0=${w(sregs.cr0)} CR2=${w(sregs.cr2)} CR3=${w(sregs.cr3)} CR4=${w(sregs.cr4)}`);
  }
  lines.push(`EFER=${h(sregs.efer, 16)}`);
  if (!opts.qemuOnly) lines.push(...decodedLines(regs, sregs));
  return `${lines.join("\n")}\n`;
}

/**
 * One segment line of the dump, QEMU-style: selector, base, limit, attributes, and a decoded description.
 * `wide` selects 64-bit field widths; `pe` and `lma` are CR0.PE and EFER.LMA.
 */
export function formatSegmentLine(
  name: string,
  seg: Segment,
  wide: boolean,
  pe: boolean,
  lma: boolean,
): string {
  const base = wide ? h(seg.base, 16) : h(Number(seg.base & 0xffffffffn), 8);
  const attrs = h(segmentAttributes(seg) & 0x00ffff00, 8);
  const desc = describeSegment(seg, pe, lma);
  return `${name}=${h(seg.selector & 0xffff, 4)} ${base} ${h(seg.limit, 8)} ${attrs}${desc ? ` ${desc}` : ""}`;
}

function decodedLines(regs: Regs, sregs: SpecialRegs): string[] {
  const list = (names: string[]) => (names.length ? names.join(" ") : "-");
  return [
    `Mode=${cpuMode(sregs, regs.rflags)}`,
    `RFLAGS: ${list(decodeRflags(regs.rflags))}`,
    `CR0: ${list(decodeCr0(sregs.cr0))}`,
    `CR3: ${decodeCr3(sregs.cr3, sregs.cr4, sregs.efer)}`,
    `CR4: ${list(decodeCr4(sregs.cr4))}`,
    `EFER: ${list(decodeEfer(sregs.efer))}`,
  ];
}
