// x87 memory formats: single/double/extended reals, 16/32/64-bit integers and 18-digit packed BCD,
// each through the interpreter's rd/wr paths with the whole operand checked before it is written
// (so an MMIO operand is accessed once). Conversions follow SDM Vol. 1 4.2, 4.7, 4.8.3 and 8.2:
// SNaN sources of m32/m64 raise IE and load quieted, denormal sources raise DE; stores round by
// FCW.RC and report OE/UE/PE, or IE with the indefinite of the format when the value has none.

import { Access } from "./hooks.js";
import type { Interpreter } from "./interpreter.js";
import {
  bitsToF80,
  C1,
  DE,
  type F80,
  IE,
  INDEFINITE,
  isNaNF80,
  isSNaN,
  OE,
  PE,
  quiet,
  signal,
  TWO32,
  toF80,
  UE,
} from "./x87-regs.js";

const f32 = new Float32Array(1);
const f32u = new Uint32Array(f32.buffer);
const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer);

/** the memory operand [ea, ea+bytes) is checked (segment, paging) for the access before any of it */
export function checkOperand(cpu: Interpreter, bytes: number, write: boolean): number {
  cpu.eaAccess(bytes, write);
  const ea = cpu.ea;
  const access = write ? Access.Write : Access.Read;
  cpu.probe(ea, access);
  // the second page from its first byte, which is what CR2 names when it faults
  const first = 0x1000 - (ea & 0xfff);
  if (first < bytes) cpu.probe(cpu.addLin(ea, first), access);
  return ea;
}

export function loadInt(cpu: Interpreter, size: 16 | 32 | 64): number {
  cpu.eaAccess(size >> 3, false);
  const v = cpu.rd(size, cpu.ea);
  if (size === 16) return (v << 16) >> 16;
  if (size === 32) return v | 0;
  // exact below 2^53; larger magnitudes round to the nearest double
  return cpu.vh * TWO32 + (v >>> 0);
}

/** whether the last readReal operand was a denormal (its DE comes after stack faults and NaNs) */
export let readDenormal = false;

/** A real operand m32/m64 as 80 bits, exactly (an SNaN stays signalling: its IE is the user's). */
export function readReal(cpu: Interpreter, size: 32 | 64): F80 {
  cpu.eaAccess(size >> 3, false);
  if (size === 32) {
    // from the bits: a Float32Array read would quiet an SNaN on the way to a double
    const b = cpu.rd32(cpu.ea) >>> 0;
    const exp = (b >>> 23) & 0xff;
    const frac = b & 0x7fffff;
    readDenormal = exp === 0 && frac !== 0;
    if (exp === 0xff) return [0, (0x80000000 | (frac << 8)) >>> 0, (b >>> 31 ? 0x8000 : 0) | 0x7fff];
    f32u[0] = b;
    return toF80(f32[0]);
  }
  const lo = cpu.rd64(cpu.ea) >>> 0;
  const hi = cpu.vh >>> 0;
  readDenormal = (hi & 0x7ff00000) === 0 && ((hi & 0xfffff) | lo) !== 0;
  return bitsToF80(lo, hi);
}

/**
 * FLD m32/m64's conversion: an SNaN raises IE and loads quieted (null: IE unmasked, nothing is
 * loaded); a denormal raises DE and loads all the same (the register holds it as a normal).
 */
export function loadConverted(cpu: Interpreter, x: F80, denormal: boolean): F80 | null {
  if (isSNaN(x)) return signal(cpu, IE) ? null : quiet(x);
  if (denormal) signal(cpu, DE);
  return x;
}

/** rounds v to single precision by FCW.RC: the nearest float, stepped one ulp toward v if RC says so */
function toSingle(v: number, rc: number): number {
  f32[0] = v;
  const f = f32[0];
  if (f === v || rc === 0 || Number.isNaN(v)) return f;
  const above = f > v;
  const wrong = rc === 1 ? above : rc === 2 ? !above : Math.abs(f) > Math.abs(v);
  if (!wrong) return f;
  // one step toward v: down in magnitude when f lies beyond v, up otherwise (also from a zero)
  const b = f32u[0];
  f32u[0] = Math.abs(f) > Math.abs(v) ? b - 1 : f === 0 ? (v < 0 ? 0x80000001 : 1) : b + 1;
  return f32[0];
}

