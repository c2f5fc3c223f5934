// SSE/SSE2 subset that compilers and libcs emit: moves, logic, integer lane arithmetic and
// compares, shuffles/unpacks, PMOVMSKB, scalar/packed float arithmetic, conversions, (U)COMIS*.
// MMX (no 66 prefix on integer ops) and anything else raise a counted #UD.

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";
import { comi, roundRc } from "./x87.js";

const tmp = new Int32Array(4);
const tU8 = new Uint8Array(tmp.buffer);
const tI8 = new Int8Array(tmp.buffer);
const tU16 = new Uint16Array(tmp.buffer);
const tI16 = new Int16Array(tmp.buffer);
const tF32 = new Float32Array(tmp.buffer);
const tF64 = new Float64Array(tmp.buffer);
const res = new Int32Array(4);
const rU8 = new Uint8Array(res.buffer);
const rI8 = new Int8Array(res.buffer);
const rU16 = new Uint16Array(res.buffer);
const rI16 = new Int16Array(res.buffer);
const rF32 = new Float32Array(res.buffer);
const rF64 = new Float64Array(res.buffer);
const TWO32 = 4294967296;

interface Views {
  u8: Uint8Array;
  i8: Int8Array;
  u16: Uint16Array;
  i16: Int16Array;
  f32: Float32Array;
  f64: Float64Array;
}
const viewCache = new WeakMap<Int32Array, Views>();
function views(cpu: Interpreter): Views {
  let v = viewCache.get(cpu.xmm);
  if (v === undefined) {
    const b = cpu.xmm.buffer;
    v = {
      u8: new Uint8Array(b),
      i8: new Int8Array(b),
      u16: new Uint16Array(b),
      i16: new Int16Array(b),
      f32: new Float32Array(b),
      f64: new Float64Array(b),
    };
    viewCache.set(cpu.xmm, v);
  }
  return v;
}

function ud(): never {
  throw new CpuFault(Vec.UD, undefined);
}

function checkSse(cpu: Interpreter): void {
  if ((cpu.cr0 & 4) !== 0 || (cpu.cr4 & 0x200) === 0) ud();
  if ((cpu.cr0 & 8) !== 0) throw new CpuFault(Vec.NM, undefined);
}

/** loads the 128-bit source operand (xmm rm or memory) into tmp */
function src128(cpu: Interpreter, aligned: boolean): void {
  if (cpu.mod === 3) {
    const b = cpu.rm * 4;
    for (let i = 0; i < 4; i++) tmp[i] = cpu.xmm[b + i];
    return;
  }
  cpu.eaAccess(16, false);
  if (aligned && (cpu.ea & 15) !== 0) throw new CpuFault(Vec.GP, 0);
  for (let i = 0; i < 4; i++) tmp[i] = cpu.rd32(cpu.addLin(cpu.ea, 4 * i));
}
/** low 64 bits of the source into tmp[0..1] (tmp[2..3] zero for memory) */
function src64(cpu: Interpreter): void {
  if (cpu.mod === 3) {
    tmp[0] = cpu.xmm[cpu.rm * 4];
    tmp[1] = cpu.xmm[cpu.rm * 4 + 1];
  } else {
    cpu.eaAccess(8, false);
    tmp[0] = cpu.rd64(cpu.ea);
    tmp[1] = cpu.vh;
  }
  tmp[2] = 0;
  tmp[3] = 0;
}
function src32(cpu: Interpreter): void {
  if (cpu.mod === 3) tmp[0] = cpu.xmm[cpu.rm * 4];
  else {
    cpu.eaAccess(4, false);
    tmp[0] = cpu.rd32(cpu.ea);
  }
  tmp[1] = 0;
  tmp[2] = 0;
  tmp[3] = 0;
}
function store128(cpu: Interpreter, lanes: Int32Array, off: number, aligned: boolean): void {
  if (cpu.mod === 3) {
    for (let i = 0; i < 4; i++) cpu.xmm[cpu.rm * 4 + i] = lanes[off + i];
    return;
  }
  cpu.eaAccess(16, true);
  if (aligned && (cpu.ea & 15) !== 0) throw new CpuFault(Vec.GP, 0);
  cpu.probeWrite(cpu.ea, 16);
  for (let i = 0; i < 4; i++) cpu.wr32(cpu.addLin(cpu.ea, 4 * i), lanes[off + i]);
}
/** stores the low 4 or 8 bytes of a lane pair (MOVSS/MOVSD/MOVLPS/MOVHPS/MOVQ stores) */
function store64(cpu: Interpreter, lo: number, hi: number, bytes: number): void {
  cpu.eaAccess(bytes, true);
  if (bytes === 4) cpu.wr32(cpu.ea, lo);
  else cpu.wr64(cpu.ea, lo, hi);
}
function setDest(cpu: Interpreter, lanes: Int32Array): void {
  const b = cpu.reg * 4;
  for (let i = 0; i < 4; i++) cpu.xmm[b + i] = lanes[i];
}
function destToRes(cpu: Interpreter): void {
  const b = cpu.reg * 4;
  for (let i = 0; i < 4; i++) res[i] = cpu.xmm[b + i];
}

