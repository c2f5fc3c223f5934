// FXSAVE/FXRSTOR's x87/SSE image (SDM Vol. 1 10.5.1) and the MMX view of the x87 registers.
//
// The physical registers R0-R7 are also the MMX registers mm0-7 (their 64-bit significands). A
// register last written by MMX (or restored with an all-ones sign/exponent, as MMX leaves it)
// holds the raw 64 bits in its Float64Array slot instead of a double, marked by bit 8+r of
// fpuTag (which ExtendedState carries), so no MMX value is lost to a double conversion.

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";
import { type F80, FCW_BITS, physF80, RAW, setPhysF80, status, toF80, words } from "./x87-regs.js";

/** mm register i (physical register Ri's significand) into out[off], out[off + 1] */
export function mmGet(cpu: Interpreter, i: number, out: Int32Array, off: number): void {
  if ((cpu.fpuTag & (RAW << i)) !== 0) {
    const w = words(cpu);
    out[off] = w[2 * i];
    out[off + 1] = w[2 * i + 1];
    return;
  }
  const [lo, hi] = Number.isNaN(cpu.fpu[i]) ? physF80(cpu, i) : toF80(cpu.fpu[i]);
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
  for (let k = 0; k < 8; k++) {
    const [ml, mh, se] = physF80(cpu, (cpu.fpuTop + k) & 7);
    const base = 32 + 16 * k;
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
  cpu.fpuCw = dv.getUint16(0, true) & FCW_BITS;
  cpu.fpuSw = sw;
  cpu.fpuTop = (sw >> 11) & 7;
  cpu.fpuTag = img[4];
  cpu.mxcsr = dv.getUint32(24, true);
  for (let k = 0; k < 8; k++) {
    const base = 32 + 16 * k;
    const x: F80 = [dv.getUint32(base, true), dv.getUint32(base + 4, true), dv.getUint16(base + 8, true)];
    setPhysF80(cpu, (cpu.fpuTop + k) & 7, x);
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
