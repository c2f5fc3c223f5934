// x87 transcendental and scaling instructions: FPREM/FPREM1 (exact, with the quotient's low bits in
// C0/C3/C1 and C2 for a partial remainder), FSCALE, FXTRACT, FSIN/FCOS/FSINCOS/FPTAN (C2 = 1 and
// nothing changed for |x| >= 2^63), FPATAN, F2XM1, FYL2X, FYL2XP1.
//
// The trigonometric and logarithmic results come from the host's libm in double precision: they
// may differ from a CPU's in the last bits, and for large arguments more (the CPU reduces by a
// 66-bit approximation of pi, this reduction is exact). FPREM/FPREM1, FSCALE and FXTRACT are exact
// for the doubles the registers hold.

import type { Interpreter } from "./interpreter.js";
import { inexact, type Operand, regOperand, unary } from "./x87-arith.js";
import { parts, rounding } from "./x87-inexact.js";
import {
  C0,
  C1,
  C2,
  C3,
  empty,
  type F80,
  IE,
  INDEFINITE,
  indefinite,
  nanResult,
  physOf,
  push,
  pushSlot,
  SF,
  setPhys,
  setPhysF80,
  signal,
  toF80,
  underflow,
  ZE,
} from "./x87-regs.js";

/** floor(log2 |v|) for a finite non-zero v */
function ilogb(v: number): number {
  const [m, e] = parts(v);
  return e + m.toString(2).length - 1;
}

/** v * 2^n without overflowing or underflowing on the way */
export function scale(v: number, n: number): number {
  let x = v;
  let k = Math.max(-4000, Math.min(4000, n));
  while (k > 1000) {
    x *= 2 ** 1000;
    k -= 1000;
  }
  while (k < -1000) {
    x *= 2 ** -1000;
    k += 1000;
  }
  return x * 2 ** k;
}

/** both ST(0) and ST(1) present; masked underflow writes the indefinite to ST(dst) */
function twoPresent(cpu: Interpreter, dst: number): boolean {
  if (!empty(cpu, 0) && !empty(cpu, 1)) return true;
  if (!underflow(cpu)) indefinite(cpu, physOf(cpu, dst));
  return false;
}

/**
 * ST(dst) := f(ST(0), ST(1)) with NaN operands propagated and f's NaN as an invalid operation;
 * `zero` says when the operands make a division by zero. False when an unmasked exception stopped it.
 */
function twoOp(
  cpu: Interpreter,
  dst: number,
  f: (x: number, y: number) => number,
  zero?: (x: number, y: number) => boolean,
): boolean {
  if (!twoPresent(cpu, dst)) return (cpu.fpuCw & IE) !== 0;
  cpu.fpuSw &= ~C1;
  const a = regOperand(cpu, 0);
  const b = regOperand(cpu, 1);
  const r = physOf(cpu, dst);
  if (a.bits !== null || b.bits !== null) {
    const n = nanResult(cpu, a.bits ?? toF80(a.v), b.bits ?? toF80(b.v));
    if (n === null) return false;
    setPhysF80(cpu, r, n);
    return true;
  }
  const res = f(a.v, b.v);
  if (Number.isNaN(res)) {
    if (signal(cpu, IE)) return false;
    indefinite(cpu, r);
    return true;
  }
  if (zero?.(a.v, b.v) && signal(cpu, ZE)) return false;
  setPhys(cpu, r, res);
  return true;
}

/** FYL2X (D9 F1), FYL2XP1 (D9 F9), FPATAN (D9 F3): ST(1) := f(ST(0), ST(1)), then pop */
export function fyl2x(cpu: Interpreter, plus1: boolean): boolean {
  if (plus1) return twoOp(cpu, 1, (x, y) => y * (Math.log1p(x) * Math.LOG2E));
  return twoOp(
    cpu,
    1,
    (x, y) => y * Math.log2(x),
    (x, y) => x === 0 && y !== 0 && Number.isFinite(y),
  );
}
export function fpatan(cpu: Interpreter): boolean {
  return twoOp(cpu, 1, (x, y) => Math.atan2(y, x));
}

/** FSCALE (D9 FD): ST(0) := ST(0) * 2^trunc(ST(1)) */
export function fscale(cpu: Interpreter): void {
  twoOp(cpu, 0, (x, y) => {
    const n = Math.trunc(y);
    if (!Number.isFinite(n)) return x * (n > 0 ? Infinity : 0);
    return scale(x, n);
  });
}

/** F2XM1 (D9 F0): ST(0) := 2^ST(0) - 1 (the SDM defines it for -1 <= x <= 1) */
export function f2xm1(cpu: Interpreter): void {
  unary(cpu, (x) => Math.expm1(x * Math.LN2));
}

/** FSIN, FCOS: C2 = 1 and ST(0) unchanged for |x| >= 2^63 */
export function trig(cpu: Interpreter, f: (x: number) => number): void {
  if (outOfRange(cpu)) return;
  unary(cpu, f);
}

function outOfRange(cpu: Interpreter): boolean {
  cpu.fpuSw &= ~C2;
  if (empty(cpu, 0)) return false;
  const a = regOperand(cpu, 0);
  if (Number.isFinite(a.v) && Math.abs(a.v) >= 2 ** 63) {
    cpu.fpuSw = (cpu.fpuSw | C2) & ~C1;
    return true;
  }
  return false;
}

/**
 * What FPTAN, FSINCOS and FXTRACT check before they replace ST(0) and push a second result: an
 * empty ST(0) (underflow) or a full stack (overflow) gives both results the indefinite when IE is
 * masked, a NaN in ST(0) gives both that NaN. Returns ST(0) when the instruction goes on.
 */