function sat8s(v: number): number {
  return Math.max(-128, Math.min(127, v));
}
function sat8u(v: number): number {
  return Math.max(0, Math.min(255, v));
}
function sat16s(v: number): number {
  return Math.max(-32768, Math.min(32767, v));
}
function sat16u(v: number): number {
  return Math.max(0, Math.min(65535, v));
}

function floatOp(op: number, a: number, b: number): number {
  switch (op) {
    case 0x58:
      return a + b;
    case 0x59:
      return a * b;
    case 0x5c:
      return a - b;
    case 0x5e:
      return a / b;
    // MINSD/MAXSD return the second operand on NaN or equal zeros: not Math.min/max semantics
    case 0x5d:
      // biome-ignore lint/complexity/useMathMinMax: SSE NaN semantics
      return a < b ? a : b;
    case 0x5f:
      // biome-ignore lint/complexity/useMathMinMax: SSE NaN semantics
      return a > b ? a : b;
    default:
      return Math.sqrt(b);
  }
}

function cmpPred(p: number, a: number, b: number): boolean {
  const un = Number.isNaN(a) || Number.isNaN(b);
  switch (p & 7) {
    case 0:
      return a === b;
    case 1:
      return a < b;
    case 2:
      return a <= b;
    case 3:
      return un;
    case 4:
      return !(a === b);
    case 5:
      return !(a < b);
    case 6:
      return !(a <= b);
    default:
      return !un;
  }
}

function cvtRound(cpu: Interpreter, v: number, trunc: boolean): number {
  return trunc ? Math.trunc(v) : roundRc(v, (cpu.mxcsr >> 13) & 3);
}

