// x87 subset: control/status word handling, FNINIT, loads/stores of 32/64-bit reals and
// 16/32/64-bit integers, basic arithmetic, compares into FSW/EFLAGS, and FXSAVE/FXRSTOR.
// Values are kept as doubles (64-bit precision instead of 80). Anything else raises a counted #UD.
//
// The physical registers R0-R7 are also the MMX registers mm0-7 (their 64-bit significands). A
// register last written by MMX (or restored with an all-ones sign/exponent, as MMX leaves it)
// holds the raw 64 bits in its Float64Array slot instead of a double, marked by bit 8+r of
// fpuTag (which ExtendedState carries), so no MMX value is lost to a double conversion.

import { CpuFault, Vec } from "./faults.js";
import { FL_CF, FL_PF, FL_ZF } from "./flags.js";
import type { Interpreter } from "./interpreter.js";

const TWO32 = 4294967296;
const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer);
const f32 = new Float32Array(1);
const f32u = new Uint32Array(f32.buffer);

/** fpuTag bit of physical register r: it holds raw MMX bits with sign/exponent 0xFFFF */
const RAW = 0x100;
const RAW_ALL = 0xff00;
const wordViews = new WeakMap<Float64Array, Int32Array>();
function words(cpu: Interpreter): Int32Array {
  let w = wordViews.get(cpu.fpu);
  if (w === undefined) {
    w = new Int32Array(cpu.fpu.buffer, cpu.fpu.byteOffset, 16);
    wordViews.set(cpu.fpu, w);
  }
  return w;
}

/** physical register r as a double (a raw MMX value reads as the NaN/-Inf it encodes) */
function phys(cpu: Interpreter, r: number): number {
  if ((cpu.fpuTag & (RAW << r)) === 0) return cpu.fpu[r];
  const w = words(cpu);
  return fromF80(w[2 * r], w[2 * r + 1], 0xffff);
}
function setPhys(cpu: Interpreter, r: number, v: number): void {
  cpu.fpu[r] = v;
  cpu.fpuTag &= ~(RAW << r);
}
function st(cpu: Interpreter, i: number): number {
  return phys(cpu, (cpu.fpuTop + i) & 7);
}
function setSt(cpu: Interpreter, i: number, v: number): void {
  setPhys(cpu, (cpu.fpuTop + i) & 7, v);
}
function push(cpu: Interpreter, v: number): void {
  cpu.fpuTop = (cpu.fpuTop - 1) & 7;
  setPhys(cpu, cpu.fpuTop, v);
  cpu.fpuTag |= 1 << cpu.fpuTop;
}

/** mm register i (physical register Ri's significand) into out[off], out[off + 1] */
export function mmGet(cpu: Interpreter, i: number, out: Int32Array, off: number): void {
  if ((cpu.fpuTag & (RAW << i)) !== 0) {
    const w = words(cpu);
    out[off] = w[2 * i];
    out[off + 1] = w[2 * i + 1];
    return;
  }
  const [lo, hi] = toF80(cpu.fpu[i]);
  out[off] = lo;
  out[off + 1] = hi;
}
/** writes mm register i: the significand, with sign and exponent all ones */
export function mmSet(cpu: Interpreter, i: number, lo: number, hi: number): void {
  const w = words(cpu);
  w[2 * i] = lo;
  w[2 * i + 1] = hi;
  cpu.fpuTag |= RAW << i;
}
function pop(cpu: Interpreter): void {
  cpu.fpuTag &= ~(1 << cpu.fpuTop);
  cpu.fpuTop = (cpu.fpuTop + 1) & 7;
}
function status(cpu: Interpreter): number {
  return (cpu.fpuSw & ~0x3800) | (cpu.fpuTop << 11);
}

function nm(cpu: Interpreter): void {
  if ((cpu.cr0 & 0xc) !== 0) throw new CpuFault(Vec.NM, undefined);
}

/** memory operand reads and writes of 16/32/64 bits, with the operand's segment checks */
function load(cpu: Interpreter, size: 16 | 32 | 64): number {
  cpu.eaAccess(size >> 3, false);
  return cpu.rd(size, cpu.ea);
}
function store(cpu: Interpreter, size: 16 | 32 | 64, v: number, vh: number): void {
  cpu.eaAccess(size >> 3, true);
  cpu.wr(size, cpu.ea, v, vh);
}

function readReal(cpu: Interpreter, size: 32 | 64): number {
  if (size === 32) {
    f32u[0] = load(cpu, 32);
    return f32[0];
  }
  f64u[0] = load(cpu, 64);
  f64u[1] = cpu.vh;
  return f64[0];
}

