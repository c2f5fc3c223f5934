// Pre-decoded instructions for the decode cache (block-cache.ts). An Op carries its handler and
// its operands already decoded; every Op has the same shape, so the run loop's loads stay
// monomorphic and a later block compiler (the JIT) can turn a block's ops into JavaScript source
// one op kind at a time (`kind` names the form, the fields are its operands).
//
// Handlers follow the single-step executor's rules exactly: they raise faults before changing any
// architectural state, leave RIP at the instruction until it completes, and set RIP to the next
// instruction (or the branch target) last.

import { execute } from "./exec.js";
import { condition, LZ_ADD, LZ_DEC, LZ_INC, LZ_LOGIC, LZ_SUB, lazyCf, lazyZf } from "./flags.js";
import type { Interpreter } from "./interpreter.js";

const TWO32 = 4294967296;

export type OpFn = (cpu: Interpreter, op: Op) => void;

export const enum OpKind {
  /** anything without a fast form: runs the single-step decoder at RIP */
  Generic = 0,
  AluRR = 1,
  AluRI = 2,
  AluRM = 3,
  AluMR = 4,
  AluMI = 5,
  IncDec = 6,
  MovRR = 7,
  MovRI = 8,
  Load = 9,
  Store = 10,
  Lea = 11,
  Jcc = 12,
  Jmp = 13,
  Nop = 14,
  TestRR = 15,
  // forms that only the block compiler emits inline: in interpreted blocks their handler is the
  // single-step executor (genericOp), which is exact for them (no control transfer, no shadow)
  /** MOVZX (sub 0) / MOVSX (sub 1) r, r8/r16: source width in imm (8/16), register in rm */
  MovxR = 16,
  /** MOVZX / MOVSX r, m8/m16 */
  MovxM = 17,
  /** CMOVcc r, r (sub: condition) */
  CmovRR = 18,
  /** SETcc r8 (sub: condition; register in rm) */
  SetccR = 19,
  /** MOV m, imm */
  StoreImm = 20,
  /** SHL (4) / SHR (5) / SAR (7) r, count (imm: the count, already masked; not 0) */
  ShiftRI = 21,
  /** TEST r, imm */
  TestRI = 22,
  /** TEST m, r */
  TestMR = 23,
}

/** how a memory operand's address is formed */
export const enum EaKind {
  A16 = 0,
  A32 = 1,
  A64 = 2,
  RipRel = 3,
}

export class Op {
  fn: OpFn = genericOp;
  kind: OpKind = OpKind.Generic;
  /** instruction length in bytes */
  len = 0;
  /** operand size 16/32/64 (Jcc/Jmp: the IP wrap size) */
  size = 32;
  /** ALU operation (ModRM /r numbering), condition code, or 0 (inc) / 1 (dec) */
  sub = 0;
  /** register operand (ModRM.reg), or destination register */
  reg = 0;
  /** second register operand (ModRM.rm when mod = 3) */
  rm = 0;
  /** immediate (lo) and its high half for 64-bit operands; branch displacement */
  imm = 0;
  immHi = 0;
  // memory operand: ea() computes the linear address from these
  eaKind: EaKind = EaKind.A32;
  base = -1;
  index = -1;
  scale = 0;
  disp = 0;
  seg = 3;
  /** the block ends after this op (control transfer) */
  ends = false;
  /** an 8-bit register operand (rm) is AH/CH/DH/BH: bits 8-15 of register rm */
  byteHi = false;
}

/** linear address of the op's memory operand (same arithmetic as Interpreter.modrm/ea16) */
export function ea(cpu: Interpreter, op: Op): number {
  const lo = cpu.lo;
  switch (op.eaKind) {
    case EaKind.A16: {
      let off = op.disp;
      if (op.base >= 0) off += lo[op.base];
      if (op.index >= 0) off += lo[op.index];
      return (cpu.effBase[op.seg] + (off & 0xffff)) >>> 0;
    }
    case EaKind.A32: {
      let off = op.disp;
      if (op.base >= 0) off += lo[op.base];
      if (op.index >= 0) off += lo[op.index] << op.scale;
      return (cpu.effBase[op.seg] + (off >>> 0)) >>> 0;
    }
    case EaKind.A64: {
      const hi = cpu.hi;
      let l = op.disp;
      let h = 0;
      if (op.base >= 0) {
        l += lo[op.base] >>> 0;
        h += hi[op.base];
      }
      if (op.index >= 0) {
        const m = 1 << op.scale;
        l += (lo[op.index] >>> 0) * m;
        h += hi[op.index] * m;
      }
      const carry = Math.floor(l / TWO32);
      // DS/SS bases are 0 in 64-bit mode (segment overrides take the generic path)
      const lin = ((h + carry) | 0) * TWO32 + (l >>> 0);
      // a non-canonical stack reference is #SS(0); the TLB fill would call it #GP
      return op.seg === 2 ? cpu.canon(lin, 2) : lin;
    }
    default:
      return cpu.rip + op.len + op.disp;
  }
}