export function sse(cpu: Interpreter, op: number): void {
  const p66 = cpu.opsizePrefix;
  const rep = cpu.rep;
  const x = views(cpu);
  // entries with no SSE meaning in our subset
  const known =
    (op >= 0x10 && op <= 0x17) ||
    (op >= 0x28 && op <= 0x2f) ||
    (op >= 0x50 && op <= 0x7f) ||
    (op >= 0xc2 && op <= 0xc6) ||
    op >= 0xd1;
  if (!known) cpu.unimplemented(0x100 | op);
  if (op === 0x77) return; // EMMS
  // integer ops without 66 are MMX: not implemented
  const integer = (op >= 0x60 && op <= 0x76) || op >= 0xd1;
  if (integer && !p66 && rep === 0) cpu.unimplemented(0x100 | op);
  checkSse(cpu);
  const immLen =
    op === 0x70 || (op >= 0xc2 && op <= 0xc6 && op !== 0xc3) || (op >= 0x71 && op <= 0x73) ? 1 : 0;
  cpu.modrm(immLen);
  const d = cpu.reg * 4;
  const xm = cpu.xmm;
  switch (op) {
    case 0x10:
    case 0x11: {
      const load = op === 0x10;
      if (rep === 0xf3 || rep === 0xf2) {
        const n = rep === 0xf3 ? 1 : 2;
        if (load) {
          if (cpu.mod === 3) for (let i = 0; i < n; i++) xm[d + i] = xm[cpu.rm * 4 + i];
          else {
            if (n === 1) src32(cpu);
            else src64(cpu);
            setDest(cpu, tmp);
          }
        } else if (cpu.mod === 3) for (let i = 0; i < n; i++) xm[cpu.rm * 4 + i] = xm[d + i];
        else store64(cpu, xm[d], n === 1 ? 0 : xm[d + 1], 4 * n);
        return;
      }
      if (load) {
        src128(cpu, false);
        setDest(cpu, tmp);
      } else store128(cpu, xm, d, false);
      return;
    }
    case 0x12:
    case 0x13:
    case 0x16:
    case 0x17: {
      const high = op >= 0x16;
      const o = high ? 2 : 0;
      if ((op & 1) === 1) {
        if (cpu.mod === 3) ud();
        store64(cpu, xm[d + o], xm[d + o + 1], 8);
        return;
      }
      if (cpu.mod === 3) {
        if (p66) ud();
        // MOVHLPS / MOVLHPS
        const s = cpu.rm * 4 + (high ? 0 : 2);
        xm[d + o] = xm[s];
        xm[d + o + 1] = xm[s + 1];
        return;
      }
      src64(cpu);
      xm[d + o] = tmp[0];
      xm[d + o + 1] = tmp[1];
      return;
    }
    case 0x14:
    case 0x15: {
      src128(cpu, true);
      destToRes(cpu);
      const h = op === 0x15 ? 2 : 0;
      if (p66) {
        const a0 = res[h];
        const a1 = res[h + 1];
        res[0] = a0;
        res[1] = a1;
        res[2] = tmp[h];
        res[3] = tmp[h + 1];
      } else {
        const a0 = res[h];
        const a1 = res[h + 1];
        res[0] = a0;
        res[1] = tmp[h];
        res[2] = a1;
        res[3] = tmp[h + 1];
      }
      setDest(cpu, res);
      return;
    }
    case 0x28:
      src128(cpu, true);
      setDest(cpu, tmp);
      return;
    case 0x29:
    case 0x2b:
      if (op === 0x2b && cpu.mod === 3) ud();
      store128(cpu, xm, d, true);
      return;
    case 0x2a: {
      if (rep === 0) cpu.unimplemented(0x12a);
      let v: number;
      if (cpu.osz === 64) {
        const l = cpu.readRM(64);
        v = cpu.vh * TWO32 + l;
      } else v = cpu.readRM(32) | 0;
      if (rep === 0xf3) x.f32[cpu.reg * 4] = v;
      else x.f64[cpu.reg * 2] = v;
      return;
    }
    case 0x2c:
    case 0x2d: {
      if (rep === 0) cpu.unimplemented(0x100 | op);
      if (rep === 0xf3) src32(cpu);
      else src64(cpu);
      const v = cvtRound(cpu, rep === 0xf3 ? tF32[0] : tF64[0], op === 0x2c);
      if (cpu.osz === 64) {
        const ok = Number.isFinite(v) && Math.abs(v) < 2 ** 63;
        cpu.setReg(64, cpu.reg, ok ? v >>> 0 : 0, ok ? Math.floor(v / TWO32) | 0 : 0x80000000);
      } else {
        const ok = Number.isFinite(v) && v >= -0x80000000 && v <= 0x7fffffff;
        cpu.setReg(32, cpu.reg, ok ? v >>> 0 : 0x80000000, 0);
      }
      return;
    }
    case 0x2e:
    case 0x2f:
      if (p66) {
        src64(cpu);
        comi(cpu, x.f64[cpu.reg * 2], tF64[0]);
      } else {
        src32(cpu);
        comi(cpu, x.f32[cpu.reg * 4], tF32[0]);
      }
      return;
    case 0x50: {
      if (cpu.mod !== 3) ud();
      const s = cpu.rm * 4;
      let m = 0;
      if (p66) m = (xm[s + 1] >>> 31) | ((xm[s + 3] >>> 31) << 1);
      else for (let i = 0; i < 4; i++) m |= (xm[s + i] >>> 31) << i;
      cpu.setReg(32, cpu.reg, m, 0);
      return;
    }
    case 0x54:
    case 0x55:
    case 0x56:
    case 0x57:
    case 0xdb:
    case 0xdf:
    case 0xeb:
    case 0xef: {
      src128(cpu, true);
      for (let i = 0; i < 4; i++) {
        const a = xm[d + i];
        const b = tmp[i];
        xm[d + i] =
          op === 0x54 || op === 0xdb
            ? a & b
            : op === 0x55 || op === 0xdf
              ? ~a & b
              : op === 0x56 || op === 0xeb
                ? a | b
                : a ^ b;
      }
      return;
    }
    case 0x51:
    case 0x58:
    case 0x59:
    case 0x5c:
    case 0x5d:
    case 0x5e:
    case 0x5f: {
      if (rep === 0xf3) {
        src32(cpu);
        x.f32[cpu.reg * 4] = floatOp(op, x.f32[cpu.reg * 4], tF32[0]);
      } else if (rep === 0xf2) {
        src64(cpu);
        x.f64[cpu.reg * 2] = floatOp(op, x.f64[cpu.reg * 2], tF64[0]);
      } else {
        src128(cpu, true);
        if (p66)
          for (let i = 0; i < 2; i++) x.f64[cpu.reg * 2 + i] = floatOp(op, x.f64[cpu.reg * 2 + i], tF64[i]);
        else
          for (let i = 0; i < 4; i++) x.f32[cpu.reg * 4 + i] = floatOp(op, x.f32[cpu.reg * 4 + i], tF32[i]);
      }
      return;
    }
    case 0x5a: {
      if (rep === 0xf3) {
        src32(cpu);
        x.f64[cpu.reg * 2] = tF32[0];
      } else if (rep === 0xf2) {
        src64(cpu);
        x.f32[cpu.reg * 4] = tF64[0];
      } else if (p66) {
        src128(cpu, true);
        rF32[0] = tF64[0];
        rF32[1] = tF64[1];
        xm[d] = res[0];
        xm[d + 1] = res[1];
        xm[d + 2] = 0;
        xm[d + 3] = 0;
      } else {
        src64(cpu);
        x.f64[cpu.reg * 2] = tF32[0];
        x.f64[cpu.reg * 2 + 1] = tF32[1];
      }
      return;
    }
    case 0x5b: {
      src128(cpu, true);
      if (!p66 && rep === 0) for (let i = 0; i < 4; i++) x.f32[cpu.reg * 4 + i] = tmp[i];
      else
        for (let i = 0; i < 4; i++) {
          const v = cvtRound(cpu, tF32[i], rep === 0xf3);
          xm[d + i] = Number.isFinite(v) && v >= -0x80000000 && v <= 0x7fffffff ? v : 0x80000000;
        }
      return;
    }
    case 0xe6: {
      if (rep === 0xf3) {
        src64(cpu);
        const a = tmp[0];
        const b = tmp[1];
        x.f64[cpu.reg * 2] = a;
        x.f64[cpu.reg * 2 + 1] = b;
        return;
      }
      if (rep === 0 && !p66) cpu.unimplemented(0x1e6);
      src128(cpu, true);
      for (let i = 0; i < 2; i++) {
        const v = cvtRound(cpu, tF64[i], p66);
        xm[d + i] = Number.isFinite(v) && v >= -0x80000000 && v <= 0x7fffffff ? v : 0x80000000;
      }
      xm[d + 2] = 0;
      xm[d + 3] = 0;
      return;
    }
    case 0x60:
    case 0x61:
    case 0x62:
    case 0x68:
    case 0x69:
    case 0x6a:
    case 0x6c:
    case 0x6d: {
      src128(cpu, true);
      destToRes(cpu);
      const high = op >= 0x68 && op !== 0x6c;
      const unit = op === 0x6c || op === 0x6d ? 8 : 1 << (op & 3);
      const a = new Uint8Array(16);
      const half = high ? 8 : 0;
      let o = 0;
      for (let i = 0; i < 8; i += unit) {
        for (let k = 0; k < unit; k++) a[o++] = rU8[half + i + k];
        for (let k = 0; k < unit; k++) a[o++] = tU8[half + i + k];
      }
      const b = cpu.reg * 16;
      x.u8.set(a, b);
      return;
    }
    case 0x63:
    case 0x67:
    case 0x6b: {
      src128(cpu, true);
      destToRes(cpu);
      const out = new Uint8Array(16);
      const o16 = new Uint16Array(out.buffer);
      if (op === 0x6b) {
        const ri = new Int32Array(res);
        const ti = new Int32Array(tmp);
        for (let i = 0; i < 4; i++) o16[i] = sat16s(ri[i]) & 0xffff;
        for (let i = 0; i < 4; i++) o16[4 + i] = sat16s(ti[i]) & 0xffff;
      } else {
        const f = op === 0x63 ? sat8s : sat8u;
        for (let i = 0; i < 8; i++) out[i] = f(rI16[i]) & 0xff;
        for (let i = 0; i < 8; i++) out[8 + i] = f(tI16[i]) & 0xff;
      }
      x.u8.set(out, cpu.reg * 16);
      return;
    }
    case 0x64:
    case 0x65:
    case 0x66:
    case 0x74:
    case 0x75:
    case 0x76: {
      src128(cpu, true);
      destToRes(cpu);
      const eq = op >= 0x74;
      const w = op & 3;
      if (w === 0)
        for (let i = 0; i < 16; i++) rU8[i] = (eq ? rU8[i] === tU8[i] : rI8[i] > tI8[i]) ? 0xff : 0;
      else if (w === 1)
        for (let i = 0; i < 8; i++) rU16[i] = (eq ? rU16[i] === tU16[i] : rI16[i] > tI16[i]) ? 0xffff : 0;
      else for (let i = 0; i < 4; i++) res[i] = (eq ? res[i] === tmp[i] : res[i] > tmp[i]) ? -1 : 0;
      setDest(cpu, res);
      return;
    }
    case 0x6e: {
      if (cpu.osz === 64) {
        const l = cpu.readRM(64);
        xm[d] = l;
        xm[d + 1] = cpu.vh;
      } else {
        xm[d] = cpu.readRM(32);
        xm[d + 1] = 0;
      }
      xm[d + 2] = 0;
      xm[d + 3] = 0;
      return;
    }
    case 0x6f:
      if (!p66 && rep !== 0xf3) cpu.unimplemented(0x16f);
      src128(cpu, p66);
      setDest(cpu, tmp);
      return;
    case 0x7f:
    case 0xe7:
      if (op === 0x7f && !p66 && rep !== 0xf3) cpu.unimplemented(0x17f);
      if (op === 0xe7 && cpu.mod === 3) ud();
      store128(cpu, xm, d, op === 0xe7 || p66);
      return;
    case 0x70: {
      src128(cpu, true);
      const imm = cpu.fetch8();
      if (p66) for (let i = 0; i < 4; i++) res[i] = tmp[(imm >> (2 * i)) & 3];
      else {
        for (let i = 0; i < 4; i++) res[i] = tmp[i];
        const o = rep === 0xf3 ? 4 : 0;
        for (let i = 0; i < 4; i++) rU16[o + i] = tU16[o + ((imm >> (2 * i)) & 3)];
      }
      setDest(cpu, res);
      return;
    }
    case 0x71:
    case 0x72:
    case 0x73: {
      if (cpu.mod !== 3) ud();
      const imm = cpu.fetch8();
      const kind = cpu.reg & 7;
      cpu.reg = cpu.rm;
      const w = op === 0x71 ? 16 : op === 0x72 ? 32 : 64;
      if (op === 0x73 && (kind === 3 || kind === 7)) {
        // PSRLDQ / PSLLDQ: whole-register byte shifts
        destToRes(cpu);
        const n = Math.min(imm, 16);
        const out = new Uint8Array(16);
        for (let i = 0; i < 16; i++) {
          const s = kind === 3 ? i + n : i - n;
          out[i] = s >= 0 && s < 16 ? rU8[s] : 0;
        }
        x.u8.set(out, cpu.reg * 16);
        return;
      }
      const mode = kind === 2 ? 0 : kind === 4 ? 1 : kind === 6 ? 2 : -1;
      if (mode < 0 || (mode === 1 && w === 64)) cpu.unimplemented(0x100 | op);
      laneShift(cpu, x, w, mode, imm);
      return;
    }
    case 0x7e:
      if (rep === 0xf3) {
        src64(cpu);
        setDest(cpu, tmp);
        return;
      }
      if (!p66) cpu.unimplemented(0x17e);
      if (cpu.osz === 64) cpu.writeRM(64, xm[d] >>> 0, xm[d + 1]);
      else cpu.writeRM(32, xm[d] >>> 0, 0);
      return;
    case 0xd6:
      if (!p66) cpu.unimplemented(0x1d6);
      if (cpu.mod === 3) {
        const s = cpu.rm * 4;
        xm[s] = xm[d];
        xm[s + 1] = xm[d + 1];
        xm[s + 2] = 0;
        xm[s + 3] = 0;
      } else store64(cpu, xm[d], xm[d + 1], 8);
      return;
    case 0xd7: {
      if (cpu.mod !== 3) ud();
      const s = cpu.rm * 16;
      let m = 0;
      for (let i = 0; i < 16; i++) m |= (x.u8[s + i] >> 7) << i;
      cpu.setReg(32, cpu.reg, m, 0);
      return;
    }
    case 0xc2: {
      const imm = cpu.fetch8() & 7;
      if (rep === 0xf3) {
        src32(cpu);
        xm[d] = cmpPred(imm, x.f32[cpu.reg * 4], tF32[0]) ? -1 : 0;
      } else if (rep === 0xf2) {
        src64(cpu);
        const r = cmpPred(imm, x.f64[cpu.reg * 2], tF64[0]) ? -1 : 0;
        xm[d] = r;
        xm[d + 1] = r;
      } else {
        src128(cpu, true);
        if (p66)
          for (let i = 0; i < 2; i++) {
            const r = cmpPred(imm, x.f64[cpu.reg * 2 + i], tF64[i]) ? -1 : 0;
            xm[d + 2 * i] = r;
            xm[d + 2 * i + 1] = r;
          }
        else for (let i = 0; i < 4; i++) xm[d + i] = cmpPred(imm, x.f32[cpu.reg * 4 + i], tF32[i]) ? -1 : 0;
      }
      return;
    }
    case 0xc4: {
      // PINSRW xmm, r32/m16, imm8
      if (!p66) cpu.unimplemented(0x1c4);
      const v = cpu.readRM(16);
      const imm = cpu.fetch8() & 7;
      x.u16[cpu.reg * 8 + imm] = v;
      return;
    }
    case 0xc5: {
      // PEXTRW r32, xmm, imm8
      if (!p66) cpu.unimplemented(0x1c5);
      if (cpu.mod !== 3) ud();
      const imm = cpu.fetch8() & 7;
      cpu.setReg(cpu.osz === 64 ? 64 : 32, cpu.reg, x.u16[cpu.rm * 8 + imm], 0);
      return;
    }
    case 0xc3:
      if (cpu.mod === 3) ud();
      cpu.writeRM(cpu.osz === 64 ? 64 : 32, cpu.getReg(cpu.osz === 64 ? 64 : 32, cpu.reg), cpu.vh);
      return;
    case 0xc6: {
      src128(cpu, true);
      const imm = cpu.fetch8();
      destToRes(cpu);
      if (p66) {
        const a = (imm & 1) * 2;
        const b = ((imm >> 1) & 1) * 2;
        const r0 = res[a];
        const r1 = res[a + 1];
        res[0] = r0;
        res[1] = r1;
        res[2] = tmp[b];
        res[3] = tmp[b + 1];
      } else {
        const r0 = res[imm & 3];
        const r1 = res[(imm >> 2) & 3];
        res[0] = r0;
        res[1] = r1;
        res[2] = tmp[(imm >> 4) & 3];
        res[3] = tmp[(imm >> 6) & 3];
      }
      setDest(cpu, res);
      return;
    }
    default:
      integerOp(cpu, op, x);
  }
}

