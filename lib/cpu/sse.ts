// SSE/SSE2 subset that compilers and libcs emit: moves, logic, integer lane arithmetic and
// compares (mmx-lanes.ts, shared with MMX), shuffles/unpacks, PMOVMSKB, scalar/packed float
// arithmetic, conversions (those to and from mm registers included), (U)COMIS*. The integer forms
// without a 66 prefix are MMX (mmx.ts); anything else raises a counted #UD.

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";
import { checkMmx, enterMmx, isMmxOpcode, maskedStore, mmx, mmxLinkForm } from "./mmx.js";
import { byteSignMask, laneOp, laneShift, dst as res, shuffleWords, src as tmp } from "./mmx-lanes.js";
import { comi, mmGet, mmSet, roundRc } from "./x87.js";

const tF32 = new Float32Array(tmp.buffer);
const tF64 = new Float64Array(tmp.buffer);
const rU8 = new Uint8Array(res.buffer);
const rF32 = new Float32Array(res.buffer);
const TWO32 = 4294967296;

interface Views {
  u8: Uint8Array;
  u16: Uint16Array;
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
      u16: new Uint16Array(b),
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
  // one 16-byte access: in MMIO, two 8-byte ones, as KVM splits it
  cpu.rd128(cpu.ea, tmp, 0);
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
  cpu.wr128(cpu.ea, lanes, off);
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
/** a rounded value as int32, or the integer indefinite 0x80000000 when it does not fit */
function toInt32(v: number): number {
  return Number.isFinite(v) && v >= -0x80000000 && v <= 0x7fffffff ? v : 0x80000000;
}

/** CVTPI2PS / CVTPI2PD xmm, mm/m64: only a register source is an MMX instruction (the x87
 * checks and transition) */
function cvtPiToXmm(cpu: Interpreter, x: Views, p66: boolean): void {
  if (cpu.mod === 3) {
    checkMmx(cpu);
    mmGet(cpu, cpu.rm & 7, tmp, 0);
    enterMmx(cpu);
  } else {
    cpu.eaAccess(8, false);
    tmp[0] = cpu.rd64(cpu.ea);
    tmp[1] = cpu.vh;
  }
  for (let i = 0; i < 2; i++) {
    if (p66) x.f64[cpu.reg * 2 + i] = tmp[i];
    else x.f32[cpu.reg * 4 + i] = tmp[i];
  }
}

/** CVT(T)PS2PI mm, xmm/m64 and CVT(T)PD2PI mm, xmm/m128 */
function cvtXmmToPi(cpu: Interpreter, trunc: boolean, p66: boolean): void {
  checkMmx(cpu);
  if (p66) src128(cpu, true);
  else src64(cpu);
  for (let i = 0; i < 2; i++) res[i] = toInt32(cvtRound(cpu, p66 ? tF64[i] : tF32[i], trunc));
  enterMmx(cpu);
  mmSet(cpu, cpu.reg & 7, res[0], res[1]);
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
    (op >= 0xd1 && op !== 0xff);
  if (!known) cpu.unimplemented(0x100 | op);
  if (op === 0x77 || (!p66 && rep === 0 && isMmxOpcode(op))) {
    mmx(cpu, op);
    return;
  }
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
      if (rep === 0) {
        cvtPiToXmm(cpu, x, p66);
        return;
      }
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
      if (rep === 0) {
        cvtXmmToPi(cpu, op === 0x2c, p66);
        return;
      }
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
          xm[d + i] = toInt32(v);
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
        xm[d + i] = toInt32(v);
      }
      xm[d + 2] = 0;
      xm[d + 3] = 0;
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
        shuffleWords(imm, rep === 0xf3 ? 4 : 0);
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
      destToRes(cpu);
      if (op === 0x73 && (kind === 3 || kind === 7)) {
        // PSRLDQ / PSLLDQ: whole-register byte shifts
        const n = Math.min(imm, 16);
        const out = new Uint8Array(16);
        for (let i = 0; i < 16; i++) {
          const s = kind === 3 ? i + n : i - n;
          out[i] = s >= 0 && s < 16 ? rU8[s] : 0;
        }
        x.u8.set(out, cpu.reg * 16);
        return;
      }
      const w = op === 0x71 ? 16 : op === 0x72 ? 32 : 64;
      const mode = kind === 2 ? 0 : kind === 4 ? 1 : kind === 6 ? 2 : -1;
      if (mode < 0 || (mode === 1 && w === 64)) cpu.unimplemented(0x100 | op);
      laneShift(w, mode, imm, 16);
      setDest(cpu, res);
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
      if (!p66) {
        mmxLinkForm(cpu);
        return;
      }
      if (cpu.mod === 3) {
        const s = cpu.rm * 4;
        xm[s] = xm[d];
        xm[s + 1] = xm[d + 1];
        xm[s + 2] = 0;
        xm[s + 3] = 0;
      } else store64(cpu, xm[d], xm[d + 1], 8);
      return;
    case 0xd7:
      if (cpu.mod !== 3) ud();
      src128(cpu, false);
      cpu.setReg(32, cpu.reg, byteSignMask(16), 0);
      return;
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
    case 0xf7:
      // MASKMOVDQU xmm1, xmm2: bytes of xmm1 selected by the top bits of xmm2's to DS:rDI
      if (cpu.mod !== 3) ud();
      src128(cpu, false);
      destToRes(cpu);
      maskedStore(cpu, 16);
      return;
    default:
      src128(cpu, true);
      destToRes(cpu);
      if (!laneOp(op, 16)) cpu.unimplemented(0x100 | op);
      setDest(cpu, res);
  }
}
