// Pre-decoded instructions for the decode cache (block-cache.ts). An Op carries its handler and
// its operands already decoded; every Op has the same shape, so the run loop's loads stay
// monomorphic and a later block compiler (the JIT) can turn a block's ops into JavaScript source
// one op kind at a time (`kind` names the form, the fields are its operands).
//
// Handlers follow the single-step executor's rules exactly: they raise faults before changing any
// architectural state, leave RIP at the instruction until it completes, and set RIP to the next
// instruction (or the branch target) last.

import { checkTarget, execute, imulTrunc } from "./exec.js";
import { divAcc, mulAcc, shiftOp } from "./exec-arith.js";
import { condition, FL_CF, LZ_ADD, LZ_DEC, LZ_INC, LZ_LOGIC, LZ_SUB, lazyCf, lazyZf } from "./flags.js";
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
  // stack and control transfers (the transfers end the block)
  /** PUSH r (size: the stack operand size) */
  Push = 24,
  /** POP r */
  Pop = 25,
  /** CALL rel (imm: the displacement; size: the operand size) */
  Call = 26,
  /** RET near (imm: bytes released after the return address) */
  Ret = 27,
  /** CALL (sub 2) / JMP (sub 4) through a register (rm) or memory (mem) */
  Indirect = 28,
  /** LEAVE */
  Leave = 29,
  // forms whose compiled code calls their handler (exact, with the state synced): no decoding
  /** NOT (sub 2) / NEG (sub 3) of a register (rm) or memory (mem) */
  Unary = 30,
  /** IMUL reg, r/m (sub 0) or reg, r/m, imm (sub 1) */
  Imul = 31,
  /** BT (sub 0) BTS (1) BTR (2) BTC (3) of register rm, bit offset imm (>= 0) or register reg */
  BitOp = 32,
  /** TEST m, imm */
  TestMI = 33,
  /** INC (sub 0) / DEC (sub 1) of memory */
  IncDecM = 34,
  /** shift or rotate (sub: ModRM /r) of register rm by imm (raw count), or by CL when imm < 0 */
  Shift = 35,
  /** MUL (sub 4) / IMUL (5) / DIV (6) / IDIV (7) of rAX (and rDX) by register rm or memory (mem) */
  MulDiv = 36,
  /** CBW/CWDE/CDQE (sub 0) and CWD/CDQ/CQO (sub 1) */
  Convert = 37,
  /** a 128-bit SSE move, logic op, PCMPEQB or PMOVMSKB (block-sse.ts; sub: SseOp) */
  Sse = 38,
  // forms of block-ops-kernel.ts (the Linux kernel's, which reached the single-step decoder):
  // compiled code calls their handler
  /** PAUSE (F3 90) */
  Pause = 39,
  /** RDTSC (sub 0) / RDTSCP (sub 1) */
  Rdtsc = 40,
  /** REP STOS (size: element bits; imm: the address size); ends the block */
  RepStos = 41,
  /** CMPXCHG r/m, reg (16/32/64; sub 1: LOCK) */
  Cmpxchg = 42,
  /** BSF (sub 0) BSR (1) TZCNT (2) LZCNT (3) reg, r/m */
  BitScan = 43,
  /** SHLD (sub 0) / SHRD (1) r/m, reg by imm (raw count), or by CL when imm < 0 */
  DoubleShift = 44,
  /** MOV r/m, Sreg (sub: the segment register) */
  MovSreg = 45,
  /** SWAPGS; ends the block */
  Swapgs = 46,
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
  /** the same for the 8-bit register operand in reg */
  regHi = false;
  /** the r/m operand is memory (Indirect, Unary, Imul) */
  mem = false;
}

/** highest 64-bit linear address from which no access (at most 512 bytes) reaches past 2^47 */
const CANON_NEAR_TOP = 0x800000000000 - 512;

/**
 * Linear address of the op's memory operand (same arithmetic as Interpreter.modrm/ea16). In 64-bit
 * mode the offset wraps to 64 bits and an FS/GS override adds the segment's base (the canonical
 * check is eaAcc's).
 */
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
      const lin = ((h + carry) | 0) * TWO32 + (l >>> 0);
      // ES/CS/SS/DS bases are 0 in 64-bit mode (block ops take no other overrides)
      return op.seg >= 4 ? cpu.effBase[op.seg] + lin : lin;
    }
    default: {
      const lin = cpu.rip + op.len + op.disp;
      return op.seg >= 4 ? cpu.effBase[op.seg] + lin : lin;
    }
  }
}