/**
 * Linear address of the op's memory operand for an access of `bytes` bytes, after the segment's
 * limit and type checks (Interpreter.segFastR/W: nothing to do for a flat segment; segCheck, with
 * its #GP(0)/#SS(0), past the bound) — as the single-step executor checks its memory operands.
 */
export function eaAcc(cpu: Interpreter, op: Op, bytes: number, write: boolean): number {
  const kind = op.eaKind;
  if (kind !== EaKind.A16 && kind !== EaKind.A32) return ea(cpu, op);
  const lo = cpu.lo;
  let off = op.disp;
  if (op.base >= 0) off += lo[op.base];
  if (kind === EaKind.A16) {
    if (op.index >= 0) off += lo[op.index];
    off &= 0xffff;
  } else {
    if (op.index >= 0) off += lo[op.index] << op.scale;
    off >>>= 0;
  }
  const seg = op.seg;
  if (off + bytes - 1 > (write ? cpu.segFastW[seg] : cpu.segFastR[seg])) cpu.segCheck(seg, off, bytes, write);
  return (cpu.effBase[seg] + off) >>> 0;
}

export function genericOp(cpu: Interpreter, _op: Op): void {
  cpu.ip = cpu.rip;
  execute(cpu);
}

function readReg(cpu: Interpreter, size: number, r: number): number {
  if (size === 32) return cpu.lo[r] >>> 0;
  if (size === 64) {
    cpu.vh = cpu.hi[r];
    return cpu.lo[r] >>> 0;
  }
  return cpu.lo[r] & 0xffff;
}

function writeReg(cpu: Interpreter, size: number, r: number, v: number, vh: number): void {
  if (size === 32) {
    cpu.lo[r] = v;
    cpu.hi[r] = 0;
  } else if (size === 64) {
    cpu.lo[r] = v;
    cpu.hi[r] = vh;
  } else cpu.lo[r] = (cpu.lo[r] & ~0xffff) | (v & 0xffff);
}

export function aluRR(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const d = op.reg;
  const s = op.rm;
  const lo = cpu.lo;
  const hi = cpu.hi;
  if (size === 16) {
    const r = cpu.alu(op.sub, 16, lo[d] & 0xffff, 0, lo[s] & 0xffff, 0);
    if (op.sub !== 7) lo[d] = (lo[d] & ~0xffff) | r;
  } else {
    const r = cpu.alu(op.sub, size, lo[d] >>> 0, hi[d], lo[s] >>> 0, hi[s]);
    if (op.sub !== 7) {
      lo[d] = r;
      hi[d] = size === 64 ? cpu.vh : 0;
    }
  }
  cpu.rip += op.len;
}

export function aluRI(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const d = op.reg;
  const lo = cpu.lo;
  if (size === 16) {
    const r = cpu.alu(op.sub, 16, lo[d] & 0xffff, 0, op.imm, 0);
    if (op.sub !== 7) lo[d] = (lo[d] & ~0xffff) | r;
  } else {
    const r = cpu.alu(op.sub, size, lo[d] >>> 0, cpu.hi[d], op.imm, op.immHi);
    if (op.sub !== 7) {
      lo[d] = r;
      cpu.hi[d] = size === 64 ? cpu.vh : 0;
    }
  }
  cpu.rip += op.len;
}