/** mode 0 logical right, 1 arithmetic right, 2 left */
function laneShift(cpu: Interpreter, x: Views, w: number, mode: number, count: number): void {
  const d = cpu.reg;
  if (w === 16) {
    for (let i = 0; i < 8; i++) {
      const k = d * 8 + i;
      if (mode === 1) x.i16[k] = x.i16[k] >> Math.min(count, 15);
      else x.u16[k] = count > 15 ? 0 : mode === 0 ? x.u16[k] >>> count : x.u16[k] << count;
    }
  } else if (w === 32) {
    for (let i = 0; i < 4; i++) {
      const k = d * 4 + i;
      const v = cpu.xmm[k];
      if (mode === 1) cpu.xmm[k] = v >> Math.min(count, 31);
      else cpu.xmm[k] = count > 31 ? 0 : mode === 0 ? v >>> count : v << count;
    }
  } else {
    for (let i = 0; i < 2; i++) {
      const k = d * 4 + 2 * i;
      let v = (BigInt(cpu.xmm[k + 1] >>> 0) << 32n) | BigInt(cpu.xmm[k] >>> 0);
      v = count > 63 ? 0n : mode === 0 ? v >> BigInt(count) : (v << BigInt(count)) & 0xffffffffffffffffn;
      cpu.xmm[k] = Number(v & 0xffffffffn);
      cpu.xmm[k + 1] = Number(v >> 32n);
    }
  }
}