/**
 * Linear address of the op's memory operand for an access of `bytes` bytes, after the segment's
 * limit and type checks (Interpreter.segFastR/W: nothing to do for a flat segment; segCheck, with
 * its #GP(0)/#SS(0), past the bound) or, in 64-bit mode, the canonical check of the whole access
 * (#SS(0) for an SS-based operand) — as the single-step executor checks its memory operands.
 */
export function eaAcc(cpu: Interpreter, op: Op, bytes: number, write: boolean): number {
  const kind = op.eaKind;
  if (kind !== EaKind.A16 && kind !== EaKind.A32) {
    const lin = ea(cpu, op);
    return lin > CANON_NEAR_TOP || lin < -0x800000000000 ? cpu.canonRange(lin, bytes, op.seg) : lin;
  }
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

export function readReg(cpu: Interpreter, size: number, r: number): number {
  if (size === 32) return cpu.lo[r] >>> 0;
  if (size === 64) {
    cpu.vh = cpu.hi[r];
    return cpu.lo[r] >>> 0;
  }
  return cpu.lo[r] & 0xffff;
}

export function writeReg(cpu: Interpreter, size: number, r: number, v: number, vh: number): void {
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
  // with shared memory (cpu.smp) the word goes through rd32/rd64: one access, not bytes
  if (cpu.tlbRTag[i] === lin - o && o < 0xff9 && cpu.smp === null) {
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
  if (cpu.tlbWTag[i] === lin - o && o < 0xff9 && cpu.smp === null) {
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

// ---------------------------------------------------------------- 8-bit operands

/** 8-bit register r: bits 8-15 when `high` (AH CH DH BH) */
function get8(cpu: Interpreter, r: number, high: boolean): number {
  return high ? (cpu.lo[r] >> 8) & 0xff : cpu.lo[r] & 0xff;
}
function set8(cpu: Interpreter, r: number, high: boolean, v: number): void {
  if (high) cpu.lo[r] = (cpu.lo[r] & ~0xff00) | ((v & 0xff) << 8);
  else cpu.lo[r] = (cpu.lo[r] & ~0xff) | (v & 0xff);
}

/** reg8 = reg8 op rm8 (register forms, and the 80 /r register form with rm unused) */
export function aluRR8(cpu: Interpreter, op: Op): void {
  const b = op.kind === OpKind.AluRI ? op.imm : get8(cpu, op.rm, op.byteHi);
  const r = cpu.alu(op.sub, 8, get8(cpu, op.reg, op.regHi), 0, b, 0);
  if (op.sub !== 7) set8(cpu, op.reg, op.regHi, r);
  cpu.rip += op.len;
}
export function aluRM8(cpu: Interpreter, op: Op): void {
  const v = cpu.rd8(eaAcc(cpu, op, 1, false));
  const r = cpu.alu(op.sub, 8, get8(cpu, op.reg, op.regHi), 0, v, 0);
  if (op.sub !== 7) set8(cpu, op.reg, op.regHi, r);
  cpu.rip += op.len;
}
export function aluMR8(cpu: Interpreter, op: Op): void {
  const lin = eaAcc(cpu, op, 1, op.sub !== 7);
  if (op.sub !== 7) cpu.probeWrite(lin, 1);
  const a = cpu.rd8(lin);
  const r = cpu.alu(op.sub, 8, a, 0, get8(cpu, op.reg, op.regHi), 0);
  if (op.sub !== 7) cpu.wr8(lin, r);
  cpu.rip += op.len;
}
/** TEST r8, r8 / r8, imm8 / m8, r8 */
export function test8(cpu: Interpreter, op: Op): void {
  let a: number;
  if (op.kind === OpKind.TestMR) a = cpu.rd8(eaAcc(cpu, op, 1, false));
  else if (op.kind === OpKind.TestRI) a = op.imm;
  else a = get8(cpu, op.rm, op.byteHi);
  cpu.logic(8, a & get8(cpu, op.reg, op.regHi), 0);
  cpu.rip += op.len;
}
/** MOV r8, r8 / r8, imm8 / r8, m8 / m8, r8 */
export function mov8(cpu: Interpreter, op: Op): void {
  switch (op.kind) {
    case OpKind.MovRR:
      set8(cpu, op.reg, op.regHi, get8(cpu, op.rm, op.byteHi));
      break;
    case OpKind.MovRI:
      set8(cpu, op.reg, op.regHi, op.imm);
      break;
    case OpKind.Load:
      set8(cpu, op.reg, op.regHi, cpu.rd8(eaAcc(cpu, op, 1, false)));
      break;
    default:
      cpu.wr8(eaAcc(cpu, op, 1, true), get8(cpu, op.reg, op.regHi));
  }
  cpu.rip += op.len;
}

// ---------------------------------------------------------------- memory forms without a fast path

/** TEST r, imm (16/32/64) */
export function testRI(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const a = readReg(cpu, size, op.reg);
  cpu.logic(size, a & op.imm, size === 64 ? cpu.vh & op.immHi : 0);
  cpu.rip += op.len;
}
/** TEST m, r (16/32/64) */
export function testMR(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const a = cpu.rd(size, eaAcc(cpu, op, size >> 3, false));
  const ah = cpu.vh;
  const v = readReg(cpu, size, op.reg);
  cpu.logic(size, a & v, size === 64 ? ah & cpu.vh : 0);
  cpu.rip += op.len;
}
/** TEST m, imm */
export function testMI(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const a = cpu.rd(size, eaAcc(cpu, op, size >> 3, false));
  cpu.logic(size, a & op.imm, size === 64 ? cpu.vh & op.immHi : 0);
  cpu.rip += op.len;
}
/** MOV m, imm */
export function storeImm(cpu: Interpreter, op: Op): void {
  const size = op.size;
  cpu.wr(size, eaAcc(cpu, op, size >> 3, true), op.imm, op.immHi);
  cpu.rip += op.len;
}
/** INC/DEC m */
export function incDecM(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const lin = eaAcc(cpu, op, size >> 3, true);
  cpu.probeWrite(lin, size >> 3);
  const a = cpu.rd(size, lin);
  const r = op.sub === 0 ? cpu.inc(size, a, cpu.vh) : cpu.dec(size, a, cpu.vh);
  cpu.wr(size, lin, r, cpu.vh);
  cpu.rip += op.len;
}
/** MOVZX / MOVSX (source width in imm: 8, 16; MOVSXD: 32) from a register or memory */
export function movx(cpu: Interpreter, op: Op): void {
  const from = op.imm;
  let v: number;
  if (op.kind === OpKind.MovxM) v = cpu.rd(from, eaAcc(cpu, op, from >> 3, false));
  else if (from === 8) v = get8(cpu, op.rm, op.byteHi);
  else v = from === 16 ? cpu.lo[op.rm] & 0xffff : cpu.lo[op.rm] >>> 0;
  if (op.sub === 1) v = from === 8 ? (v << 24) >> 24 : from === 16 ? (v << 16) >> 16 : v | 0;
  writeReg(cpu, op.size, op.reg, v, v >> 31);
  cpu.rip += op.len;
}
/** NOT (sub 2) / NEG (sub 3) */
export function unary(cpu: Interpreter, op: Op): void {
  const size = op.size;
  let lin = 0;
  let a: number;
  let ah = 0;
  if (op.mem) {
    lin = eaAcc(cpu, op, size >> 3, true);
    cpu.probeWrite(lin, size >> 3);
    a = cpu.rd(size, lin);
    ah = cpu.vh;
  } else if (size === 8) a = get8(cpu, op.rm, op.byteHi);
  else {
    a = readReg(cpu, size, op.rm);
    ah = cpu.vh;
  }
  let r: number;
  let rh: number;
  if (op.sub === 2) {
    r = (~a & (size >= 32 ? 0xffffffff : (1 << size) - 1)) >>> 0;
    rh = ~ah;
  } else {
    r = cpu.alu(5, size, 0, 0, a, ah);
    rh = cpu.vh;
  }
  if (op.mem) cpu.wr(size, lin, r, rh);
  else if (size === 8) set8(cpu, op.rm, op.byteHi, r);
  else writeReg(cpu, size, op.rm, r, rh);
  cpu.rip += op.len;
}
/** MUL/IMUL/DIV/IDIV (F6/F7 /4-/7): the single-step executor's arithmetic, #DE included */
export function mulDiv(cpu: Interpreter, op: Op): void {
  const size = op.size;
  let v: number;
  let vh = 0;
  if (op.mem) {
    v = cpu.rd(size, eaAcc(cpu, op, size >> 3, false));
    vh = cpu.vh;
  } else if (size === 8) v = get8(cpu, op.rm, op.byteHi);
  else {
    v = readReg(cpu, size, op.rm);
    vh = cpu.vh;
  }
  if (op.sub < 6) mulAcc(cpu, size, v, vh, op.sub === 5);
  else divAcc(cpu, size, v, vh, op.sub === 7);
  cpu.rip += op.len;
}
/** CBW/CWDE/CDQE (sub 0: rAX from its lower half) and CWD/CDQ/CQO (sub 1: rDX the sign of rAX) */
export function convert(cpu: Interpreter, op: Op): void {
  const lo = cpu.lo;
  const hi = cpu.hi;
  const size = op.size;
  if (op.sub === 0) {
    if (size === 16) lo[0] = (lo[0] & ~0xffff) | (((lo[0] << 24) >> 24) & 0xffff);
    else if (size === 32) {
      lo[0] = (lo[0] << 16) >> 16;
      hi[0] = 0;
    } else hi[0] = lo[0] >> 31;
  } else if (size === 16) lo[2] = (lo[2] & ~0xffff) | ((lo[0] << 16) >> 31 ? 0xffff : 0);
  else if (size === 32) {
    lo[2] = lo[0] >> 31;
    hi[2] = 0;
  } else {
    const sign = hi[0] >> 31;
    lo[2] = sign;
    hi[2] = sign;
  }
  cpu.rip += op.len;
}
/** IMUL reg, r/m (sub 0) / reg, r/m, imm (sub 1) with the truncated result */
export function imul(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const a = op.mem ? cpu.rd(size, eaAcc(cpu, op, size >> 3, false)) : readReg(cpu, size, op.rm);
  const ah = cpu.vh;
  if (op.sub === 1) imulTrunc(cpu, size, op.reg, a, ah, op.imm, op.immHi);
  else {
    const b = readReg(cpu, size, op.reg);
    imulTrunc(cpu, size, op.reg, b, cpu.vh, a, ah);
  }
  cpu.rip += op.len;
}
/** BT/BTS/BTR/BTC on a register, bit offset imm (already masked) or register reg */
export function bitOp(cpu: Interpreter, op: Op): void {
  const size = op.size;
  let off = op.imm;
  if (off < 0) {
    const raw = readReg(cpu, size, op.reg);
    off = (size === 16 ? (raw << 16) >> 16 : raw | 0) & (size - 1);
  }
  let v = readReg(cpu, size, op.rm);
  let vh = size === 64 ? cpu.vh : 0;
  const bit = off >= 32 ? (vh >>> (off - 32)) & 1 : (v >>> off) & 1;
  cpu.patchFlags(FL_CF, bit);
  if (op.sub !== 0) {
    const set = op.sub === 1 ? 1 : op.sub === 2 ? 0 : bit ^ 1;
    if (off >= 32) vh = set ? vh | (1 << (off - 32)) : vh & ~(1 << (off - 32));
    else v = (set ? v | (1 << off) : v & ~(1 << off)) >>> 0;
    writeReg(cpu, size, op.rm, v, vh);
  }
  cpu.rip += op.len;
}

// ---------------------------------------------------------------- stack and control transfers
// Through the interpreter's own push/pop/stack helpers: the stack size (SS.B), SS limit checks
// outside 64-bit mode and the canonical #SS(0) in it are theirs, as in the single-step executor.

export function push(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const v = readReg(cpu, size, op.reg);
  cpu.push(size, v, size === 64 ? cpu.vh : 0);
  cpu.rip += op.len;
}
export function pop(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const v = cpu.pop(size);
  writeReg(cpu, size, op.reg, v, cpu.vh);
  cpu.rip += op.len;
}
export function call(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const ret = cpu.rip + op.len;
  const t = ret + op.imm;
  checkTarget(cpu, t);
  cpu.push(size, ret >>> 0, Math.floor(ret / TWO32) | 0);
  cpu.rip = cpu.mode64 ? t : size === 16 ? t & 0xffff : t >>> 0;
}
export function ret(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const sp = cpu.sp();
  cpu.stackCheck(sp, size >> 3, false);
  const v = cpu.rd(size, cpu.stackLin(sp, size >> 3));
  const target = size === 64 ? cpu.vh * TWO32 + v : v;
  checkTarget(cpu, target);
  cpu.setSp(cpu.spAdd(sp, (size >> 3) + op.imm));
  cpu.rip = target;
}
/** CALL (sub 2) / JMP (sub 4) to the address in a register or memory */
export function indirect(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const v = op.mem ? cpu.rd(size, eaAcc(cpu, op, size >> 3, false)) : readReg(cpu, size, op.rm);
  const target = size === 64 ? cpu.vh * TWO32 + v : v;
  checkTarget(cpu, target);
  if (op.sub === 2) {
    const r = cpu.rip + op.len;
    cpu.push(size, r >>> 0, Math.floor(r / TWO32) | 0);
  }
  cpu.rip = target;
}
export function leave(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const bp = cpu.mode64
    ? cpu.hi[5] * TWO32 + (cpu.lo[5] >>> 0)
    : cpu.ssB
      ? cpu.lo[5] >>> 0
      : cpu.lo[5] & 0xffff;
  cpu.stackCheck(bp, size >> 3, false);
  const v = cpu.rd(size, cpu.stackLin(bp, size >> 3));
  const vh = cpu.vh;
  cpu.setSp(cpu.spAdd(bp, size >> 3));
  writeReg(cpu, size, 5, v, vh);
  cpu.rip += op.len;
}

/** the op has a memory operand (its address from ea/eaAcc) */
export function hasMem(op: Op): boolean {
  switch (op.kind) {
    case OpKind.AluRM:
    case OpKind.AluMR:
    case OpKind.AluMI:
    case OpKind.Load:
    case OpKind.Store:
    case OpKind.Lea:
    case OpKind.MovxM:
    case OpKind.StoreImm:
    case OpKind.TestMR:
    case OpKind.TestMI:
    case OpKind.IncDecM:
      return true;
    case OpKind.Indirect:
    case OpKind.Unary:
    case OpKind.Imul:
    case OpKind.MulDiv:
    case OpKind.Sse:
    case OpKind.Cmpxchg:
    case OpKind.BitScan:
    case OpKind.DoubleShift:
    case OpKind.MovSreg:
      return op.mem;
    default:
      return false;
  }
}

/** CMOVcc r, r */
export function cmov(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const v = readReg(cpu, size, op.rm);
  if (condition(cpu, op.sub)) writeReg(cpu, size, op.reg, v, cpu.vh);
  else if (size === 32) cpu.hi[op.reg] = 0;
  cpu.rip += op.len;
}
/** SETcc r8 */
export function setcc(cpu: Interpreter, op: Op): void {
  set8(cpu, op.rm, op.byteHi, condition(cpu, op.sub) ? 1 : 0);
  cpu.rip += op.len;
}
/** SHL/SHR/SAR r, count (ShiftRI: the count already masked, not 0) */
export function shiftRI(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const a = readReg(cpu, size, op.reg);
  const r = shiftOp(cpu, op.sub, size, a, cpu.vh, op.imm) ?? 0;
  writeReg(cpu, size, op.reg, r, cpu.vh);
  cpu.rip += op.len;
}
/** any shift or rotate of a register (C0 C1 D0-D3), as the single-step executor runs them */
export function shiftR(cpu: Interpreter, op: Op): void {
  const size = op.size;
  const a = size === 8 ? get8(cpu, op.rm, op.byteHi) : readReg(cpu, size, op.rm);
  const r = shiftOp(cpu, op.sub, size, a, cpu.vh, op.imm >= 0 ? op.imm : cpu.lo[1] & 0xff);
  if (r !== undefined) {
    if (size === 8) set8(cpu, op.rm, op.byteHi, r);
    else writeReg(cpu, size, op.rm, r, cpu.vh);
  } else if (size === 32) cpu.hi[op.rm] = 0; // still a 32-bit register write
  cpu.rip += op.len;
}
