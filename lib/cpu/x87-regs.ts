// The x87 register stack as the interpreter holds it (eight doubles in cpu.fpu, TOP, the tag bits),
// the exact 80-bit view of a register that NaNs and MMX values need, and the exception machinery of
// the status word (SDM Vol. 1 8.1.3, 8.5): flags, the ES summary, stack faults and masked responses.
//
// A register's Float64Array slot normally holds its value as a double. Bit 8+r of fpuTag (RAW) says
// the slot holds a 64-bit significand whose sign/exponent is 0xFFFF instead: MMX leaves registers so,
// and the x87 uses it for negative NaNs (the QNaN indefinite among them), which are then exact. Any
// other NaN is kept as a double NaN written and read bit by bit (never through JS arithmetic, which
// may change a NaN's bits), so its sign, quiet bit and the top 52 bits of its payload survive.

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";

export const TWO32 = 4294967296;

// status word bits
export const IE = 0x1;
export const DE = 0x2;
export const ZE = 0x4;
export const OE = 0x8;
export const UE = 0x10;
export const PE = 0x20;
export const SF = 0x40;
export const ES = 0x80;
export const C0 = 0x100;
export const C1 = 0x200;
export const C2 = 0x400;
export const C3 = 0x4000;
export const BUSY = 0x8000;

/** the FCW bits that exist (6 reads as written, 7 and 13-15 as zero) */
export const FCW_BITS = 0x1f7f;

/** fpuTag bit of physical register r: it holds raw significand bits with sign/exponent 0xFFFF */
export const RAW = 0x100;
export const RAW_ALL = 0xff00;

/** an 80-bit value: significand low and high 32 bits (unsigned), sign and exponent (16 bits) */
export type F80 = [lo: number, hi: number, se: number];

/** the QNaN floating-point indefinite */
export const INDEFINITE: F80 = [0, 0xc0000000, 0xffff];

const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer);

const wordViews = new WeakMap<Float64Array, Int32Array>();
export function words(cpu: Interpreter): Int32Array {
  let w = wordViews.get(cpu.fpu);
  if (w === undefined) {
    w = new Int32Array(cpu.fpu.buffer, cpu.fpu.byteOffset, 16);
    wordViews.set(cpu.fpu, w);
  }
  return w;
}

// ------------------------------------------------------------------ 80-bit <-> double

/** a double as an 80-bit value (exact: every double is a normal or zero extended real) */
export function toF80(v: number): F80 {
  if (v === 0) return [0, 0, Object.is(v, -0) ? 0x8000 : 0];
  f64[0] = v;
  return bitsToF80(f64u[0], f64u[1]);
}

/** the 80-bit form of a double given by its bits (NaN payloads are kept) */
export function bitsToF80(lo: number, hi: number): F80 {
  const sign = hi >>> 31 ? 0x8000 : 0;
  const exp = (hi >>> 20) & 0x7ff;
  const mHi = ((hi & 0xfffff) << 11) | (lo >>> 21);
  const mLo = lo << 11;
  if (exp === 0x7ff) return [mLo >>> 0, (mHi | 0x80000000) >>> 0, sign | 0x7fff];
  if (exp === 0) {
    if (mHi === 0 && mLo === 0) return [0, 0, sign];
    // a denormal double is a normal extended real: shift the significand up to bit 63
    let h = mHi >>> 0;
    let l = mLo >>> 0;
    let e = 16383 - 1022;
    while ((h & 0x80000000) === 0) {
      h = ((h << 1) | (l >>> 31)) >>> 0;
      l = (l << 1) >>> 0;
      e--;
    }
    return [l, h, sign | e];
  }
  return [mLo >>> 0, (mHi | 0x80000000) >>> 0, sign | (exp - 1023 + 16383)];
}

/** an 80-bit value as a double: out-of-range magnitudes become infinities or zeros (rounded to nearest) */
export function fromF80(lo: number, hi: number, se: number): number {
  const sign = se & 0x8000 ? -1 : 1;
  const exp = se & 0x7fff;
  if (exp === 0x7fff) return (hi & 0x7fffffff) === 0 && lo === 0 ? sign * Infinity : Number.NaN;
  if ((hi | lo) === 0) return sign * 0;
  // a pseudo-denormal (exponent 0, J set) has the denormals' exponent -16382
  let e = (exp === 0 ? 1 : exp) - 16383;
  // scaled in steps: 2^(e-63) alone underflows for values near the bottom of the double range
  let v = ((hi >>> 0) * TWO32 + (lo >>> 0)) * 2 ** -63;
  while (e < -1000) {
    v *= 2 ** -1000;
    e += 1000;
    if (v === 0) break;
  }
  while (e > 1000) {
    v *= 2 ** 1000;
    e -= 1000;
  }
  return sign * v * 2 ** e;
}

