// The x87 FPU: every D8-DF form of the SDM's opcode map (Vol. 2 A.4), with stack faults, masked
// responses, the ES summary and #MF before waiting instructions, condition codes as each instruction
// states them. This file decodes and runs the memory forms; the themes live beside it: x87-regforms
// (register forms), x87-regs (register stack, exceptions, NaNs), x87-arith (arithmetic, comparisons,
// FXAM), x87-inexact (PE and C1), x87-math (FPREM, FSCALE, FXTRACT, transcendentals), x87-formats
// (memory formats), x87-env (FSTENV/FLDENV/FSAVE/FRSTOR), x87-fxsave (FXSAVE, MMX view).
//
// Values are kept as doubles (53-bit significands instead of 64, exponents of the double range):
// - results are rounded to double precision whatever FCW.PC says (PC = single rounds to float too),
//   and to nearest whatever FCW.RC says (but for the sign of an exact zero sum); RC is honoured by
//   integer, BCD and m32 stores and FRNDINT;
// - values beyond the double range become infinities or zeros (no OE/UE for register results);
//   80-bit denormals and pseudo-denormals load as zeros of their sign; FLD m80 / FSTP m80
//   round-trip every value a double holds, infinities, and NaNs (exactly when negative, else down
//   to the 52nd payload bit); unnormals, pseudo-NaNs and pseudo-infinities load as the indefinite
//   unless their sign/exponent is 0xFFFF (then exactly, as MMX values are kept);
// - PE and C1 ("rounded up") come from the double result: FADD/FSUB/FMUL/FDIV/FSQRT report them
//   where the double is inexact (a CPU's 64-bit result may be exact there), stores to m32, integer
//   and BCD stores and FRNDINT exactly; the transcendentals and constants report neither;
// - transcendentals come from the host's libm (x87-math.ts says how they may differ);
// - FIP/FCS/FOP/FDP/FDS are not kept: FSTENV/FSAVE/FXSAVE store them as zero;
// - where the SDM leaves a flag undefined (C1 after FFREE, FCOMI's C1) the host CPU's choice is
//   followed (x87-host.test.ts and x87-differential.test.ts compare against it).

import { CpuFault, Vec } from "./faults.js";
import { FL_CF, FL_PF, FL_ZF } from "./flags.js";
import type { Interpreter } from "./interpreter.js";
import {
  binary,
  compareCc,
  compareUnderflow,
  f80Operand,
  numOperand,
  type Operand,
  regOperand,
} from "./x87-arith.js";
import { fldenv, fnsave, fnstenv, frstor } from "./x87-env.js";
import {
  loadBcd,
  loadConverted,
  loadF80,
  loadInt,
  readDenormal,
  readReal,
  roundRc,
  storeBcd,
  storeF80,
  storeIndefiniteReal,
  storeInt,
  storeReal,
} from "./x87-formats.js";
import { load, registerForm, ud } from "./x87-regforms.js";
import {
  canPush,
  checkPending,
  DE,
  empty,
  type F80,
  FCW_BITS,
  fromF80,
  indefinite,
  physF80,
  physOf,
  pop,
  pushSlot,
  setPhysF80,
  signal,
  status,
  syncSummary,
  underflow,
} from "./x87-regs.js";

export { fxImage, fxrstor, fxsave, loadFxImage, mmGet, mmSet } from "./x87-fxsave.js";
export { roundRc };

function nm(cpu: Interpreter): void {
  if ((cpu.cr0 & 0xc) !== 0) throw new CpuFault(Vec.NM, undefined);
}

/** WAIT/FWAIT (9B): #NM when CR0.MP and CR0.TS are both set, then any pending unmasked exception */
export function fwait(cpu: Interpreter): void {
  if ((cpu.cr0 & 0xa) === 0xa) throw new CpuFault(Vec.NM, undefined);
  checkPending(cpu);
}

/** the control instructions that do not check for pending exceptions (FN* forms) */
function noWait(b: number, reg: number, mem: boolean, i: number): boolean {
  if (mem) return (b === 0xd9 || b === 0xdd) && reg >= 6;
  return (b === 0xdb && reg === 4 && (i === 2 || i === 3)) || (b === 0xdf && reg === 4 && i === 0);
}

export function x87(cpu: Interpreter, b: number): void {
  cpu.modrm(0);
  nm(cpu);
  const reg = cpu.reg & 7;
  const mem = cpu.mod !== 3;
  const i = cpu.rm & 7;
  if (!noWait(b, reg, mem, i)) checkPending(cpu);
  if (mem) memoryForm(cpu, b, reg);
  else registerForm(cpu, b, reg, i);
}

// ------------------------------------------------------------------ helpers

function realOperand(x: F80): Operand {
  return f80Operand(x, fromF80(x[0], x[1], x[2]));
}

/**
 * D8/DC/DA/DE with a memory operand: ST(0) op src, or a comparison (/2, /3 pops). A denormal
 * source raises DE after stack faults and when no operand is a NaN (SDM Vol. 1 4.9.2).
 */
function arithMemory(cpu: Interpreter, reg: number, src: Operand, denormal = false): void {
  const cmp = reg === 2 || reg === 3;
  if (empty(cpu, 0)) {
    if (cmp) {
      if (compareUnderflow(cpu, false) && reg === 3) pop(cpu);
    } else if (!underflow(cpu)) indefinite(cpu, physOf(cpu, 0));
    return;
  }
  const a = regOperand(cpu, 0);
  if (denormal && a.bits === null && src.bits === null && signal(cpu, DE)) return;
  if (cmp) {
    if (compareCc(cpu, a, src, false) && reg === 3) pop(cpu);
  } else binary(cpu, reg, 0, a, src);
}

