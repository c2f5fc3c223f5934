// MMX: the 64-bit integer SIMD forms of 0F 60-7F, C4/C5 and D1-FE without a 66/F2/F3 prefix
// (the SSE-era additions PSHUFW, PINSRW/PEXTRW, PMOVMSKB, PAVG, PMIN/PMAX, PSADBW, PMULUDQ,
// PADDQ/PSUBQ, MASKMOVQ and MOVNTQ included), EMMS, and MOVQ2DQ/MOVDQ2Q (the conversions
// CVTPI2PS & co are in sse.ts). mm0-7 are the x87 physical registers R0-R7 (x87.ts keeps them).
// Every MMX instruction that completes leaves TOP = 0 and all tags valid, except EMMS, which
// leaves TOP = 0 and all tags empty. The lane arithmetic is shared with SSE2 (mmx-lanes.ts).

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";
import { byteSignMask, dst, laneOp, laneShift, shuffleWords, src } from "./mmx-lanes.js";
import { mmGet, mmSet } from "./x87.js";

const TWO32 = 4294967296;
const dU8 = new Uint8Array(dst.buffer);
const dU16 = new Uint16Array(dst.buffer);
const sU16 = new Uint16Array(src.buffer);

/** opcodes (0F xx) with an MMX form when no 66/F2/F3 prefix is present */
const MMX_OPS = new Uint8Array(256);
for (let op = 0x60; op <= 0x7f; op++) MMX_OPS[op] = op <= 0x6b || op >= 0x6e ? 1 : 0;
for (const op of [0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d]) MMX_OPS[op] = 0;
MMX_OPS[0xc4] = 1;
MMX_OPS[0xc5] = 1;
for (let op = 0xd1; op <= 0xfe; op++) MMX_OPS[op] = op === 0xd6 || op === 0xe6 || op === 0xf0 ? 0 : 1;

/** the unprefixed 0F opcode belongs to MMX (mmx() raises #UD for those without an MMX form) */
export function isMmxOpcode(op: number): boolean {
  return (op >= 0x60 && op <= 0x7f) || op === 0xc4 || op === 0xc5 || op >= 0xd1;
}

function ud(): never {
  throw new CpuFault(Vec.UD, undefined);
}

/**
 * The checks every MMX instruction makes before it runs: CR0.EM -> #UD, CR0.TS -> #NM, then a
 * pending x87 exception (FSW.ES) -> #MF. With CR0.NE = 0 the CPU would signal FERR# to an external
 * interrupt controller instead, which this interpreter does not model: the instruction just runs.
 */
export function checkMmx(cpu: Interpreter): void {
  if ((cpu.cr0 & 4) !== 0) ud();
  if ((cpu.cr0 & 8) !== 0) throw new CpuFault(Vec.NM, undefined);
  if ((cpu.fpuSw & 0x80) !== 0 && (cpu.cr0 & 0x20) !== 0) throw new CpuFault(Vec.MF, undefined);
}

/** the x87-to-MMX transition, once the instruction can no longer fault */
export function enterMmx(cpu: Interpreter): void {
  cpu.fpuTop = 0;
  cpu.fpuTag |= 0xff;
}

/** the mm/m64 source operand into src[0..1] */
function loadSrc(cpu: Interpreter): void {
  if (cpu.mod === 3) {
    mmGet(cpu, cpu.rm & 7, src, 0);
    return;
  }
  cpu.eaAccess(8, false);
  src[0] = cpu.rd64(cpu.ea);
  src[1] = cpu.vh;
}

