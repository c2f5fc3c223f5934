// FNSTENV/FLDENV (14/28-byte environment) and FNSAVE/FRSTOR (94/108-byte state): SDM Vol. 1 8.1.10,
// Figures 8-9 to 8-12, in the 16- and 32-bit operand-size formats and the real-mode (also
// virtual-8086) and protected-mode layouts. The whole image is checked before the first byte is
// written, and read in full before any register changes, so an MMIO operand sees each access once.
//
// The interpreter keeps no last-instruction pointers (FIP, FCS, FOP, FDP, FDS): they are stored as
// zero, as CPUs that deprecate FCS/FDS store those, and ignored on load.

import { FL_VM } from "./flags.js";
import type { Interpreter } from "./interpreter.js";
import { checkOperand } from "./x87-formats.js";
import {
  type F80,
  FCW_BITS,
  physF80,
  RAW_ALL,
  setPhysF80,
  status,
  syncSummary,
  unsupported,
} from "./x87-regs.js";

/** what reserved halves of the 32-bit environment's words hold when stored (as Intel CPUs store them) */
const RESERVED = 0xffff0000;

/** the full tag word: 00 valid, 01 zero, 10 special (NaN, infinity, denormal, unsupported), 11 empty */
export function fullTag(cpu: Interpreter): number {
  let t = 0;
  for (let r = 0; r < 8; r++) {
    let tag = 3;
    if ((cpu.fpuTag & (1 << r)) !== 0) {
      const x = physF80(cpu, r);
      const exp = x[2] & 0x7fff;
      if (exp === 0x7fff || unsupported(x)) tag = 2;
      else if (exp === 0) tag = (x[0] | x[1]) === 0 ? 1 : 2;
      else tag = 0;
    }
    t |= tag << (2 * r);
  }
  return t;
}

function realLayout(cpu: Interpreter): boolean {
  return !cpu.pm || (cpu.eflags & FL_VM) !== 0;
}

/** the environment image for the current mode and operand size */
function envImage(cpu: Interpreter, wide: boolean): Uint8Array {
  const img = new Uint8Array(wide ? 28 : 14);
  const dv = new DataView(img.buffer);
  const fip = 0;
  const fdp = 0;
  const fop = 0;
  const real = realLayout(cpu);
  if (wide) {
    dv.setUint32(0, (RESERVED | cpu.fpuCw) >>> 0, true);
    dv.setUint32(4, (RESERVED | status(cpu)) >>> 0, true);
    dv.setUint32(8, (RESERVED | fullTag(cpu)) >>> 0, true);
    if (real) {
      dv.setUint32(12, (RESERVED | (fip & 0xffff)) >>> 0, true);
      dv.setUint32(16, ((fop & 0x7ff) | ((fip >>> 16) << 12)) >>> 0, true);
      dv.setUint32(20, (RESERVED | (fdp & 0xffff)) >>> 0, true);
      dv.setUint32(24, ((fdp >>> 16) << 12) >>> 0, true);
    } else {
      dv.setUint32(12, fip, true);
      dv.setUint32(16, (fop & 0x7ff) << 16, true); // FCS 0 (deprecated), FOP above it
      dv.setUint32(20, fdp, true);
      dv.setUint32(24, RESERVED >>> 0, true); // FDS 0
    }
  } else {
    dv.setUint16(0, cpu.fpuCw, true);
    dv.setUint16(2, status(cpu), true);
    dv.setUint16(4, fullTag(cpu), true);
    dv.setUint16(6, fip & 0xffff, true);
    dv.setUint16(8, real ? (fop & 0x7ff) | (((fip >>> 16) & 0xf) << 12) : 0, true);
    dv.setUint16(10, fdp & 0xffff, true);
    dv.setUint16(12, real ? ((fdp >>> 16) & 0xf) << 12 : 0, true);
  }
  return img;
}

