// A small x86-64 encoder for the differential tests: each generated instruction is encoded from a
// form in insn-forms*.ts, so it is valid and its length is known, and it carries what it reads and
// writes (registers, flags, memory) so that the harness can mask exactly what the SDM leaves
// undefined. Memory operands always address the oracle's scratch page through two reserved
// registers: base R15 (scratch + 16*k) and index R14 (0..15); RSP points at the scratch stack.

export const CF = 0x1;
export const PF = 0x4;
export const AF = 0x10;
export const ZF = 0x40;
export const SF = 0x80;
export const DF = 0x400;
export const OF = 0x800;
export const ARITH = CF | PF | AF | ZF | SF | OF;

export const RSP = 4;
export const INDEX_REG = 14;
export const BASE_REG = 15;
/** registers a generated instruction may write */
export const WRITABLE = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13];

export type Size = 8 | 16 | 32 | 64;

/** The state before an instruction, as the harness sees it in the interpreter. */
export interface Pre {
  gpr(index: number): bigint;
  mem(address: number, size: number): bigint;
}

export interface Dynamic {
  /** flags the instruction writes this time (default: the form's flagsWritten) */
  flagsWritten?: number;
  /** flags whose new value the SDM leaves undefined */
  flagsUndefined?: number;
  /** registers whose new value the SDM leaves undefined */
  regsUndefined?: number;
  /** the memory operand's new value is undefined */
  memUndefined?: boolean;
}

export interface Insn {
  bytes: number[];
  text: string;
  /** GPR bitmasks */
  reads: number;
  writes: number;
  flagsRead: number;
  flagsWritten: number;
  flagsUndefined: number;
  dynamic?: (pre: Pre) => Dynamic;
  memRead: boolean;
  memWrite: boolean;
  /** a conditional branch (its target is the end of the following instruction) */
  branches?: boolean;
  /** writes an XMM register */
  xmmWrite?: boolean;
  /** writes an MMX register (an x87 register's contents) */
  mmWrite?: boolean;
  /** can raise an exception depending on its inputs (DIV/IDIV #DE) */
  mayFault?: boolean;
  /** the instruction needs registers set up for it: it forms a case alone */
  init?: Array<[number, bigint]>;
}

/**
 * An instruction with no registers or flags declared (what it touches is given where it matters):
 * `text` defaults to its bytes in hex.
 */
export function plainInsn(p: Partial<Insn> & Pick<Insn, "bytes">): Insn {
  return {
    text: p.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" "),
    reads: 0,
    writes: 0,
    flagsRead: 0,
    flagsWritten: 0,
    flagsUndefined: 0,
    memRead: false,
    memWrite: false,
    ...p,
  };
}

/** "0f a2" or "0fa2" as bytes */
export const hexBytes = (hex: string): number[] =>
  hex
    .replace(/\s+/g, "")
    .match(/../g)!
    .map((b) => Number.parseInt(b, 16));

export type Rm =
  | { kind: "reg"; reg: number }
  | { kind: "mem"; disp: number; disp32: boolean; index: boolean; scale: number; addr32?: boolean };

export function rmText(rm: Rm, size: Size, rex: boolean): string {
  if (rm.kind === "reg") return regName(rm.reg, size, rex);
  const d = rm.addr32 ? "d" : "";
  const idx = rm.index ? `+r14${d}*${1 << rm.scale}` : "";
  return `[r15${d}${idx}+${rm.disp}]`;
}

const NAMES64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"];
export function regName(r: number, size: Size, rex: boolean): string {
  if (size === 8) {
    if (!rex && r >= 4 && r < 8) return ["ah", "ch", "dh", "bh"][r - 4]!;
    if (r < 4) return ["al", "cl", "dl", "bl"][r]!;
    if (r < 8) return ["spl", "bpl", "sil", "dil"][r - 4]!;
    return `r${r}b`;
  }
  if (r >= 8) return `r${r}${size === 16 ? "w" : size === 32 ? "d" : ""}`;
  const base = NAMES64[r]!.slice(1);
  return size === 16 ? base : size === 32 ? `e${base}` : `r${base}`;
}