export function mmx(cpu: Interpreter, op: number): void {
  if (MMX_OPS[op] === 0) ud();
  if (op === 0x77) {
    // EMMS: TOP = 0 as for the others (what the CPU does), all registers empty
    checkMmx(cpu);
    cpu.fpuTop = 0;
    cpu.fpuTag &= ~0xff;
    return;
  }
  const hasImm = op === 0x70 || (op >= 0x71 && op <= 0x73) || op === 0xc4 || op === 0xc5;
  cpu.modrm(hasImm ? 1 : 0);
  const r = cpu.reg & 7;
  const m = cpu.rm & 7;
  const reg3 = cpu.mod === 3;
  // encodings that are #UD whatever the machine state
  if (!reg3 && (op === 0xc5 || op === 0xd7 || op === 0xf7 || (op >= 0x71 && op <= 0x73))) ud();
  if (reg3 && op === 0xe7) ud();
  if (op >= 0x71 && op <= 0x73 && !shiftKindValid(op, r)) ud();
  checkMmx(cpu);
  switch (op) {
    case 0x6e: {
      // MOVD mm, r/m32 / MOVQ mm, r/m64 (REX.W)
      const wide = cpu.osz === 64;
      const lo = cpu.readRM(wide ? 64 : 32);
      const hi = wide ? cpu.vh : 0;
      enterMmx(cpu);
      mmSet(cpu, r, lo, hi);
      return;
    }
    case 0x7e: {
      // MOVD r/m32, mm / MOVQ r/m64, mm
      mmGet(cpu, r, src, 0);
      if (cpu.osz === 64) cpu.writeRM(64, src[0] >>> 0, src[1]);
      else cpu.writeRM(32, src[0] >>> 0, 0);
      enterMmx(cpu);
      return;
    }
    case 0x6f:
      loadSrc(cpu);
      enterMmx(cpu);
      mmSet(cpu, r, src[0], src[1]);
      return;
    case 0x7f:
    case 0xe7:
      // MOVQ mm/m64, mm; MOVNTQ m64, mm (the hint changes nothing here)
      mmGet(cpu, r, src, 0);
      if (reg3) {
        enterMmx(cpu);
        mmSet(cpu, m, src[0], src[1]);
        return;
      }
      cpu.eaAccess(8, true);
      cpu.wr64(cpu.ea, src[0], src[1]);
      enterMmx(cpu);
      return;
    case 0x70: {
      // PSHUFW mm, mm/m64, imm8
      loadSrc(cpu);
      shuffleWords(cpu.fetch8(), 0);
      enterMmx(cpu);
      mmSet(cpu, r, dst[0], dst[1]);
      return;
    }
    case 0x71:
    case 0x72:
    case 0x73: {
      const count = cpu.fetch8();
      mmGet(cpu, m, dst, 0);
      laneShift(op === 0x71 ? 16 : op === 0x72 ? 32 : 64, r === 2 ? 0 : r === 4 ? 1 : 2, count, 8);
      enterMmx(cpu);
      mmSet(cpu, m, dst[0], dst[1]);
      return;
    }
    case 0xc4: {
      // PINSRW mm, r32/m16, imm8
      const v = cpu.readRM(16);
      const k = cpu.fetch8() & 3;
      mmGet(cpu, r, dst, 0);
      dU16[k] = v;
      enterMmx(cpu);
      mmSet(cpu, r, dst[0], dst[1]);
      return;
    }
    case 0xc5: {
      // PEXTRW r32/r64, mm, imm8
      const k = cpu.fetch8() & 3;
      mmGet(cpu, m, src, 0);
      cpu.setReg(cpu.osz === 64 ? 64 : 32, cpu.reg, sU16[k], 0);
      enterMmx(cpu);
      return;
    }
    case 0xd7:
      // PMOVMSKB r32/r64, mm
      mmGet(cpu, m, src, 0);
      cpu.setReg(cpu.osz === 64 ? 64 : 32, cpu.reg, byteSignMask(8), 0);
      enterMmx(cpu);
      return;
    case 0xf7:
      // MASKMOVQ mm1, mm2
      mmGet(cpu, r, dst, 0);
      mmGet(cpu, m, src, 0);
      maskedStore(cpu, 8);
      enterMmx(cpu);
      return;
    default:
      loadSrc(cpu);
      mmGet(cpu, r, dst, 0);
      if (!laneOp(op, 8)) ud();
      enterMmx(cpu);
      mmSet(cpu, r, dst[0], dst[1]);
  }
}

/** 0F 71/72: /2 /4 /6; 0F 73: /2 /6 (/3 and /7 exist only for xmm) */
function shiftKindValid(op: number, kind: number): boolean {
  return kind === 2 || kind === 6 || (kind === 4 && op !== 0x73);
}

/**
 * MASKMOVQ / MASKMOVDQU: the bytes of `dst` whose byte in `src` has its top bit set, stored to
 * DS:rDI (segment override allowed) at the address size. A zero mask touches no memory.
 */
export function maskedStore(cpu: Interpreter, bytes: number): void {
  const mask = byteSignMask(bytes);
  if (mask === 0) return;
  const asz = cpu.asz;
  const seg = cpu.segOv >= 0 ? cpu.segOv : 3;
  const off =
    asz === 64 ? cpu.hi[7] * TWO32 + (cpu.lo[7] >>> 0) : asz === 32 ? cpu.lo[7] >>> 0 : cpu.lo[7] & 0xffff;
  const lin = cpu.effBase[seg] + off;
  cpu.eaSeg = seg;
  cpu.eaOff = off;
  cpu.ea = cpu.mode64 ? lin : lin >>> 0;
  cpu.eaChk = 1;
  cpu.eaAccess(bytes, true);
  cpu.probeWrite(cpu.ea, bytes);
  for (let i = 0; i < bytes; i++) if ((mask & (1 << i)) !== 0) cpu.wr8(cpu.addLin(cpu.ea, i), dU8[i]);
}

/** MOVQ2DQ xmm, mm (F3 0F D6) and MOVDQ2Q mm, xmm (F2 0F D6): SSE checks are done, ModRM decoded */
export function mmxLinkForm(cpu: Interpreter): void {
  if (cpu.rep === 0 || cpu.mod !== 3) ud();
  checkMmx(cpu);
  const x = cpu.xmm;
  if (cpu.rep === 0xf3) {
    const d = cpu.reg * 4;
    mmGet(cpu, cpu.rm & 7, x, d);
    x[d + 2] = 0;
    x[d + 3] = 0;
  } else {
    const s = cpu.rm * 4;
    mmSet(cpu, cpu.reg & 7, x[s], x[s + 1]);
  }
  enterMmx(cpu);
}
