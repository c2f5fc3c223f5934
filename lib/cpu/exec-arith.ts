// Shifts and rotates, group 3 (TEST/NOT/NEG/MUL/IMUL/DIV/IDIV), double shifts and bit scans.
// 64-bit multiplies and shifts work on 32-bit halves (kernel code is full of them); the double
// shifts and divisions of 64-bit operands still use BigInt.

import { CpuFault, Vec } from "./faults.js";
import { FL_CF, FL_OF } from "./flags.js";
import type { Interpreter } from "./interpreter.js";
import { mulS64, mulU64, product } from "./mul64.js";

export function big(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

function split(cpu: Interpreter, v: bigint): number {
  cpu.vh = Number((v >> 32n) & 0xffffffffn) | 0;
  return Number(v & 0xffffffffn);
}

function msb(size: number, v: number): number {
  return (v >>> (size - 1)) & 1;
}

/** ROL ROR RCL RCR SHL SHR SAL SAR; returns the result or undefined when count is 0 */
export function shiftOp(
  cpu: Interpreter,
  op: number,
  size: number,
  a: number,
  ah: number,
  count: number,
): number | undefined {
  count &= size === 64 ? 0x3f : 0x1f;
  if (count === 0) return undefined;
  if (size === 64) return shift64(cpu, op, a, ah, count);
  const mask = size === 32 ? 0xffffffff : (1 << size) - 1;
  switch (op) {
    case 0: {
      const c = count % size;
      const r = c === 0 ? a : (((a << c) | (a >>> (size - c))) & mask) >>> 0;
      const cf = r & 1;
      cpu.patchFlags(FL_CF | FL_OF, cf | ((msb(size, r) ^ cf) << 11));
      return r;
    }
    case 1: {
      const c = count % size;
      const r = c === 0 ? a : (((a >>> c) | (a << (size - c))) & mask) >>> 0;
      const cf = msb(size, r);
      cpu.patchFlags(FL_CF | FL_OF, cf | ((cf ^ ((r >>> (size - 2)) & 1)) << 11));
      return r;
    }
    case 2:
    case 3: {
      const c = count % (size + 1);
      let cf = cpu.cf();
      let r = a;
      if (c === 0) {
        cpu.patchFlags(FL_CF | FL_OF, cf | ((msb(size, r) ^ cf) << 11));
        return r;
      }
      for (let i = 0; i < c; i++) {
        if (op === 2) {
          const out = msb(size, r);
          r = (((r << 1) | cf) & mask) >>> 0;
          cf = out;
        } else {
          const out = r & 1;
          r = ((r >>> 1) | (cf << (size - 1))) >>> 0;
          r = (r & mask) >>> 0;
          cf = out;
        }
      }
      const of = op === 2 ? msb(size, r) ^ cf : msb(size, r) ^ ((r >>> (size - 2)) & 1);
      cpu.patchFlags(FL_CF | FL_OF, cf | (of << 11));
      return r;
    }
    case 4:
    case 6: {
      const r = count >= 32 ? 0 : ((a << count) & mask) >>> 0;
      const cf = count <= size ? (a >>> (size - count)) & 1 : 0;
      cpu.setRes(size, r, 0, cf, msb(size, r) ^ cf);
      return r;
    }
    case 5: {
      const r = a >>> count;
      const cf = (a >>> (count - 1)) & 1;
      cpu.setRes(size, r, 0, cf, msb(size, a));
      return r;
    }
    default: {
      const sh = 32 - size;
      const s = (a << sh) >> sh;
      const r = ((s >> Math.min(count, 31)) & mask) >>> 0;
      const cf = (s >> Math.min(count - 1, 31)) & 1;
      cpu.setRes(size, r, 0, cf, 0);
      return r;
    }
  }
}

function shift64(cpu: Interpreter, op: number, a: number, ah: number, c: number): number {
  const l = a >>> 0;
  const h = ah >>> 0;
  switch (op) {
    case 0:
    case 1: {
      // ROR by c is ROL by 64 - c
      const k = op === 0 ? c : 64 - c;
      let rl: number;
      let rh: number;
      if (k === 32) {
        rl = h;
        rh = l;
      } else if (k < 32) {
        rh = ((h << k) | (l >>> (32 - k))) >>> 0;
        rl = ((l << k) | (h >>> (32 - k))) >>> 0;
      } else {
        const d = k - 32;
        rh = ((l << d) | (h >>> (32 - d))) >>> 0;
        rl = ((h << d) | (l >>> (32 - d))) >>> 0;
      }
      if (op === 0) {
        const cf = rl & 1;
        cpu.patchFlags(FL_CF | FL_OF, cf | (((rh >>> 31) ^ cf) << 11));
      } else {
        const cf = rh >>> 31;
        cpu.patchFlags(FL_CF | FL_OF, cf | ((cf ^ ((rh >>> 30) & 1)) << 11));
      }
      cpu.vh = rh | 0;
      return rl;
    }
    case 2:
    case 3: {
      // RCL/RCR through CF, bit by bit (rare in practice)
      let cf = cpu.cf();
      let rl = l;
      let rh = h;
      for (let i = 0; i < c; i++) {
        if (op === 2) {
          const out = rh >>> 31;
          rh = ((rh << 1) | (rl >>> 31)) >>> 0;
          rl = ((rl << 1) | cf) >>> 0;
          cf = out;
        } else {
          const out = rl & 1;
          rl = ((rl >>> 1) | (rh << 31)) >>> 0;
          rh = ((rh >>> 1) | (cf << 31)) >>> 0;
          cf = out;
        }
      }
      const top = rh >>> 31;
      const of = op === 2 ? top ^ cf : top ^ ((rh >>> 30) & 1);
      cpu.patchFlags(FL_CF | FL_OF, cf | (of << 11));
      cpu.vh = rh | 0;
      return rl;
    }
    case 4:
    case 6: {
      let rl: number;
      let rh: number;
      if (c < 32) {
        rh = ((h << c) | (l >>> (32 - c))) >>> 0;
        rl = (l << c) >>> 0;
      } else {
        rh = (l << (c - 32)) >>> 0;
        rl = 0;
      }
      // the last bit shifted out: bit 64 - c of the operand
      const b = 64 - c;
      const cf = b < 32 ? (l >>> b) & 1 : (h >>> (b - 32)) & 1;
      cpu.vh = rh | 0;
      cpu.setRes(64, rl, rh | 0, cf, (rh >>> 31) ^ cf);
      return rl;
    }
    default: {
      // 5: SHR, 7: SAR
      const hs = op === 5 ? h : ah | 0;
      let rl: number;
      let rh: number;
      if (c < 32) {
        rl = ((l >>> c) | (h << (32 - c))) >>> 0;
        rh = op === 5 ? h >>> c : hs >> c;
      } else {
        rl = (op === 5 ? h >>> (c - 32) : hs >> (c - 32)) >>> 0;
        rh = op === 5 ? 0 : hs >> 31;
      }
      const b = c - 1;
      const cf = b < 32 ? (l >>> b) & 1 : (h >>> (b - 32)) & 1;
      cpu.vh = rh | 0;
      cpu.setRes(64, rl, rh | 0, cf, op === 5 ? h >>> 31 : 0);
      return rl;
    }
  }
}

/** SHLD (left) / SHRD: dest, src, count */
export function doubleShift(
  cpu: Interpreter,
  left: boolean,
  size: number,
  d: number,
  dh: number,
  s: number,
  sh: number,
  count: number,
): number | undefined {
  count &= size === 64 ? 0x3f : 0x1f;
  if (count === 0) return undefined;
  if (size === 32) return doubleShift32(cpu, left, d >>> 0, s >>> 0, count);
  if (size === 64) return doubleShift64(cpu, left, d >>> 0, dh | 0, s >>> 0, sh | 0, count);
  const n = BigInt(size);
  const mask = (1n << n) - 1n;
  const x = size === 64 ? big(d, dh) : BigInt(d >>> 0);
  const y = size === 64 ? big(s, sh) : BigInt(s >>> 0);
  const c = BigInt(count);
  let r: bigint;
  let cf: number;
  if (left) {
    // 16-bit with count > 16: architecturally undefined; we shift through the concatenation
    const cat = (x << n) | y;
    r = ((cat << c) >> n) & mask;
    cf = Number((x >> (n - c)) & 1n) & (count <= size ? 1 : 0);
  } else {
    const cat = (y << n) | x;
    r = (cat >> c) & mask;
    cf = Number((x >> (c - 1n)) & 1n);
  }
  const top = Number((r >> (n - 1n)) & 1n);
  const of = top ^ Number((x >> (n - 1n)) & 1n);
  const lo = Number(r & 0xffffffffn) >>> 0;
  const hi = Number((r >> 32n) & 0xffffffffn) | 0;
  cpu.setRes(size, lo, hi, cf, of);
  cpu.vh = hi;
  return lo;
}

// SHLD/SHRD of 32 and 64 bits on numbers: Linux runs them in its time and division helpers, where
// the BigInt form's allocations were a good part of the instruction's cost

function doubleShift32(cpu: Interpreter, left: boolean, x: number, y: number, c: number): number {
  const r = (left ? (x << c) | (y >>> (32 - c)) : (x >>> c) | (y << (32 - c))) >>> 0;
  const cf = left ? (x >>> (32 - c)) & 1 : (x >>> (c - 1)) & 1;
  cpu.setRes(32, r, 0, cf, (r >>> 31) ^ (x >>> 31));
  cpu.vh = 0;
  return r;
}

/** bit k (0-63) of hi:lo */
const bit64 = (lo: number, hi: number, k: number): number =>
  k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;

function doubleShift64(
  cpu: Interpreter,
  left: boolean,
  d: number,
  dh: number,
  s: number,
  sh: number,
  c: number,
): number {
  // both are (A << k) | (B >> (64 - k)) with k in 1..63: SHLD A = dest, B = source, k = count;
  // SHRD A = source, B = dest, k = 64 - count
  const k = left ? c : 64 - c;
  const aLo = left ? d : s;
  const aHi = left ? dh : sh;
  const bLo = left ? s : d;
  const bHi = left ? sh : dh;
  const j = 64 - k;
  let lo: number;
  let hi: number;
  if (k < 32) {
    lo = aLo << k;
    hi = (aHi << k) | (aLo >>> (32 - k));
  } else {
    lo = 0;
    hi = aLo << (k - 32);
  }
  if (j < 32) {
    lo |= (bLo >>> j) | (bHi << (32 - j));
    hi |= bHi >>> j;
  } else lo |= bHi >>> (j - 32);
  lo >>>= 0;
  hi |= 0;
  const cf = left ? bit64(d, dh, 64 - c) : bit64(d, dh, c - 1);
  cpu.setRes(64, lo, hi, cf, (hi >>> 31) ^ (dh >>> 31));
  cpu.vh = hi;
  return lo;
}

export function group3(cpu: Interpreter, size: number): void {
  cpu.modrm(-(size === 8 ? 1 : size === 16 ? 2 : 4));
  const op = cpu.reg & 7;
  switch (op) {
    case 0:
    case 1: {
      const a = cpu.readRM(size);
      const ah = cpu.vh;
      const imm = cpu.fetchImm(size);
      cpu.logic(size, a & imm, size === 64 ? ah & cpu.vh : 0);
      return;
    }
    case 2: {
      const a = cpu.readRMW(size);
      const mask = size === 32 || size === 64 ? 0xffffffff : (1 << size) - 1;
      cpu.writeRM(size, (~a & mask) >>> 0, ~cpu.vh);
      return;
    }
    case 3: {
      const a = cpu.readRMW(size);
      const r = cpu.alu(5, size, 0, 0, a, cpu.vh);
      cpu.writeRM(size, r, cpu.vh);
      return;
    }
    case 4:
    case 5: {
      const v = cpu.readRM(size);
      mulAcc(cpu, size, v, cpu.vh, op === 5);
      return;
    }
    default: {
      const v = cpu.readRM(size);
      divAcc(cpu, size, v, cpu.vh, op === 7);
    }
  }
}

/** MUL/IMUL of rAX by v:vh into rAX and rDX (AX for bytes), with CF/OF (group 3, block ops) */
export function mulAcc(cpu: Interpreter, size: number, v: number, vh: number, signed: boolean): void {
  const lo = cpu.lo;
  if (size === 8) {
    const a = lo[0] & 0xff;
    const p = signed ? (((a << 24) >> 24) * ((v << 24) >> 24)) & 0xffff : a * v;
    lo[0] = (lo[0] & ~0xffff) | p;
    const ovf = signed ? ((p << 24) >> 24 !== (p << 16) >> 16 ? 1 : 0) : p > 0xff ? 1 : 0;
    cpu.setRes(8, p & 0xff, 0, ovf, ovf);
    return;
  }
  if (size === 16) {
    const a = lo[0] & 0xffff;
    const p = signed ? (((a << 16) >> 16) * ((v << 16) >> 16)) | 0 : a * v;
    lo[0] = (lo[0] & ~0xffff) | (p & 0xffff);
    lo[2] = (lo[2] & ~0xffff) | ((p >>> 16) & 0xffff);
    const ovf = signed ? ((p << 16) >> 16 !== p ? 1 : 0) : p > 0xffff ? 1 : 0;
    cpu.setRes(16, p & 0xffff, 0, ovf, ovf);
    return;
  }
  if (size === 32) {
    // the 64-bit product is beyond a double's exact range: EDX:EAX through the 64-bit multiply
    if (signed) mulS64(lo[0] | 0, lo[0] >> 31, v | 0, v >> 31);
    else mulU64(lo[0] >>> 0, 0, v >>> 0, 0);
    const l = product[0];
    const h = product[1];
    const ovf = signed ? (h !== (l >>> 31 ? 0xffffffff : 0) ? 1 : 0) : h !== 0 ? 1 : 0;
    cpu.setReg(32, 0, l, 0);
    cpu.setReg(32, 2, h, 0);
    cpu.setRes(32, l, 0, ovf, ovf);
    return;
  }
  let ovf: number;
  if (signed) ovf = mulS64(lo[0], cpu.hi[0], v, vh) ? 1 : 0;
  else {
    mulU64(lo[0], cpu.hi[0], v, vh);
    ovf = product[2] !== 0 || product[3] !== 0 ? 1 : 0;
  }
  const l = product[0];
  const lh = product[1] | 0;
  cpu.setReg(64, 0, l, lh);
  cpu.setReg(64, 2, product[2], product[3] | 0);
  cpu.setRes(64, l, lh, ovf, ovf);
}

/** DIV/IDIV of rDX:rAX (AX for bytes) by v:vh; #DE on a zero divisor or a quotient too wide */
export function divAcc(cpu: Interpreter, size: number, v: number, vh: number, signed: boolean): void {
  const lo = cpu.lo;
  const de = () => new CpuFault(Vec.DE, undefined);
  if (size === 8) {
    const ax = lo[0] & 0xffff;
    if (v === 0) throw de();
    let q: number;
    let r: number;
    if (signed) {
      const n = (ax << 16) >> 16;
      const d = (v << 24) >> 24;
      q = Math.trunc(n / d);
      r = n - q * d;
      if (q > 127 || q < -128) throw de();
    } else {
      q = Math.floor(ax / v);
      r = ax % v;
      if (q > 0xff) throw de();
    }
    lo[0] = (lo[0] & ~0xffff) | (q & 0xff) | ((r & 0xff) << 8);
    return;
  }
  if (size === 16) {
    const n0 = ((lo[2] & 0xffff) << 16) | (lo[0] & 0xffff);
    if (v === 0) throw de();
    let q: number;
    let r: number;
    if (signed) {
      const d = (v << 16) >> 16;
      q = Math.trunc(n0 / d);
      r = n0 - q * d;
      if (q > 0x7fff || q < -0x8000) throw de();
    } else {
      const n = n0 >>> 0;
      q = Math.floor(n / v);
      r = n % v;
      if (q > 0xffff) throw de();
    }
    lo[0] = (lo[0] & ~0xffff) | (q & 0xffff);
    lo[2] = (lo[2] & ~0xffff) | (r & 0xffff);
    return;
  }
  const bits = BigInt(size);
  let n: bigint;
  let d: bigint;
  if (size === 32) {
    n = (BigInt(lo[2] >>> 0) << 32n) | BigInt(lo[0] >>> 0);
    d = BigInt(v >>> 0);
  } else {
    n = (big(lo[2], cpu.hi[2]) << 64n) | big(lo[0], cpu.hi[0]);
    d = big(v, vh);
  }
  if (d === 0n) throw de();
  if (signed) {
    n = BigInt.asIntN(2 * size, n);
    d = BigInt.asIntN(size, d);
  }
  const q = n / d;
  const r = n % d;
  if (signed ? BigInt.asIntN(size, q) !== q : q >> bits !== 0n) throw de();
  if (size === 32) {
    cpu.setReg(32, 0, Number(BigInt.asUintN(32, q)), 0);
    cpu.setReg(32, 2, Number(BigInt.asUintN(32, r)), 0);
  } else {
    const ql = split(cpu, BigInt.asUintN(64, q));
    cpu.setReg(64, 0, ql, cpu.vh);
    const rl = split(cpu, BigInt.asUintN(64, r));
    cpu.setReg(64, 2, rl, cpu.vh);
  }
}

export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