/** reg = reg op [mem] */
export function aluRM(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const v = cpu.rd(size, eaAcc(cpu, op, size >> 3, false));
  const vh = cpu.vh;
  const a = readReg(cpu, size, op.reg);
  const r = cpu.alu(op.sub, size, a, cpu.vh, v, vh);
  if (op.sub !== 7) writeReg(cpu, size, op.reg, r, cpu.vh);
  cpu.rip += op.len;
}

/** [mem] = [mem] op reg */
export function aluMR(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const lin = eaAcc(cpu, op, size >> 3, op.sub !== 7);
  if (op.sub !== 7) cpu.probeWrite(lin, size >> 3);
  const a = cpu.rd(size, lin);
  const ah = cpu.vh;
  const v = readReg(cpu, size, op.reg);
  const r = cpu.alu(op.sub, size, a, ah, v, cpu.vh);
  if (op.sub !== 7) cpu.wr(size, lin, r, cpu.vh);
  cpu.rip += op.len;
}

/** [mem] = [mem] op imm */
export function aluMI(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const lin = eaAcc(cpu, op, size >> 3, op.sub !== 7);
  if (op.sub !== 7) cpu.probeWrite(lin, size >> 3);
  const a = cpu.rd(size, lin);
  const r = cpu.alu(op.sub, size, a, cpu.vh, op.imm, op.immHi);
  if (op.sub !== 7) cpu.wr(size, lin, r, cpu.vh);
  cpu.rip += op.len;
}

export function testRR(cpu: Interpreter, op: Op): void {
  const lo = cpu.lo;
  const hi = cpu.hi;
  const size = op.size;
  if (size === 16) cpu.logic(16, lo[op.reg] & lo[op.rm] & 0xffff, 0);
  else cpu.logic(size, lo[op.reg] & lo[op.rm], size === 64 ? hi[op.reg] & hi[op.rm] : 0);
  cpu.rip += op.len;
}

export function incDec(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const r = op.reg;
  const lo = cpu.lo;
  if (size === 16) {
    const a = lo[r] & 0xffff;
    lo[r] = (lo[r] & ~0xffff) | (op.sub === 0 ? cpu.inc(16, a, 0) : cpu.dec(16, a, 0));
  } else {
    const a = lo[r] >>> 0;
    const ah = cpu.hi[r];
    lo[r] = op.sub === 0 ? cpu.inc(size, a, ah) : cpu.dec(size, a, ah);
    cpu.hi[r] = size === 64 ? cpu.vh : 0;
  }
  cpu.rip += op.len;
}

export function movRR(cpu: Interpreter, op: Op): void {
  const v = readReg(cpu, op.size, op.rm);
  writeReg(cpu, op.size, op.reg, v, cpu.vh);
  cpu.rip += op.len;
}

export function movRI(cpu: Interpreter, op: Op): void {
  writeReg(cpu, op.size, op.reg, op.imm, op.immHi);
  cpu.rip += op.len;
}

export function load(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const lin = eaAcc(cpu, op, size >> 3, false);
  if (size === 32) {
    const v = cpu.rd32(lin);
    cpu.lo[op.reg] = v;
    cpu.hi[op.reg] = 0;
  } else {
    const v = cpu.rd(size, lin);
    writeReg(cpu, size, op.reg, v, cpu.vh);
  }
  cpu.rip += op.len;
}

export function store(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const lin = eaAcc(cpu, op, size >> 3, true);
  if (size === 32) cpu.wr32(lin, cpu.lo[op.reg]);
  else if (size === 64) cpu.wr64(lin, cpu.lo[op.reg], cpu.hi[op.reg]);
  else cpu.wr16(lin, cpu.lo[op.reg]);
  cpu.rip += op.len;
}

