// x87 arithmetic and comparisons on the register stack: stack faults first, NaN operands next
// (SDM Vol. 1 Table 4-7), then invalid operations (the QNaN indefinite when IE is masked), division
// by zero, and the result. Comparisons set C3/C2/C0 (FCOM, FUCOM, FTST, FICOM) or ZF/PF/CF (FCOMI,
// FUCOMI) and report IE for any NaN (ordered forms) or for an SNaN only (unordered forms).

import { FL_CF, FL_PF, FL_ZF } from "./flags.js";
import type { Interpreter } from "./interpreter.js";
import { rounding } from "./x87-inexact.js";
import {
  C0,
  C1,
  C2,
  C3,
  empty,
  type F80,
  IE,
  indefinite,
  isNaNF80,
  isSNaN,
  nanResult,
  PE,
  physF80,
  physOf,
  setPhys,
  setPhysF80,
  signal,
  st,
  toF80,
  underflow,
  ZE,
} from "./x87-regs.js";

/** an operand: a value, and its exact bits where it may be a NaN */
export interface Operand {
  v: number;
  bits: F80 | null;
}

export function regOperand(cpu: Interpreter, i: number): Operand {
  const v = st(cpu, i);
  return { v, bits: Number.isNaN(v) ? physF80(cpu, physOf(cpu, i)) : null };
}

export function f80Operand(x: F80, v: number): Operand {
  return { v, bits: isNaNF80(x) ? x : null };
}

export function numOperand(v: number): Operand {
  return { v, bits: null };
}

/** ops by the D8 /r numbering: add, mul, (com, comp), sub, subr, div, divr */
function arith(op: number, a: number, b: number): number {
  switch (op) {
    case 0:
      return a + b;
    case 1:
      return a * b;
    case 4:
      return a - b;
    case 5:
      return b - a;
    case 6:
      return a / b;
    default:
      return b / a;
  }
}

/** FCW.PC single (00): results are rounded to 24 bits; double and extended both keep the double */
function precision(cpu: Interpreter, r: number): number {
  return (cpu.fpuCw & 0x300) === 0 ? Math.fround(r) : r;
}

/**
 * Writes the result of `op` on a (the destination's old value side) and b to ST(dst). Returns
 * false when an unmasked exception left the destination alone (the instruction must not pop).
 */
export function binary(cpu: Interpreter, op: number, dst: number, a: Operand, b: Operand): boolean {
  const r = physOf(cpu, dst);
  cpu.fpuSw &= ~C1;
  if (Number.isNaN(a.v) || Number.isNaN(b.v)) {
    const n = nanResult(cpu, a.bits ?? toF80(a.v), b.bits ?? toF80(b.v));
    if (n === null) return false;
    setPhysF80(cpu, r, n);
    return true;
  }
  const divisor = op === 6 ? b.v : op === 7 ? a.v : 1;
  const dividend = op === 6 ? a.v : b.v;
  const res = precision(cpu, arith(op, a.v, b.v));
  if (Number.isNaN(res)) {
    if (signal(cpu, IE)) return false;
    indefinite(cpu, r);
    return true;
  }
  if (divisor === 0 && dividend !== 0 && Number.isFinite(dividend) && signal(cpu, ZE)) return false;
  // an exact zero sum of operands that are not both +0 is -0 when rounding down (IEEE 754 6.3)
  const zero = res === 0 && op !== 1 && op < 6 && (cpu.fpuCw & 0xc00) === 0x400;
  setPhys(cpu, r, zero ? zeroSum(op, a.v, b.v) : res);
  inexact(cpu, rounding(op, a.v, b.v, res));
  return true;
}

function zeroSum(op: number, a: number, b: number): number {
  const [x, y] = op === 0 ? [a, b] : op === 4 ? [a, -b] : [b, -a];
  return Object.is(x, 0) && Object.is(y, 0) ? 0 : -0;
}

/** PE (delivered with the result, masked or not) and C1 for a rounded result */
export function inexact(cpu: Interpreter, dir: number): void {
  if (dir === 0) return;
  signal(cpu, PE);
  if (dir > 0) cpu.fpuSw |= C1;
}