/** The full GPR an operand register names (AH..BH are RAX..RBX without REX). */
export function gprOf(r: number, size: Size, rex: boolean): number {
  return size === 8 && !rex && r >= 4 && r < 8 ? r - 4 : r;
}

export function bit(r: number): number {
  return 1 << r;
}

export interface EncodeOptions {
  /** legacy prefixes (66, F2, F3, 67), emitted before REX */
  prefixes?: number[];
  w?: boolean;
  opcode: number[];
  /** modrm.reg: a register number or an opcode extension */
  reg: number;
  rm: Rm;
  imm?: { value: bigint; size: 1 | 2 | 4 };
  /** emit a REX byte even when no bit is set (byte registers SPL..DIL) */
  forceRex?: boolean;
}

export function needsRex(o: EncodeOptions): boolean {
  return rexByte(o) !== 0x40 || !!o.forceRex;
}

function rexByte(o: EncodeOptions): number {
  let rex = 0x40;
  if (o.w) rex |= 8;
  if (o.reg >= 8) rex |= 4;
  if (o.rm.kind === "reg") {
    if (o.rm.reg >= 8) rex |= 1;
  } else {
    rex |= 1; // base r15
    if (o.rm.index) rex |= 2; // index r14
  }
  return rex;
}

export function encode(o: EncodeOptions): number[] {
  // 67: 32-bit address size (the scratch page is below 4 GiB, so the address is the same)
  const out: number[] = [...(o.rm.kind === "mem" && o.rm.addr32 ? [0x67] : []), ...(o.prefixes ?? [])];
  const rex = rexByte(o);
  if (rex !== 0x40 || o.forceRex) out.push(rex);
  out.push(...o.opcode);
  const reg = (o.reg & 7) << 3;
  if (o.rm.kind === "reg") {
    out.push(0xc0 | reg | (o.rm.reg & 7));
  } else {
    const mod = o.rm.disp32 ? 0x80 : 0x40;
    if (o.rm.index) out.push(mod | reg | 4, (o.rm.scale << 6) | ((INDEX_REG & 7) << 3) | (BASE_REG & 7));
    else out.push(mod | reg | (BASE_REG & 7));
    if (o.rm.disp32) pushLe(out, BigInt(o.rm.disp), 4);
    else out.push(o.rm.disp & 0xff);
  }
  if (o.imm) pushLe(out, o.imm.value, o.imm.size);
  return out;
}

export function pushLe(out: number[], value: bigint, size: number): void {
  const v = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++) out.push(Number((v >> BigInt(i * 8)) & 0xffn));
}

/** Effective address of a memory operand in the state `pre`. */
export function effectiveAddress(rm: Rm & { kind: "mem" }, pre: Pre): number {
  let ea = Number(pre.gpr(BASE_REG)) + rm.disp;
  if (rm.index) ea += Number(pre.gpr(INDEX_REG)) << rm.scale;
  return ea;
}

/** Reads an operand's value (register or memory) in the state `pre`, as an unsigned size-bit value. */
export function operandValue(rm: Rm, size: Size, rex: boolean, pre: Pre): bigint {
  if (rm.kind === "mem") return pre.mem(effectiveAddress(rm, pre), size / 8);
  const g = pre.gpr(gprOf(rm.reg, size, rex));
  const high = size === 8 && !rex && rm.reg >= 4 && rm.reg < 8;
  return BigInt.asUintN(size, high ? g >> 8n : g);
}

export const CC_NAMES = [
  "o",
  "no",
  "b",
  "ae",
  "e",
  "ne",
  "be",
  "a",
  "s",
  "ns",
  "p",
  "np",
  "l",
  "ge",
  "le",
  "g",
];
export const CC_FLAGS = [
  OF,
  OF,
  CF,
  CF,
  ZF,
  ZF,
  CF | ZF,
  CF | ZF,
  SF,
  SF,
  PF,
  PF,
  SF | OF,
  SF | OF,
  ZF | SF | OF,
  ZF | SF | OF,
];