function integerOp(cpu: Interpreter, op: number, x: Views): void {
  // shifts by an xmm count
  if ((op >= 0xd1 && op <= 0xd3) || op === 0xe1 || op === 0xe2 || (op >= 0xf1 && op <= 0xf3)) {
    src128(cpu, true);
    const count = tmp[1] !== 0 ? 256 : tmp[0] >>> 0;
    const w = (op & 3) === 1 ? 16 : (op & 3) === 2 ? 32 : 64;
    const mode = op < 0xe0 ? 0 : op < 0xf0 ? 1 : 2;
    laneShift(cpu, x, w, mode, Math.min(count, 255));
    return;
  }
  src128(cpu, true);
  destToRes(cpu);
  switch (op) {
    case 0xd4:
    case 0xfb: {
      for (let i = 0; i < 4; i += 2) {
        const a = (BigInt(res[i + 1] >>> 0) << 32n) | BigInt(res[i] >>> 0);
        const b = (BigInt(tmp[i + 1] >>> 0) << 32n) | BigInt(tmp[i] >>> 0);
        const r = BigInt.asUintN(64, op === 0xd4 ? a + b : a - b);
        res[i] = Number(r & 0xffffffffn);
        res[i + 1] = Number(r >> 32n);
      }
      break;
    }
    case 0xd5:
      for (let i = 0; i < 8; i++) rI16[i] = Math.imul(rI16[i], tI16[i]);
      break;
    case 0xe5:
      for (let i = 0; i < 8; i++) rI16[i] = (rI16[i] * tI16[i]) >> 16;
      break;
    case 0xe4:
      for (let i = 0; i < 8; i++) rU16[i] = (rU16[i] * tU16[i]) >>> 16;
      break;
    case 0xd8:
    case 0xd9:
    case 0xdc:
    case 0xdd:
    case 0xe8:
    case 0xe9:
    case 0xec:
    case 0xed: {
      const sub = (op & 4) === 0;
      const word = (op & 1) === 1;
      const signed = op >= 0xe8;
      if (word)
        for (let i = 0; i < 8; i++) {
          const a = signed ? rI16[i] : rU16[i];
          const b = signed ? tI16[i] : tU16[i];
          const r = sub ? a - b : a + b;
          rU16[i] = (signed ? sat16s(r) : sat16u(r)) & 0xffff;
        }
      else
        for (let i = 0; i < 16; i++) {
          const a = signed ? rI8[i] : rU8[i];
          const b = signed ? tI8[i] : tU8[i];
          const r = sub ? a - b : a + b;
          rU8[i] = (signed ? sat8s(r) : sat8u(r)) & 0xff;
        }
      break;
    }
    case 0xda:
      for (let i = 0; i < 16; i++) rU8[i] = Math.min(rU8[i], tU8[i]);
      break;
    case 0xde:
      for (let i = 0; i < 16; i++) rU8[i] = Math.max(rU8[i], tU8[i]);
      break;
    case 0xea:
      for (let i = 0; i < 8; i++) rI16[i] = Math.min(rI16[i], tI16[i]);
      break;
    case 0xee:
      for (let i = 0; i < 8; i++) rI16[i] = Math.max(rI16[i], tI16[i]);
      break;
    case 0xe0:
      for (let i = 0; i < 16; i++) rU8[i] = (rU8[i] + tU8[i] + 1) >> 1;
      break;
    case 0xe3:
      for (let i = 0; i < 8; i++) rU16[i] = (rU16[i] + tU16[i] + 1) >> 1;
      break;
    case 0xf4:
      for (let i = 0; i < 4; i += 2) {
        const p = BigInt(res[i] >>> 0) * BigInt(tmp[i] >>> 0);
        res[i] = Number(p & 0xffffffffn);
        res[i + 1] = Number(p >> 32n);
      }
      break;
    case 0xf5: {
      const out = new Int32Array(4);
      for (let i = 0; i < 4; i++) out[i] = rI16[2 * i] * tI16[2 * i] + rI16[2 * i + 1] * tI16[2 * i + 1];
      res.set(out);
      break;
    }
    case 0xf6: {
      let s0 = 0;
      let s1 = 0;
      for (let i = 0; i < 8; i++) s0 += Math.abs(rU8[i] - tU8[i]);
      for (let i = 8; i < 16; i++) s1 += Math.abs(rU8[i] - tU8[i]);
      res[0] = s0;
      res[1] = 0;
      res[2] = s1;
      res[3] = 0;
      break;
    }
    case 0xf8:
      for (let i = 0; i < 16; i++) rU8[i] = rU8[i] - tU8[i];
      break;
    case 0xf9:
      for (let i = 0; i < 8; i++) rU16[i] = rU16[i] - tU16[i];
      break;
    case 0xfa:
      for (let i = 0; i < 4; i++) res[i] = res[i] - tmp[i];
      break;
    case 0xfc:
      for (let i = 0; i < 16; i++) rU8[i] = rU8[i] + tU8[i];
      break;
    case 0xfd:
      for (let i = 0; i < 8; i++) rU16[i] = rU16[i] + tU16[i];
      break;
    case 0xfe:
      for (let i = 0; i < 4; i++) res[i] = res[i] + tmp[i];
      break;
    default:
      cpu.unimplemented(0x100 | op);
  }
  setDest(cpu, res);
  void rF64;
}