/** LEA: the offset (not the linear address), truncated to the operand size */
export function lea(cpu: Interpreter, op: Op): void {
  const lo = cpu.lo;
  let v: number;
  let vh = 0;
  switch (op.eaKind) {
    case EaKind.A16: {
      let off = op.disp;
      if (op.base >= 0) off += lo[op.base];
      if (op.index >= 0) off += lo[op.index];
      v = off & 0xffff;
      break;
    }
    case EaKind.A32: {
      let off = op.disp;
      if (op.base >= 0) off += lo[op.base];
      if (op.index >= 0) off += lo[op.index] << op.scale;
      v = off >>> 0;
      break;
    }
    case EaKind.A64: {
      // halves kept apart: the offset need not be a canonical address, so it may not fit a double
      const hi = cpu.hi;
      let l = op.disp;
      let h = 0;
      if (op.base >= 0) {
        l += lo[op.base] >>> 0;
        h += hi[op.base];
      }
      if (op.index >= 0) {
        const m = 1 << op.scale;
        l += (lo[op.index] >>> 0) * m;
        h += hi[op.index] * m;
      }
      v = l >>> 0;
      vh = (h + Math.floor(l / TWO32)) | 0;
      break;
    }
    default: {
      // RIP-relative: RIP is canonical, so the sum is exact
      const a = ea(cpu, op);
      v = a >>> 0;
      vh = Math.floor(a / TWO32) | 0;
    }
  }
  if (op.size === 16) v &= 0xffff;
  writeReg(cpu, op.size, op.reg, v, vh);
  cpu.rip += op.len;
}

export function jcc(cpu: Interpreter, op: Op): void {
  const cc = op.sub;
  // JZ/JNZ after an ALU op: ZF straight from the lazy result
  const taken = (cc & 0xe) === 4 && cpu.fOp !== 0 ? lazyZf(cpu) === (cc === 4) : condition(cpu, cc);
  const next = cpu.rip + op.len;
  if (!taken) {
    cpu.rip = next;
    return;
  }
  const t = next + op.imm;
  cpu.rip = op.size === 64 ? t : op.size === 16 ? t & 0xffff : t >>> 0;
}

export function jmp(cpu: Interpreter, op: Op): void {
  const t = cpu.rip + op.len + op.imm;
  cpu.rip = op.size === 64 ? t : op.size === 16 ? t & 0xffff : t >>> 0;
}

export function nop(cpu: Interpreter, op: Op): void {
  cpu.rip += op.len;
}

// ---------------------------------------------------------------- specialized hot forms
// Values at or above 2^31 are not small integers in V8, so passing or returning them through a call
// that is not inlined allocates. These handlers keep such values in locals and write results and
// lazy-flag state straight into the CPU, with the same representation Interpreter.alu/inc/dec use.

function add32(cpu: Interpreter, d: number, a: number, b: number): void {
  const r = a + b;
  cpu.fOp = LZ_ADD;
  cpu.fSize = 32;
  cpu.fA = a;
  cpu.fB = b;
  cpu.fRes = r;
  cpu.lo[d] = r;
  cpu.hi[d] = 0;
}

/** SUB, or CMP when `write` is false */
function sub32(cpu: Interpreter, d: number, a: number, b: number, write: boolean): void {
  const r = a - b;
  cpu.fOp = LZ_SUB;
  cpu.fSize = 32;
  cpu.fA = a;
  cpu.fB = b;
  cpu.fRes = r;
  if (write) {
    cpu.lo[d] = r;
    cpu.hi[d] = 0;
  }
}

/** OR (1), AND (4), XOR (6) */
function logic32(cpu: Interpreter, sub: number, d: number, a: number, b: number): void {
  const r = (sub === 1 ? a | b : sub === 4 ? a & b : a ^ b) >>> 0;
  cpu.fOp = LZ_LOGIC;
  cpu.fSize = 32;
  cpu.fRes = r;
  cpu.fResHi = 0;
  cpu.lo[d] = r;
  cpu.hi[d] = 0;
}

function add64(cpu: Interpreter, d: number, a: number, ah: number, b: number, bh: number): void {
  const r = a + b;
  const rh = (ah >>> 0) + (bh >>> 0) + (r > 0xffffffff ? 1 : 0);
  cpu.fOp = LZ_ADD;
  cpu.fSize = 64;
  cpu.fA = a;
  cpu.fB = b;
  cpu.fRes = r;
  cpu.fAHi = ah;
  cpu.fBHi = bh;
  cpu.fResHi = rh;
  cpu.lo[d] = r;
  cpu.hi[d] = rh;
}

function sub64(
  cpu: Interpreter,
  d: number,
  a: number,
  ah: number,
  b: number,
  bh: number,
  write: boolean,
): void {
  const r = a - b;
  const rh = (ah >>> 0) - (bh >>> 0) - (r < 0 ? 1 : 0);
  cpu.fOp = LZ_SUB;
  cpu.fSize = 64;
  cpu.fA = a;
  cpu.fB = b;
  cpu.fRes = r;
  cpu.fAHi = ah;
  cpu.fBHi = bh;
  cpu.fResHi = rh;
  if (write) {
    cpu.lo[d] = r;
    cpu.hi[d] = rh;
  }
}