export function isNaNF80(x: F80): boolean {
  return (x[2] & 0x7fff) === 0x7fff && ((x[1] & 0x7fffffff) !== 0 || x[0] !== 0);
}
/** a NaN whose quiet bit (significand bit 62) is clear */
export function isSNaN(x: F80): boolean {
  return isNaNF80(x) && (x[1] & 0x40000000) === 0;
}
/** pseudo-NaN, pseudo-infinity or unnormal (J bit clear where the exponent is not 0) */
export function unsupported(x: F80): boolean {
  const exp = x[2] & 0x7fff;
  return exp !== 0 && (x[1] & 0x80000000) === 0;
}

// ------------------------------------------------------------------ registers

/** physical register r as a double (NaN for any NaN) */
export function phys(cpu: Interpreter, r: number): number {
  if ((cpu.fpuTag & (RAW << r)) === 0) return cpu.fpu[r];
  const w = words(cpu);
  return fromF80(w[2 * r], w[2 * r + 1], 0xffff);
}

/** physical register r exactly as 80 bits */
export function physF80(cpu: Interpreter, r: number): F80 {
  const w = words(cpu);
  if ((cpu.fpuTag & (RAW << r)) !== 0) return [w[2 * r] >>> 0, w[2 * r + 1] >>> 0, 0xffff];
  return bitsToF80(w[2 * r] >>> 0, w[2 * r + 1] >>> 0);
}

export function setPhys(cpu: Interpreter, r: number, v: number): void {
  cpu.fpu[r] = v;
  cpu.fpuTag &= ~(RAW << r);
}

/**
 * Writes an 80-bit value to physical register r: exact for every value a double holds, for
 * sign/exponent 0xFFFF (RAW) and for NaNs down to the 52nd payload bit; unsupported encodings with
 * another sign/exponent become the QNaN indefinite, values beyond the double range infinities or zeros.
 */
export function setPhysF80(cpu: Interpreter, r: number, x: F80): void {
  const [lo, hi, se] = x;
  const w = words(cpu);
  if (se === 0xffff) {
    w[2 * r] = lo;
    w[2 * r + 1] = hi;
    cpu.fpuTag |= RAW << r;
    return;
  }
  if (unsupported(x)) {
    setPhysF80(cpu, r, INDEFINITE);
    return;
  }
  if (isNaNF80(x)) {
    let dLo = ((hi << 21) | (lo >>> 11)) >>> 0;
    let dHi = (se & 0x8000 ? 0x80000000 : 0) | 0x7ff00000 | ((hi >>> 11) & 0xfffff);
    // a payload wholly below the double's bits would read as an infinity: keep it a NaN
    if (dLo === 0 && (dHi & 0xfffff) === 0) dLo = 1;
    dHi >>>= 0;
    w[2 * r] = dLo | 0;
    w[2 * r + 1] = dHi | 0;
    cpu.fpuTag &= ~(RAW << r);
    return;
  }
  setPhys(cpu, r, fromF80(lo, hi, se));
}

/** the masked response of an invalid operation or stack fault: the QNaN indefinite in a register
 * that is in use from now on */
export function indefinite(cpu: Interpreter, r: number): void {
  setPhysF80(cpu, r, INDEFINITE);
  cpu.fpuTag |= 1 << r;
}

/** copies physical register `from` to `to` bit for bit */
export function copyPhys(cpu: Interpreter, from: number, to: number): void {
  const w = words(cpu);
  w[2 * to] = w[2 * from];
  w[2 * to + 1] = w[2 * from + 1];
  cpu.fpuTag = (cpu.fpuTag & ~(RAW << to)) | ((cpu.fpuTag & (RAW << from)) !== 0 ? RAW << to : 0);
}

/** exchanges physical registers a and b bit for bit */
export function swapPhys(cpu: Interpreter, a: number, b: number): void {
  const w = words(cpu);
  const lo = w[2 * a];
  const hi = w[2 * a + 1];
  w[2 * a] = w[2 * b];
  w[2 * a + 1] = w[2 * b + 1];
  w[2 * b] = lo;
  w[2 * b + 1] = hi;
  const ra = (cpu.fpuTag >> a) & RAW;
  const rb = (cpu.fpuTag >> b) & RAW;
  cpu.fpuTag = (cpu.fpuTag & ~((RAW << a) | (RAW << b))) | (rb << a) | (ra << b);
}