/** a one-operand operation on ST(0); f's NaN for a non-NaN input is an invalid operation */
export function unary(cpu: Interpreter, f: (x: number) => number): boolean {
  if (empty(cpu, 0)) {
    if (!underflow(cpu)) indefinite(cpu, physOf(cpu, 0));
    return false;
  }
  cpu.fpuSw &= ~C1;
  const a = regOperand(cpu, 0);
  const r = physOf(cpu, 0);
  if (a.bits !== null) {
    const n = nanResult(cpu, a.bits, null);
    if (n !== null) setPhysF80(cpu, r, n);
    return false;
  }
  const res = f(a.v);
  if (Number.isNaN(res)) {
    if (!signal(cpu, IE)) indefinite(cpu, r);
    return false;
  }
  setPhys(cpu, r, res);
  return true;
}

/** 0 greater, 1 less, 2 equal, 3 unordered; 4 | order when IE was raised unmasked (NaNs: IE for
 * any in the ordered forms, for an SNaN in the unordered ones) */
function order(cpu: Interpreter, a: Operand, b: Operand, unordered: boolean): number {
  if (Number.isNaN(a.v) || Number.isNaN(b.v)) {
    const snan = (a.bits !== null && isSNaN(a.bits)) || (b.bits !== null && isSNaN(b.bits));
    return (snan || !unordered) && signal(cpu, IE) ? 7 : 3;
  }
  return a.v < b.v ? 1 : a.v === b.v ? 2 : 0;
}

const CC_OF = [0, C0, C3, C3 | C2 | C0];
const FLAGS_OF = [0, FL_CF, FL_ZF, FL_ZF | FL_PF | FL_CF];

// The SDM's FCOM/FCOMI pseudocode sets the unordered result whether IE is masked or not, and CPUs
// do; an unmasked IE keeps the P forms from popping (and ES brings #MF at the next instruction).
// Each returns false when that happened.

/** FCOM/FUCOM/FTST/FICOM: C3 C2 C0 from the order, C1 = 0 */
export function compareCc(cpu: Interpreter, a: Operand, b: Operand, unordered: boolean): boolean {
  cpu.fpuSw &= ~C1;
  const o = order(cpu, a, b, unordered);
  cpu.fpuSw = (cpu.fpuSw & ~(C0 | C2 | C3)) | CC_OF[o & 3];
  return o < 4;
}

/** FCOMI/FUCOMI: ZF PF CF from the order; OF, SF, AF cleared; C1 as it was (the host CPU leaves it) */
export function compareFlags(cpu: Interpreter, a: Operand, b: Operand, unordered: boolean): boolean {
  const o = order(cpu, a, b, unordered);
  cpu.patchFlags(0x8d5, FLAGS_OF[o & 3]);
  return o < 4;
}

/** a comparison whose register operand is empty: IE|SF, and the result "unordered" */
export function compareUnderflow(cpu: Interpreter, flags: boolean): boolean {
  const unmasked = underflow(cpu);
  if (flags) cpu.patchFlags(0x8d5, FL_ZF | FL_PF | FL_CF);
  else cpu.fpuSw |= C0 | C2 | C3;
  return !unmasked;
}

/** FXAM: C1 the sign; C3 C2 C0 the class (SDM FXAM table) */
export function fxam(cpu: Interpreter): void {
  const x = physF80(cpu, physOf(cpu, 0));
  const exp = x[2] & 0x7fff;
  const jFrac = (x[1] & 0x7fffffff) !== 0 || x[0] !== 0;
  let cc: number;
  if (empty(cpu, 0)) cc = C3 | C0;
  else if (exp !== 0 && (x[1] & 0x80000000) === 0)
    cc = 0; // unsupported
  else if (exp === 0x7fff) cc = jFrac ? C0 : C2 | C0;
  else if (exp === 0) cc = (x[0] | x[1]) === 0 ? C3 : C3 | C2;
  else cc = C2;
  cpu.fpuSw = (cpu.fpuSw & ~(C0 | C1 | C2 | C3)) | cc | ((x[2] & 0x8000) !== 0 ? C1 : 0);
}