/** loads FCW, FSW (TOP) and the tag word from an environment image (pointers are not kept) */
function loadEnv(cpu: Interpreter, img: Uint8Array): void {
  const dv = new DataView(img.buffer, img.byteOffset);
  const wide = img.length >= 28;
  const cw = dv.getUint16(0, true);
  const sw = dv.getUint16(wide ? 4 : 2, true);
  const tag = dv.getUint16(wide ? 8 : 4, true);
  cpu.fpuCw = cw & FCW_BITS;
  cpu.fpuSw = sw & ~0x3800;
  cpu.fpuTop = (sw >> 11) & 7;
  // only "empty" is taken from the tag word: the other tags follow from the registers' contents
  let valid = 0;
  for (let r = 0; r < 8; r++) if (((tag >> (2 * r)) & 3) !== 3) valid |= 1 << r;
  cpu.fpuTag = (cpu.fpuTag & RAW_ALL) | valid;
  syncSummary(cpu);
}

function writeImage(cpu: Interpreter, img: Uint8Array): void {
  const ea = checkOperand(cpu, img.length, true);
  const dv = new DataView(img.buffer);
  for (let o = 0; o < img.length; o += 4) {
    const lin = cpu.addLin(ea, o);
    if (img.length - o >= 4) cpu.wr32(lin, dv.getInt32(o, true));
    else cpu.wr16(lin, dv.getUint16(o, true));
  }
}

function readImage(cpu: Interpreter, bytes: number): Uint8Array {
  const ea = checkOperand(cpu, bytes, false);
  const img = new Uint8Array(bytes);
  const dv = new DataView(img.buffer);
  for (let o = 0; o < bytes; o += 4) {
    const lin = cpu.addLin(ea, o);
    if (bytes - o >= 4) dv.setUint32(o, cpu.rd32(lin), true);
    else dv.setUint16(o, cpu.rd16(lin), true);
  }
  return img;
}

/** a 16-bit operand size selects the 14/94-byte formats; 32 and 64 the 28/108-byte ones */
function wide(cpu: Interpreter): boolean {
  return cpu.osz !== 16;
}

/** FNSTENV: stores the environment, then masks every exception */
export function fnstenv(cpu: Interpreter): void {
  writeImage(cpu, envImage(cpu, wide(cpu)));
  cpu.fpuCw |= 0x3f;
}

export function fldenv(cpu: Interpreter): void {
  loadEnv(cpu, readImage(cpu, wide(cpu) ? 28 : 14));
}

/** FNSAVE: environment, then ST(0)..ST(7) as 80-bit values; then the FPU is reinitialised (FNINIT) */
export function fnsave(cpu: Interpreter): void {
  const env = envImage(cpu, wide(cpu));
  const img = new Uint8Array(env.length + 80);
  img.set(env);
  const dv = new DataView(img.buffer);
  for (let k = 0; k < 8; k++) {
    const [lo, hi, se] = physF80(cpu, (cpu.fpuTop + k) & 7);
    const at = env.length + 10 * k;
    dv.setUint32(at, lo, true);
    dv.setUint32(at + 4, hi, true);
    dv.setUint16(at + 8, se, true);
  }
  writeImage(cpu, img);
  fninit(cpu);
}

export function frstor(cpu: Interpreter): void {
  const envBytes = wide(cpu) ? 28 : 14;
  const img = readImage(cpu, envBytes + 80);
  const dv = new DataView(img.buffer);
  loadEnv(cpu, img.subarray(0, envBytes));
  for (let k = 0; k < 8; k++) {
    const at = envBytes + 10 * k;
    const x: F80 = [dv.getUint32(at, true), dv.getUint32(at + 4, true), dv.getUint16(at + 8, true)];
    setPhysF80(cpu, (cpu.fpuTop + k) & 7, x);
  }
}

export function fninit(cpu: Interpreter): void {
  cpu.fpuCw = 0x37f;
  cpu.fpuSw = 0;
  cpu.fpuTop = 0;
  // the registers keep their contents (FXSAVE still shows them), only the tags change
  cpu.fpuTag &= RAW_ALL;
}