function writeReal(cpu: Interpreter, size: 32 | 64, v: number): void {
  if (size === 32) {
    f32[0] = v;
    store(cpu, 32, f32u[0], 0);
  } else {
    f64[0] = v;
    store(cpu, 64, f64u[0], f64u[1]);
  }
}

function roundInt(cpu: Interpreter, v: number): number {
  return roundRc(v, (cpu.fpuCw >> 10) & 3);
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

function compare(cpu: Interpreter, a: number, b: number): void {
  // C3 C2 C0 in FSW
  let c = 0;
  if (Number.isNaN(a) || Number.isNaN(b)) c = 0x4500;
  else if (a < b) c = 0x100;
  else if (a === b) c = 0x4000;
  cpu.fpuSw = (cpu.fpuSw & ~0x4500) | c;
}

function comi(cpu: Interpreter, a: number, b: number): void {
  let f = 0;
  if (Number.isNaN(a) || Number.isNaN(b)) f = FL_ZF | FL_PF | FL_CF;
  else if (a < b) f = FL_CF;
  else if (a === b) f = FL_ZF;
  cpu.patchFlags(0x8d5, f);
}

export function x87(cpu: Interpreter, b: number): void {
  cpu.modrm(0);
  nm(cpu);
  const reg = cpu.reg & 7;
  const mem = cpu.mod !== 3;
  const i = cpu.rm & 7;
  if (mem) {
    switch (b) {
      case 0xd8:
      case 0xdc: {
        const v = readReal(cpu, b === 0xd8 ? 32 : 64);
        if (reg === 2 || reg === 3) {
          compare(cpu, st(cpu, 0), v);
          if (reg === 3) pop(cpu);
        } else setSt(cpu, 0, arith(reg, st(cpu, 0), v));
        return;
      }
      case 0xd9:
        switch (reg) {
          case 0:
            push(cpu, readReal(cpu, 32));
            return;
          case 2:
          case 3:
            writeReal(cpu, 32, st(cpu, 0));
            if (reg === 3) pop(cpu);
            return;
          case 5:
            cpu.fpuCw = load(cpu, 16);
            return;
          case 7:
            store(cpu, 16, cpu.fpuCw, 0);
            return;
          default:
            cpu.unimplemented(0xd9);
        }
        return;
      case 0xdd:
        switch (reg) {
          case 0:
            push(cpu, readReal(cpu, 64));
            return;
          case 2:
          case 3:
            writeReal(cpu, 64, st(cpu, 0));
            if (reg === 3) pop(cpu);
            return;
          case 7:
            store(cpu, 16, status(cpu), 0);
            return;
          default:
            cpu.unimplemented(0xdd);
        }
        return;
      case 0xdb:
        switch (reg) {
          case 0:
            push(cpu, load(cpu, 32) | 0);
            return;
          case 1:
          case 2:
          case 3: {
            const v = reg === 1 ? Math.trunc(st(cpu, 0)) : roundInt(cpu, st(cpu, 0));
            store(cpu, 32, v >= -0x80000000 && v <= 0x7fffffff ? v : 0x80000000, 0);
            if (reg !== 2) pop(cpu);
            return;
          }
          default:
            cpu.unimplemented(0xdb);
        }
        return;
      case 0xdf:
        switch (reg) {
          case 0:
            push(cpu, (load(cpu, 16) << 16) >> 16);
            return;
          case 5: {
            const l = load(cpu, 64);
            push(cpu, cpu.vh * TWO32 + l);
            return;
          }
          case 1:
          case 2:
          case 3: {
            const v = reg === 1 ? Math.trunc(st(cpu, 0)) : roundInt(cpu, st(cpu, 0));
            store(cpu, 16, v >= -0x8000 && v <= 0x7fff ? v : 0x8000, 0);
            if (reg !== 2) pop(cpu);
            return;
          }
          case 7: {
            const v = roundInt(cpu, st(cpu, 0));
            const ok = Math.abs(v) < 2 ** 63;
            store(cpu, 64, ok ? v >>> 0 : 0, ok ? Math.floor(v / TWO32) | 0 : 0x80000000);
            pop(cpu);
            return;
          }
          default:
            cpu.unimplemented(0xdf);
        }
        return;
      case 0xda:
      case 0xde: {
        const v = b === 0xda ? load(cpu, 32) | 0 : (load(cpu, 16) << 16) >> 16;
        if (reg === 2 || reg === 3) {
          compare(cpu, st(cpu, 0), v);
          if (reg === 3) pop(cpu);
        } else setSt(cpu, 0, arith(reg, st(cpu, 0), v));
        return;
      }
      default:
        cpu.unimplemented(b);
    }
  }
  // register forms
  switch (b) {
    case 0xd8:
      if (reg === 2 || reg === 3) {
        compare(cpu, st(cpu, 0), st(cpu, i));
        if (reg === 3) pop(cpu);
      } else setSt(cpu, 0, arith(reg, st(cpu, 0), st(cpu, i)));
      return;
    case 0xdc:
    case 0xde:
      if (reg >= 4 || reg < 2) {
        // the destination is ST(i); sub/div operand order is reversed relative to D8
        const op = reg < 2 ? reg : reg ^ 1;
        setSt(cpu, i, arith(op, st(cpu, i), st(cpu, 0)));
        if (b === 0xde) pop(cpu);
        return;
      }
      if (b === 0xde && reg === 3 && i === 1) {
        compare(cpu, st(cpu, 0), st(cpu, 1));
        pop(cpu);
        pop(cpu);
        return;
      }
      cpu.unimplemented(b);
      return;
    case 0xd9:
      if (reg === 0) {
        push(cpu, st(cpu, i));
        return;
      }
      if (reg === 1) {
        const t = st(cpu, 0);
        setSt(cpu, 0, st(cpu, i));
        setSt(cpu, i, t);
        return;
      }
      switch ((cpu.rm & 7) | (reg << 3)) {
        case 0o40:
          setSt(cpu, 0, -st(cpu, 0));
          return;
        case 0o41:
          setSt(cpu, 0, Math.abs(st(cpu, 0)));
          return;
        case 0o44:
          compare(cpu, st(cpu, 0), 0);
          return;
        case 0o50:
          push(cpu, 1);
          return;
        case 0o56:
          push(cpu, 0);
          return;
        case 0o53:
          push(cpu, Math.PI);
          return;
        case 0o72:
          setSt(cpu, 0, Math.sqrt(st(cpu, 0)));
          return;
        case 0o74:
          setSt(cpu, 0, roundInt(cpu, st(cpu, 0)));
          return;
        default:
          if (reg === 2 && i === 0) return; // FNOP
          cpu.unimplemented(0xd9);
      }
      return;
    case 0xdd:
      if (reg === 3 || reg === 2) {
        setSt(cpu, i, st(cpu, 0));
        if (reg === 3) pop(cpu);
        return;
      }
      if (reg === 0) {
        cpu.fpuTag &= ~(1 << ((cpu.fpuTop + i) & 7));
        return;
      }
      cpu.unimplemented(0xdd);
      return;
    case 0xdb:
      if (reg === 4 && i === 3) {
        // FNINIT
        cpu.fpuCw = 0x37f;
        cpu.fpuSw = 0;
        cpu.fpuTop = 0;
        // the registers keep their contents (FXSAVE still shows them), only the tags change
        cpu.fpuTag &= RAW_ALL;
        return;
      }
      if (reg === 4 && i === 2) {
        cpu.fpuSw &= 0x7f00;
        return;
      }
      if (reg === 5 || reg === 6) {
        comi(cpu, st(cpu, 0), st(cpu, i));
        return;
      }
      cpu.unimplemented(0xdb);
      return;
    case 0xdf:
      if (reg === 4 && i === 0) {
        cpu.setReg(16, 0, status(cpu), 0);
        return;
      }
      if (reg === 5 || reg === 6) {
        comi(cpu, st(cpu, 0), st(cpu, i));
        pop(cpu);
        return;
      }
      cpu.unimplemented(0xdf);
      return;
    default:
      cpu.unimplemented(b);
  }
}

// ----------------------------------------------------------------- FXSAVE / FXRSTOR

function toF80(v: number): [number, number, number] {
  // returns mantissa lo, mantissa hi, sign|exponent (16 bits)
  if (v === 0) return [0, 0, Object.is(v, -0) ? 0x8000 : 0];
  f64[0] = v;
  const hi = f64u[1];
  const lo = f64u[0];
  const sign = hi >>> 31 ? 0x8000 : 0;
  const exp = (hi >>> 20) & 0x7ff;
  const mHi = ((hi & 0xfffff) << 11) | (lo >>> 21);
  const mLo = lo << 11;
  if (exp === 0x7ff) return [mLo >>> 0, (mHi | 0x80000000) >>> 0, sign | 0x7fff];
  if (exp === 0) {
    // denormal double: normalise
    let m = Math.abs(v);
    let e = 16383 - 1022;
    while (m < 1) {
      m *= 2;
      e--;
    }
    const frac = m * 2 ** 63;
    return [(frac % TWO32) >>> 0, Math.floor(frac / TWO32) >>> 0, sign | e];
  }
  return [mLo >>> 0, (mHi | 0x80000000) >>> 0, sign | (exp - 1023 + 16383)];
}

function fromF80(lo: number, hi: number, se: number): number {
  const sign = se & 0x8000 ? -1 : 1;
  const exp = se & 0x7fff;
  if (exp === 0 && lo === 0 && hi === 0) return sign * 0;
  if (exp === 0x7fff) return (hi & 0x7fffffff) === 0 && lo === 0 ? sign * Infinity : Number.NaN;
  // scaled in steps: 2^(e-63) alone underflows for values near the bottom of the double range
  let v = ((hi >>> 0) * TWO32 + (lo >>> 0)) * 2 ** -63;
  let e = exp - 16383;
  if (e < -1000) {
    v *= 2 ** -1000;
    e += 1000;
  }
  return sign * v * 2 ** e;
}

/** bytes of the FXSAVE image the x87 part and XMM0-7/15 occupy */
function fxBytes(nx: number): number {
  return 160 + 16 * nx;
}

/**
 * The FXSAVE image of the x87/SSE state (FCW, FSW, abridged FTW, MXCSR, ST0-7 as 80-bit values,
 * then `nx` XMM registers); FOP and the last instruction/data pointers are not kept (zero).
 */
export function fxImage(cpu: Interpreter, nx = 0): Uint8Array {
  const img = new Uint8Array(fxBytes(nx));
  const dv = new DataView(img.buffer);
  dv.setUint16(0, cpu.fpuCw, true);
  dv.setUint16(2, status(cpu), true);
  img[4] = cpu.fpuTag & 0xff;
  dv.setUint32(24, cpu.mxcsr, true);
  dv.setUint32(28, 0xffff, true);
  const w = words(cpu);
  for (let k = 0; k < 8; k++) {
    const r = (cpu.fpuTop + k) & 7;
    const base = 32 + 16 * k;
    const [ml, mh, se] =
      (cpu.fpuTag & (RAW << r)) !== 0 ? [w[2 * r], w[2 * r + 1], 0xffff] : toF80(cpu.fpu[r]);
    dv.setUint32(base, ml >>> 0, true);
    dv.setUint32(base + 4, mh >>> 0, true);
    dv.setUint16(base + 8, se, true);
  }
  for (let i = 0; i < nx * 4; i++) dv.setInt32(160 + 4 * i, cpu.xmm[i], true);
  return img;
}

/** Loads an FXSAVE image made by fxImage or the CPU (FXRSTOR's effect; MXCSR is not checked). */
export function loadFxImage(cpu: Interpreter, img: Uint8Array, nx = 0): void {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const sw = dv.getUint16(2, true);
  cpu.fpuCw = dv.getUint16(0, true);
  cpu.fpuSw = sw;
  cpu.fpuTop = (sw >> 11) & 7;
  cpu.fpuTag = img[4];
  cpu.mxcsr = dv.getUint32(24, true);
  for (let k = 0; k < 8; k++) {
    const base = 32 + 16 * k;
    const lo = dv.getInt32(base, true);
    const hi = dv.getInt32(base + 4, true);
    const se = dv.getUint16(base + 8, true);
    const r = (cpu.fpuTop + k) & 7;
    if (se === 0xffff) mmSet(cpu, r, lo, hi);
    else setPhys(cpu, r, fromF80(lo, hi, se));
  }
  for (let i = 0; i < nx * 4; i++) cpu.xmm[i] = dv.getInt32(160 + 4 * i, true);
}

/** FXSAVE m512: the whole area is checked (segment, alignment, paging) before the first write */
export function fxsave(cpu: Interpreter): void {
  cpu.eaAccess(512, true);
  const ea = cpu.ea;
  if ((ea & 15) !== 0) throw new CpuFault(Vec.GP, 0);
  cpu.probeWrite(ea, 512);
  const img = fxImage(cpu, cpu.mode64 ? 16 : 8);
  const dv = new DataView(img.buffer);
  for (let o = 0; o < img.length; o += 4) cpu.wr32(cpu.addLin(ea, o), dv.getInt32(o, true));
}

/** FXRSTOR m512: everything is read and checked before any register changes */
export function fxrstor(cpu: Interpreter): void {
  cpu.eaAccess(512, false);
  const ea = cpu.ea;
  if ((ea & 15) !== 0) throw new CpuFault(Vec.GP, 0);
  const nx = cpu.mode64 ? 16 : 8;
  const img = new Uint8Array(fxBytes(nx));
  const dv = new DataView(img.buffer);
  for (let o = 0; o < img.length; o += 4) dv.setInt32(o, cpu.rd32(cpu.addLin(ea, o)), true);
  if ((dv.getUint32(24, true) & ~0xffff) !== 0) throw new CpuFault(Vec.GP, 0);
  loadFxImage(cpu, img, nx);
}

export { comi };