/**
 * FST/FSTP m32/m64 of value v (its 80 bits in `bits` when it is a NaN). Returns false when an
 * unmasked exception left memory alone.
 */
export function storeReal(cpu: Interpreter, size: 32 | 64, v: number, bits: F80 | null): boolean {
  // checked for writing before any flag changes: a fault then leaves FSW as it was
  checkOperand(cpu, size >> 3, true);
  cpu.fpuSw &= ~C1;
  if (bits !== null && isNaNF80(bits)) {
    if (isSNaN(bits) && signal(cpu, IE)) return false;
    const [lo, hi, se] = quiet(bits);
    const sign = se & 0x8000 ? 0x80000000 : 0;
    if (size === 32) cpu.wr32(cpu.ea, sign | 0x7f800000 | ((hi >>> 8) & 0x7fffff) | 0);
    else cpu.wr64(cpu.ea, (hi << 21) | (lo >>> 11) | 0, sign | 0x7ff00000 | ((hi >>> 11) & 0xfffff) | 0);
    return true;
  }
  if (size === 64) {
    // the register already holds a double: nothing to round
    f64[0] = v;
    cpu.wr64(cpu.ea, f64u[0] | 0, f64u[1] | 0);
    return true;
  }
  const f = toSingle(v, (cpu.fpuCw >> 10) & 3);
  // overflow: the result rounded with an unbounded exponent exceeds the largest float
  if (Number.isFinite(v) && (!Number.isFinite(f) || Math.abs(v) >= 2 ** 128) && signal(cpu, OE)) return false;
  // tininess is detected before rounding; unmasked, underflow is reported even for exact results
  const tiny = v !== 0 && Math.abs(v) < 2 ** -126;
  if (tiny && (cpu.fpuCw & UE) === 0) {
    signal(cpu, UE);
    return false;
  }
  if (f !== v) {
    if (tiny) signal(cpu, UE);
    // an unmasked precision exception still delivers the rounded result
    signal(cpu, PE);
    if (Math.abs(f) > Math.abs(v)) cpu.fpuSw |= C1;
  }
  f32[0] = f;
  cpu.wr32(cpu.ea, f32u[0] | 0);
  return true;
}

/** the QNaN indefinite in a memory format (for a masked stack underflow) */
export function storeIndefiniteReal(cpu: Interpreter, size: 32 | 64 | 80): void {
  if (size === 80) storeF80(cpu, INDEFINITE);
  else {
    // checked for writing before any flag changes: a fault then leaves FSW as it was
    checkOperand(cpu, size >> 3, true);
    if (size === 32) cpu.wr32(cpu.ea, 0xffc00000 | 0);
    else cpu.wr64(cpu.ea, 0, 0xfff80000 | 0);
  }
}

/** FLD m80: any encoding loads as it is (no IE, no DE: SDM FLD) */
export function loadF80(cpu: Interpreter): F80 {
  const ea = checkOperand(cpu, 10, false);
  const lo = cpu.rd64(ea) >>> 0;
  const hi = cpu.vh >>> 0;
  const se = cpu.rd16(cpu.addLin(ea, 8));
  return [lo, hi, se];
}

export function storeF80(cpu: Interpreter, x: F80): void {
  const ea = checkOperand(cpu, 10, true);
  cpu.fpuSw &= ~C1;
  cpu.wr64(ea, x[0] | 0, x[1] | 0);
  cpu.wr16(cpu.addLin(ea, 8), x[2]);
}

/**
 * FIST/FISTP/FISTTP: v rounded by FCW.RC (or truncated), IE and the integer indefinite
 * (100..0B) when it does not fit or is a NaN/infinity, PE when inexact, C1 when rounded up.
 * Returns false when an unmasked exception left memory alone.
 */