function twoResultOperand(cpu: Interpreter): Operand | undefined {
  if (empty(cpu, 0)) {
    // masked: both results are the indefinite, pushed without a check for overflow
    if (!underflow(cpu)) {
      indefinite(cpu, physOf(cpu, 0));
      indefinite(cpu, pushSlot(cpu));
    }
    return undefined;
  }
  if (!empty(cpu, 7)) {
    cpu.fpuSw |= C1;
    if (!signal(cpu, IE | SF)) {
      indefinite(cpu, physOf(cpu, 0));
      indefinite(cpu, pushSlot(cpu));
    }
    return undefined;
  }
  cpu.fpuSw &= ~C1;
  const a = regOperand(cpu, 0);
  if (a.bits === null) return a;
  bothResults(cpu, nanResult(cpu, a.bits, null));
  return undefined;
}

/** ST(0) and the pushed slot both := n (nothing when the exception was unmasked: null) */
function bothResults(cpu: Interpreter, n: F80 | null): void {
  if (n === null) return;
  setPhysF80(cpu, physOf(cpu, 0), n);
  setPhysF80(cpu, pushSlot(cpu), n);
}

/** FPTAN (ST(0) := tan, push 1.0) and FSINCOS (ST(0) := sin, push cos) */
export function trigPush(cpu: Interpreter, sincos: boolean): void {
  if (outOfRange(cpu)) return;
  const a = twoResultOperand(cpu);
  if (a === undefined) return;
  if (!Number.isFinite(a.v)) {
    // an infinity is invalid: both results are the indefinite
    bothResults(cpu, signal(cpu, IE) ? null : INDEFINITE);
    return;
  }
  const x = a.v;
  setPhys(cpu, physOf(cpu, 0), sincos ? Math.sin(x) : Math.tan(x));
  push(cpu, sincos ? Math.cos(x) : 1);
}

/** FXTRACT (D9 F4): ST(0) := exponent, then push the significand (ZE for a zero: exponent -inf) */
export function fxtract(cpu: Interpreter): void {
  const a = twoResultOperand(cpu);
  if (a === undefined) return;
  const x = a.v;
  if (x === 0) {
    if (signal(cpu, ZE)) return;
    setPhys(cpu, physOf(cpu, 0), -Infinity);
    push(cpu, x);
    return;
  }
  if (!Number.isFinite(x)) {
    setPhys(cpu, physOf(cpu, 0), Infinity);
    push(cpu, x);
    return;
  }
  const e = ilogb(x);
  setPhys(cpu, physOf(cpu, 0), e);
  push(cpu, scale(x, -e));
}

/**
 * FPREM (D9 F8, quotient truncated) and FPREM1 (D9 F5, quotient rounded to nearest even): exact
 * remainders with BigInt. An exponent difference of 64 or more gives a partial remainder (C2 = 1,
 * the exponent reduced by at least 32 per step, SDM FPREM pseudocode with N = 32); otherwise C2 = 0
 * and the quotient's bits 2, 1, 0 go to C0, C3, C1.
 */
export function fprem(cpu: Interpreter, ieee: boolean): void {
  // C2 = 0 (the reduction is not partial) and C1 = 0 also when a fault or a NaN ends it
  cpu.fpuSw &= ~(C1 | C2);
  if (!twoPresent(cpu, 0)) return;
  const a = regOperand(cpu, 0);
  const b = regOperand(cpu, 1);
  const r0 = physOf(cpu, 0);
  if (a.bits !== null || b.bits !== null) {
    const n = nanResult(cpu, a.bits ?? toF80(a.v), b.bits ?? toF80(b.v));
    if (n !== null) setPhysF80(cpu, r0, n);
    return;
  }
  const x = a.v;
  const y = b.v;
  if (!Number.isFinite(x) || y === 0) {
    if (!signal(cpu, IE)) indefinite(cpu, r0);
    return;
  }
  cpu.fpuSw &= ~(C0 | C1 | C2 | C3);
  if (x === 0 || !Number.isFinite(y)) return;
  const d = ilogb(x) - ilogb(y);
  const [ma, ea] = parts(x);
  const [mb, eb0] = parts(y);
  const partial = d >= 64;
  const eb = partial ? eb0 + (d - 32) : eb0;
  const e = Math.min(ea, eb);
  const big = ma << BigInt(ea - e);
  const div = mb << BigInt(eb - e);
  let q = big / div;
  let rem = big - q * div;
  if (ieee && !partial && (2n * rem > div || (2n * rem === div && (q & 1n) === 1n))) {
    q += 1n;
    rem -= div;
  }
  const mag = scale(Number(rem), e);
  const res = mag === 0 ? (x < 0 ? -0 : 0) : x < 0 ? -mag : mag;
  setPhys(cpu, r0, res);
  if (partial) {
    cpu.fpuSw |= C2;
    return;
  }
  const qi = Number(q & 7n);
  cpu.fpuSw |= (qi & 4 ? C0 : 0) | (qi & 2 ? C3 : 0) | (qi & 1 ? C1 : 0);
}

/** the ST(0)-only arithmetic of D9: FSQRT and FRNDINT (PE when FRNDINT changes the value) */
export function fsqrt(cpu: Interpreter): void {
  let x = 0;
  let res = 0;
  const done = unary(cpu, (v) => {
    x = v;
    res = (cpu.fpuCw & 0x300) === 0 ? Math.fround(Math.sqrt(v)) : Math.sqrt(v);
    return res;
  });
  if (done) inexact(cpu, rounding(-1, x, 0, res));
}