function logic64(
  cpu: Interpreter,
  sub: number,
  d: number,
  a: number,
  ah: number,
  b: number,
  bh: number,
): void {
  const r = (sub === 1 ? a | b : sub === 4 ? a & b : a ^ b) >>> 0;
  const rh = sub === 1 ? ah | bh : sub === 4 ? ah & bh : ah ^ bh;
  cpu.fOp = LZ_LOGIC;
  cpu.fSize = 64;
  cpu.fRes = r;
  cpu.fResHi = rh;
  cpu.lo[d] = r;
  cpu.hi[d] = rh;
}

export function addRR32(cpu: Interpreter, op: Op): void {
  add32(cpu, op.reg, cpu.lo[op.reg] >>> 0, cpu.lo[op.rm] >>> 0);
  cpu.rip += op.len;
}
export function subRR32(cpu: Interpreter, op: Op): void {
  sub32(cpu, op.reg, cpu.lo[op.reg] >>> 0, cpu.lo[op.rm] >>> 0, op.sub === 5);
  cpu.rip += op.len;
}
export function logicRR32(cpu: Interpreter, op: Op): void {
  logic32(cpu, op.sub, op.reg, cpu.lo[op.reg] >>> 0, cpu.lo[op.rm] >>> 0);
  cpu.rip += op.len;
}
export function addRI32(cpu: Interpreter, op: Op): void {
  add32(cpu, op.reg, cpu.lo[op.reg] >>> 0, op.imm);
  cpu.rip += op.len;
}
export function subRI32(cpu: Interpreter, op: Op): void {
  sub32(cpu, op.reg, cpu.lo[op.reg] >>> 0, op.imm, op.sub === 5);
  cpu.rip += op.len;
}
export function logicRI32(cpu: Interpreter, op: Op): void {
  logic32(cpu, op.sub, op.reg, cpu.lo[op.reg] >>> 0, op.imm);
  cpu.rip += op.len;
}
export function addRR64(cpu: Interpreter, op: Op): void {
  const s = op.rm;
  add64(cpu, op.reg, cpu.lo[op.reg] >>> 0, cpu.hi[op.reg], cpu.lo[s] >>> 0, cpu.hi[s]);
  cpu.rip += op.len;
}
export function subRR64(cpu: Interpreter, op: Op): void {
  const s = op.rm;
  sub64(cpu, op.reg, cpu.lo[op.reg] >>> 0, cpu.hi[op.reg], cpu.lo[s] >>> 0, cpu.hi[s], op.sub === 5);
  cpu.rip += op.len;
}
export function logicRR64(cpu: Interpreter, op: Op): void {
  const s = op.rm;
  logic64(cpu, op.sub, op.reg, cpu.lo[op.reg] >>> 0, cpu.hi[op.reg], cpu.lo[s] >>> 0, cpu.hi[s]);
  cpu.rip += op.len;
}
export function addRI64(cpu: Interpreter, op: Op): void {
  add64(cpu, op.reg, cpu.lo[op.reg] >>> 0, cpu.hi[op.reg], op.imm, op.immHi);
  cpu.rip += op.len;
}
export function subRI64(cpu: Interpreter, op: Op): void {
  sub64(cpu, op.reg, cpu.lo[op.reg] >>> 0, cpu.hi[op.reg], op.imm, op.immHi, op.sub === 5);
  cpu.rip += op.len;
}
export function logicRI64(cpu: Interpreter, op: Op): void {
  logic64(cpu, op.sub, op.reg, cpu.lo[op.reg] >>> 0, cpu.hi[op.reg], op.imm, op.immHi);
  cpu.rip += op.len;
}

const RR32: (OpFn | null)[] = [addRR32, logicRR32, null, null, logicRR32, subRR32, logicRR32, subRR32];
const RR64: (OpFn | null)[] = [addRR64, logicRR64, null, null, logicRR64, subRR64, logicRR64, subRR64];
const RI32: (OpFn | null)[] = [addRI32, logicRI32, null, null, logicRI32, subRI32, logicRI32, subRI32];
const RI64: (OpFn | null)[] = [addRI64, logicRI64, null, null, logicRI64, subRI64, logicRI64, subRI64];