export function physOf(cpu: Interpreter, i: number): number {
  return (cpu.fpuTop + i) & 7;
}
export function st(cpu: Interpreter, i: number): number {
  return phys(cpu, (cpu.fpuTop + i) & 7);
}
export function setSt(cpu: Interpreter, i: number, v: number): void {
  setPhys(cpu, (cpu.fpuTop + i) & 7, v);
}
export function empty(cpu: Interpreter, i: number): boolean {
  return (cpu.fpuTag & (1 << ((cpu.fpuTop + i) & 7))) === 0;
}
export function pop(cpu: Interpreter): void {
  cpu.fpuTag &= ~(1 << cpu.fpuTop);
  cpu.fpuTop = (cpu.fpuTop + 1) & 7;
}
/** decrements TOP and marks the new ST(0) valid (the caller writes its value) */
export function pushSlot(cpu: Interpreter): number {
  cpu.fpuTop = (cpu.fpuTop - 1) & 7;
  cpu.fpuTag |= 1 << cpu.fpuTop;
  return cpu.fpuTop;
}
export function push(cpu: Interpreter, v: number): void {
  setPhys(cpu, pushSlot(cpu), v);
}
export function status(cpu: Interpreter): number {
  return (cpu.fpuSw & ~0x3800) | (cpu.fpuTop << 11);
}

// ------------------------------------------------------------------ exceptions

/**
 * Raises exception flags in FSW. Returns true when one of them is unmasked: the instruction then
 * leaves its destination (and the stack) alone, and ES/B make the next waiting x87 instruction
 * report #MF (SDM Vol. 1 8.6).
 */
export function signal(cpu: Interpreter, flags: number): boolean {
  cpu.fpuSw |= flags;
  if ((flags & ~cpu.fpuCw & 0x3f) === 0) return false;
  cpu.fpuSw |= ES | BUSY;
  return true;
}

/** ES and B from the flags and masks as loaded (FLDCW, FLDENV, FRSTOR) */
export function syncSummary(cpu: Interpreter): void {
  if ((cpu.fpuSw & ~cpu.fpuCw & 0x3f) !== 0) cpu.fpuSw |= ES | BUSY;
  else cpu.fpuSw &= ~(ES | BUSY);
}

/** stack underflow (an empty register read): C1 = 0; true when IE is unmasked */
export function underflow(cpu: Interpreter): boolean {
  cpu.fpuSw &= ~C1;
  return signal(cpu, IE | SF);
}

/**
 * Room for a push: C1 = 0, or on stack overflow (the register below TOP is in use) C1 = 1 and
 * IE|SF; masked, the QNaN indefinite is pushed. Returns true when the caller may push its value.
 */
export function canPush(cpu: Interpreter): boolean {
  if ((cpu.fpuTag & (1 << ((cpu.fpuTop - 1) & 7))) === 0) {
    cpu.fpuSw &= ~C1;
    return true;
  }
  cpu.fpuSw |= C1;
  if (!signal(cpu, IE | SF)) indefinite(cpu, pushSlot(cpu));
  return false;
}

/** a pending unmasked exception is reported as #MF before a waiting instruction (CR0.NE = 1;
 * with NE = 0 hardware signals FERR# to the board instead, which nothing here wires up) */
export function checkPending(cpu: Interpreter): void {
  if ((cpu.fpuSw & ES) !== 0 && (cpu.cr0 & 0x20) !== 0) throw new CpuFault(Vec.MF, undefined);
}

/** quiets a NaN (sets the significand's bit 62) */
export function quiet(x: F80): F80 {
  return [x[0], (x[1] | 0x40000000) >>> 0, x[2]];
}

/**
 * The NaN result of an operation with NaN operand(s) (SDM Vol. 1 Table 4-7, x87 column): an SNaN
 * raises IE; a QNaN wins over an SNaN, otherwise the larger significand (a tie goes to the
 * positive one). Returns null when IE is unmasked.
 */
export function nanResult(cpu: Interpreter, a: F80 | null, b: F80 | null): F80 | null {
  const an = a !== null && isNaNF80(a);
  const bn = b !== null && isNaNF80(b);
  if (((an && isSNaN(a)) || (bn && isSNaN(b))) && signal(cpu, IE)) return null;
  let pick: F80;
  if (an && bn) {
    const aq = !isSNaN(a);
    const bq = !isSNaN(b);
    if (aq !== bq) pick = aq ? a : b;
    else {
      const c = a[1] - b[1] || a[0] - b[0];
      pick = c > 0 ? a : c < 0 ? b : (a[2] & 0x8000) === 0 ? a : b;
    }
  } else pick = an ? (a as F80) : (b as F80);
  return quiet(pick);
}