export function storeInt(cpu: Interpreter, size: 16 | 32 | 64, v: number, rc: number): boolean {
  // checked for writing before any flag changes: a fault then leaves FSW as it was
  checkOperand(cpu, size >> 3, true);
  cpu.fpuSw &= ~C1;
  const r = roundRc(v, rc);
  const lim = 2 ** (size - 1);
  let lo: number;
  let hi = 0;
  if (!(r >= -lim && r < lim)) {
    if (signal(cpu, IE)) return false;
    lo = size === 16 ? 0x8000 : size === 32 ? 0x80000000 : 0;
    hi = 0x80000000;
  } else {
    if (r !== v) {
      signal(cpu, PE);
      if (Math.abs(r) > Math.abs(v)) cpu.fpuSw |= C1;
    }
    lo = r >>> 0;
    hi = Math.floor(r / TWO32) | 0;
  }
  if (size === 64) cpu.wr64(cpu.ea, lo | 0, hi | 0);
  else cpu.wr(size, cpu.ea, lo, 0);
  return true;
}

/** rounds to an integer by a rounding-control field (x87 FCW.RC, MXCSR.RC): nearest-even, down,
 * up, toward zero */
export function roundRc(v: number, rc: number): number {
  switch (rc) {
    case 0: {
      const r = Math.round(v);
      return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
    }
    case 1:
      return Math.floor(v);
    case 2:
      return Math.ceil(v);
    default:
      return Math.trunc(v);
  }
}

// ------------------------------------------------------------------ packed BCD

/** FBLD m80bcd: 18 digits and a sign bit; a digit above 9 gives an undefined value (here: its weight) */
export function loadBcd(cpu: Interpreter): number {
  const ea = checkOperand(cpu, 10, false);
  const lo = cpu.rd64(ea) >>> 0;
  const hi = cpu.vh >>> 0;
  const top = cpu.rd16(cpu.addLin(ea, 8));
  let v = 0n;
  const digitsOf = (word: number, n: number, into: bigint): bigint => {
    let acc = into;
    for (let k = n - 1; k >= 0; k--) acc = acc * 10n + BigInt((word >>> (4 * k)) & 0xf);
    return acc;
  };
  v = digitsOf(top & 0xff, 2, v);
  v = digitsOf(hi, 8, v);
  v = digitsOf(lo, 8, v);
  const n = Number(v);
  return (top & 0x8000) !== 0 ? -n : n;
}

/**
 * FBSTP: v rounded by FCW.RC into 18 BCD digits; IE and the packed BCD indefinite (FFFF C000 0000
 * 0000 0000) for a NaN, an infinity or a magnitude of 10^18 or more. False on an unmasked exception.
 */
export function storeBcd(cpu: Interpreter, v: number, bits: F80 | null): boolean {
  const ea = checkOperand(cpu, 10, true);
  cpu.fpuSw &= ~C1;
  const r = roundRc(v, (cpu.fpuCw >> 10) & 3);
  let lo = 0;
  let hi = 0;
  let top = 0;
  if ((bits !== null && isNaNF80(bits)) || !(Math.abs(r) < 1e18)) {
    if (signal(cpu, IE)) return false;
    hi = 0xc0000000;
    top = 0xffff;
  } else {
    if (r !== v) {
      signal(cpu, PE);
      if (Math.abs(r) > Math.abs(v)) cpu.fpuSw |= C1;
    }
    let m = BigInt(Math.abs(r));
    const digit = (): number => {
      const d = Number(m % 10n);
      m /= 10n;
      return d;
    };
    for (let k = 0; k < 8; k++) lo |= digit() << (4 * k);
    for (let k = 0; k < 8; k++) hi |= digit() << (4 * k);
    top = digit() | (digit() << 4);
    if (r < 0 || Object.is(r, -0)) top |= 0x8000;
  }
  cpu.wr64(ea, lo | 0, hi | 0);
  cpu.wr16(cpu.addLin(ea, 8), top);
  return true;
}