/** the handler for an ALU op (ModRM /r numbering) on registers: specialized, or the general one */
export function aluHandler(sub: number, size: number, imm: boolean): OpFn {
  const t = size === 32 ? (imm ? RI32 : RR32) : size === 64 ? (imm ? RI64 : RR64) : null;
  return t?.[sub] ?? (imm ? aluRI : aluRR);
}

export function incDec32(cpu: Interpreter, op: Op): void {
  const r = op.reg;
  const a = cpu.lo[r] >>> 0;
  cpu.fCf = lazyCf(cpu);
  cpu.fOp = op.sub === 0 ? LZ_INC : LZ_DEC;
  cpu.fSize = 32;
  cpu.fA = a;
  cpu.fB = 1;
  const m = (op.sub === 0 ? a + 1 : a - 1) >>> 0;
  cpu.fRes = m;
  cpu.lo[r] = m;
  cpu.hi[r] = 0;
  cpu.rip += op.len;
}

export function incDec64(cpu: Interpreter, op: Op): void {
  const d = op.reg;
  const a = cpu.lo[d] >>> 0;
  const ah = cpu.hi[d];
  cpu.fCf = lazyCf(cpu);
  cpu.fSize = 64;
  cpu.fA = a;
  cpu.fB = 1;
  cpu.fAHi = ah;
  cpu.fBHi = 0;
  let rh: number;
  let r: number;
  if (op.sub === 0) {
    cpu.fOp = LZ_INC;
    r = a + 1;
    rh = r > 0xffffffff ? (ah + 1) | 0 : ah;
  } else {
    cpu.fOp = LZ_DEC;
    r = a - 1;
    rh = r < 0 ? (ah - 1) | 0 : ah;
  }
  cpu.fResHi = rh;
  cpu.fRes = r >>> 0;
  cpu.lo[d] = r;
  cpu.hi[d] = rh;
  cpu.rip += op.len;
}

/** 32/64-bit load with the TLB hit inline */
export function loadFast(cpu: Interpreter, op: Op): void {
  const lin = eaAcc(cpu, op, op.size >> 3, false);
  const o = lin & 0xfff;
  const i = (lin >>> 12) & 0xfff;
  const d = op.reg;
  if (cpu.tlbRTag[i] === lin - o && o < 0xff9) {
    const m = cpu.tlbRMem[i];
    const p = cpu.tlbROff[i] + o;
    cpu.lo[d] = m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24);
    cpu.hi[d] = op.size === 64 ? m[p + 4] | (m[p + 5] << 8) | (m[p + 6] << 16) | (m[p + 7] << 24) : 0;
  } else if (op.size === 64) {
    const v = cpu.rd64(lin);
    cpu.lo[d] = v;
    cpu.hi[d] = cpu.vh;
  } else {
    cpu.lo[d] = cpu.rd32(lin);
    cpu.hi[d] = 0;
  }
  cpu.rip += op.len;
}

/** 32/64-bit store with the TLB hit inline */
export function storeFast(cpu: Interpreter, op: Op): void {
  const lin = eaAcc(cpu, op, op.size >> 3, true);
  const o = lin & 0xfff;
  const i = (lin >>> 12) & 0xfff;
  const s = op.reg;
  const v = cpu.lo[s];
  if (cpu.tlbWTag[i] === lin - o && o < 0xff9) {
    const m = cpu.tlbWMem[i];
    const p = cpu.tlbWOff[i] + o;
    m[p] = v;
    m[p + 1] = v >> 8;
    m[p + 2] = v >> 16;
    m[p + 3] = v >> 24;
    if (op.size === 64) {
      const vh = cpu.hi[s];
      m[p + 4] = vh;
      m[p + 5] = vh >> 8;
      m[p + 6] = vh >> 16;
      m[p + 7] = vh >> 24;
    }
  } else if (op.size === 64) cpu.wr64(lin, v, cpu.hi[s]);
  else cpu.wr32(lin, v);
  cpu.rip += op.len;
}