function loadExact(cpu: Interpreter, x: F80): void {
  if (canPush(cpu)) setPhysF80(cpu, pushSlot(cpu), x);
}
/** FLD m32/m64: the operand is read, then the stack checked, then the value converted */
function loadReal(cpu: Interpreter, size: 32 | 64): void {
  const x = readReal(cpu, size);
  const denormal = readDenormal;
  if (!canPush(cpu)) return;
  const v = loadConverted(cpu, x, denormal);
  if (v !== null) setPhysF80(cpu, pushSlot(cpu), v);
}

/** FIST/FISTP/FISTTP */
function storeInteger(cpu: Interpreter, size: 16 | 32 | 64, truncate: boolean, andPop: boolean): void {
  const rc = truncate ? 3 : (cpu.fpuCw >> 10) & 3;
  if (empty(cpu, 0)) {
    if (!underflow(cpu) && storeInt(cpu, size, Number.NaN, rc) && andPop) pop(cpu);
    return;
  }
  if (storeInt(cpu, size, regOperand(cpu, 0).v, rc) && andPop) pop(cpu);
}

/** FST/FSTP m32/m64/m80 */
function storeFloat(cpu: Interpreter, size: 32 | 64 | 80, andPop: boolean): void {
  if (empty(cpu, 0)) {
    if (underflow(cpu)) return;
    storeIndefiniteReal(cpu, size);
  } else if (size === 80) storeF80(cpu, physF80(cpu, physOf(cpu, 0)));
  else {
    const a = regOperand(cpu, 0);
    if (!storeReal(cpu, size, a.v, a.bits)) return;
  }
  if (andPop) pop(cpu);
}

// ------------------------------------------------------------------ memory forms

function memoryForm(cpu: Interpreter, b: number, reg: number): void {
  switch (b) {
    case 0xd8:
    case 0xdc: {
      const x = readReal(cpu, b === 0xd8 ? 32 : 64);
      arithMemory(cpu, reg, realOperand(x), readDenormal);
      return;
    }
    case 0xda:
    case 0xde:
      arithMemory(cpu, reg, numOperand(loadInt(cpu, b === 0xda ? 32 : 16)));
      return;
    case 0xd9:
      switch (reg) {
        case 0: {
          loadReal(cpu, 32);
          return;
        }
        case 2:
        case 3:
          storeFloat(cpu, 32, reg === 3);
          return;
        case 4:
          fldenv(cpu);
          return;
        case 5:
          cpu.eaAccess(2, false);
          cpu.fpuCw = cpu.rd16(cpu.ea) & FCW_BITS;
          syncSummary(cpu);
          return;
        case 6:
          fnstenv(cpu);
          return;
        case 7:
          cpu.eaAccess(2, true);
          cpu.wr16(cpu.ea, cpu.fpuCw);
          return;
        default:
          ud();
      }
      return;
    case 0xdb:
      switch (reg) {
        case 0:
          load(cpu, loadInt(cpu, 32));
          return;
        case 1:
        case 2:
        case 3:
          storeInteger(cpu, 32, reg === 1, reg !== 2);
          return;
        case 5:
          loadExact(cpu, loadF80(cpu));
          return;
        case 7:
          storeFloat(cpu, 80, true);
          return;
        default:
          ud();
      }
      return;
    case 0xdd:
      switch (reg) {
        case 0: {
          loadReal(cpu, 64);
          return;
        }
        case 1:
          storeInteger(cpu, 64, true, true);
          return;
        case 2:
        case 3:
          storeFloat(cpu, 64, reg === 3);
          return;
        case 4:
          frstor(cpu);
          return;
        case 6:
          fnsave(cpu);
          return;
        case 7:
          cpu.eaAccess(2, true);
          cpu.wr16(cpu.ea, status(cpu));
          return;
        default:
          ud();
      }
      return;
    default:
      // DF
      switch (reg) {
        case 0:
          load(cpu, loadInt(cpu, 16));
          return;
        case 1:
        case 2:
        case 3:
          storeInteger(cpu, 16, reg === 1, reg !== 2);
          return;
        case 4:
          load(cpu, loadBcd(cpu));
          return;
        case 5:
          load(cpu, loadInt(cpu, 64));
          return;
        case 6: {
          if (empty(cpu, 0)) {
            if (!underflow(cpu) && storeBcd(cpu, Number.NaN, null)) pop(cpu);
            return;
          }
          const a = regOperand(cpu, 0);
          if (storeBcd(cpu, a.v, a.bits)) pop(cpu);
          return;
        }
        default:
          storeInteger(cpu, 64, false, true);
      }
  }
}

/** COMISS/COMISD-style EFLAGS from two doubles (SSE uses it) */
export function comi(cpu: Interpreter, a: number, b: number): void {
  let f = 0;
  if (Number.isNaN(a) || Number.isNaN(b)) f = FL_ZF | FL_PF | FL_CF;
  else if (a < b) f = FL_CF;
  else if (a === b) f = FL_ZF;
  cpu.patchFlags(0x8d5, f);
}
