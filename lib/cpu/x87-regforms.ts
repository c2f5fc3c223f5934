// The x87 register forms (D8-DF with mod = 3): arithmetic between stack registers, compares into
// FSW and EFLAGS, FCMOVcc, FLD/FST/FXCH/FFREE on registers, constants, and the D9 E0-FF group.

import { CpuFault, Vec } from "./faults.js";
import type { Interpreter } from "./interpreter.js";
import {
  binary,
  compareCc,
  compareFlags,
  compareUnderflow,
  fxam,
  numOperand,
  regOperand,
  unary,
} from "./x87-arith.js";
import { fninit } from "./x87-env.js";
import { roundRc } from "./x87-formats.js";
import { f2xm1, fpatan, fprem, fscale, fsqrt, fxtract, fyl2x, trig, trigPush } from "./x87-math.js";
import {
  C1,
  canPush,
  copyPhys,
  empty,
  indefinite,
  PE,
  physF80,
  physOf,
  pop,
  push,
  pushSlot,
  setPhysF80,
  signal,
  status,
  swapPhys,
  underflow,
} from "./x87-regs.js";

export function ud(): never {
  throw new CpuFault(Vec.UD, undefined);
}

/** a value loaded onto the stack (FLD, FILD, FBLD, constants) */
export function load(cpu: Interpreter, v: number): void {
  if (canPush(cpu)) push(cpu, v);
}

/** FST/FSTP ST(i) */
function storeReg(cpu: Interpreter, i: number, andPop: boolean): void {
  cpu.fpuSw &= ~C1;
  const to = physOf(cpu, i);
  if (empty(cpu, 0)) {
    if (underflow(cpu)) return;
    indefinite(cpu, to);
  } else copyPhys(cpu, physOf(cpu, 0), to);
  cpu.fpuTag |= 1 << to;
  if (andPop) pop(cpu);
}

/** FXCH ST(i): an empty side counts as the indefinite when IE is masked */
function exchange(cpu: Interpreter, i: number): void {
  cpu.fpuSw &= ~C1;
  const a = physOf(cpu, 0);
  const b = physOf(cpu, i);
  if (empty(cpu, 0) || empty(cpu, i)) {
    if (underflow(cpu)) return;
    for (const r of [a, b]) {
      if ((cpu.fpuTag & (1 << r)) === 0) indefinite(cpu, r);
      cpu.fpuTag |= 1 << r;
    }
  }
  swapPhys(cpu, a, b);
}

/** register-form comparisons: FCOM(P) (D8, DC, DE aliases), FUCOM(P), FCOMI(P), FUCOMI(P) */
function compareReg(cpu: Interpreter, i: number, unordered: boolean, flags: boolean, pops: number): void {
  let done: boolean;
  if (empty(cpu, 0) || empty(cpu, i)) done = compareUnderflow(cpu, flags);
  else {
    const a = regOperand(cpu, 0);
    const b = regOperand(cpu, i);
    done = flags ? compareFlags(cpu, a, b, unordered) : compareCc(cpu, a, b, unordered);
  }
  if (!done) return;
  for (let k = 0; k < pops; k++) pop(cpu);
}

/** D8 (ST(0) := ST(0) op ST(i)) and DC/DE (ST(i) := ST(i) op ST(0), DE pops) */
function arithReg(cpu: Interpreter, op: number, i: number, toSti: boolean, andPop: boolean): void {
  const dst = toSti ? i : 0;
  if (empty(cpu, 0) || empty(cpu, i)) {
    if (underflow(cpu)) return;
    indefinite(cpu, physOf(cpu, dst));
    if (andPop) pop(cpu);
    return;
  }
  const s0 = regOperand(cpu, 0);
  const si = regOperand(cpu, i);
  // DC/DE name sub/subr and div/divr the other way round (the destination is ST(i))
  const ok = toSti ? binary(cpu, op < 4 ? op : op ^ 1, i, si, s0) : binary(cpu, op, 0, s0, si);
  if (ok && andPop) pop(cpu);
}

/** FCMOVcc: ST(0) := ST(i) when the EFLAGS condition holds */
function fcmov(cpu: Interpreter, cc: number, i: number): void {
  if (empty(cpu, 0) || empty(cpu, i)) {
    if (!underflow(cpu)) {
      indefinite(cpu, physOf(cpu, 0));
      cpu.fpuTag |= 1 << physOf(cpu, 0);
    }
    return;
  }
  if (cpu.cond(cc)) copyPhys(cpu, physOf(cpu, i), physOf(cpu, 0));
}

/** FCHS / FABS: the sign bit alone, also of NaNs (no exception) */
function signOp(cpu: Interpreter, abs: boolean): void {
  if (empty(cpu, 0)) {
    if (!underflow(cpu)) indefinite(cpu, physOf(cpu, 0));
    return;
  }
  cpu.fpuSw &= ~C1;
  const r = physOf(cpu, 0);
  const x = physF80(cpu, r);
  setPhysF80(cpu, r, [x[0], x[1], abs ? x[2] & 0x7fff : x[2] ^ 0x8000]);
}

function frndint(cpu: Interpreter): void {
  let inexact = false;
  let up = false;
  const rc = (cpu.fpuCw >> 10) & 3;
  const done = unary(cpu, (x) => {
    const r = roundRc(x, rc);
    if (Number.isFinite(x) && r !== x) {
      inexact = true;
      up = Math.abs(r) > Math.abs(x);
    }
    return r;
  });
  if (done && inexact) {
    signal(cpu, PE);
    if (up) cpu.fpuSw |= C1;
  }
}

// ------------------------------------------------------------------ register forms

/** FLD1, FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2, FLDZ (D9 E8-EE) */
const CONSTANTS = [1, Math.log2(10), Math.LOG2E, Math.PI, Math.LOG10E * Math.LN2, Math.LN2, 0];

export function registerForm(cpu: Interpreter, b: number, reg: number, i: number): void {
  switch (b) {
    case 0xd8:
      if (reg === 2 || reg === 3) compareReg(cpu, i, false, false, reg - 2);
      else arithReg(cpu, reg, i, false, false);
      return;
    case 0xdc:
    case 0xde:
      if (reg === 2 || reg === 3) {
        // DC D0-DF and DE D0-D7 are aliases of FCOM/FCOMP; DE D9 is FCOMPP
        if (b === 0xde && reg === 3) {
          if (i !== 1) ud();
          compareReg(cpu, 1, false, false, 2);
        } else compareReg(cpu, i, false, false, b === 0xde ? 1 : reg - 2);
      } else arithReg(cpu, reg, i, true, b === 0xde);
      return;
    case 0xd9:
      d9Register(cpu, reg, i);
      return;
    case 0xda:
      if (reg < 4) fcmov(cpu, [2, 4, 6, 10][reg], i);
      else if (reg === 5 && i === 1) compareReg(cpu, 1, true, false, 2);
      else ud();
      return;
    case 0xdb:
      if (reg < 4) fcmov(cpu, [3, 5, 7, 11][reg], i);
      else if (reg === 4) {
        if (i === 2)
          cpu.fpuSw &= 0x7f00; // FNCLEX
        else if (i === 3) fninit(cpu);
        else if (i > 4) ud();
        // E0 FENI, E1 FDISI, E4 FSETPM: 8087/287 controls that later FPUs execute as FNOP
      } else if (reg === 5 || reg === 6) compareReg(cpu, i, reg === 5, true, 0);
      else ud();
      return;
    case 0xdd:
      switch (reg) {
        case 0:
          // FFREE: C0-C3 are undefined; C1 = 0 as the host CPU leaves it
          cpu.fpuTag &= ~(1 << physOf(cpu, i));
          cpu.fpuSw &= ~C1;
          return;
        case 1:
          exchange(cpu, i);
          return;
        case 2:
        case 3:
          storeReg(cpu, i, reg === 3);
          return;
        case 4:
        case 5:
          compareReg(cpu, i, true, false, reg - 4);
          return;
        default:
          ud();
      }
      return;
    default:
      // DF
      switch (reg) {
        case 0:
          // FFREEP
          cpu.fpuTag &= ~(1 << physOf(cpu, i));
          cpu.fpuSw &= ~C1;
          pop(cpu);
          return;
        case 1:
          exchange(cpu, i);
          return;
        case 2:
        case 3:
          storeReg(cpu, i, true);
          return;
        case 4:
          if (i !== 0) ud();
          cpu.setReg(16, 0, status(cpu), 0);
          return;
        case 5:
        case 6:
          compareReg(cpu, i, reg === 5, true, 1);
          return;
        default:
          ud();
      }
  }
}

function d9Register(cpu: Interpreter, reg: number, i: number): void {
  switch (reg) {
    case 0: {
      cpu.fpuSw &= ~C1;
      if (empty(cpu, i)) {
        // masked: the indefinite is pushed without a check for overflow (as the host CPU does)
        if (!underflow(cpu)) indefinite(cpu, pushSlot(cpu));
        return;
      }
      const from = physOf(cpu, i);
      if (canPush(cpu)) copyPhys(cpu, from, pushSlot(cpu));
      return;
    }
    case 1:
      exchange(cpu, i);
      return;
    case 2:
      if (i !== 0) ud();
      return; // FNOP
    case 3:
      storeReg(cpu, i, true); // FSTP1 (D9 D8-DF), an alias of DD D8-DF
      return;
    case 4:
      switch (i) {
        case 0:
          signOp(cpu, false);
          return;
        case 1:
          signOp(cpu, true);
          return;
        case 4:
          if (empty(cpu, 0)) compareUnderflow(cpu, false);
          else compareCc(cpu, regOperand(cpu, 0), numOperand(0), false);
          return;
        case 5:
          fxam(cpu);
          return;
        default:
          ud();
      }
      return;
    case 5:
      if (i === 7) ud();
      cpu.fpuSw &= ~C1;
      load(cpu, CONSTANTS[i]);
      return;
    case 6:
      switch (i) {
        case 0:
          f2xm1(cpu);
          return;
        case 1:
          if (fyl2x(cpu, false)) pop(cpu);
          return;
        case 2:
          trigPush(cpu, false);
          return;
        case 3:
          if (fpatan(cpu)) pop(cpu);
          return;
        case 4:
          fxtract(cpu);
          return;
        case 5:
          fprem(cpu, true);
          return;
        case 6:
          cpu.fpuTop = (cpu.fpuTop - 1) & 7;
          cpu.fpuSw &= ~C1;
          return;
        default:
          cpu.fpuTop = (cpu.fpuTop + 1) & 7;
          cpu.fpuSw &= ~C1;
      }
      return;
    default:
      switch (i) {
        case 0:
          fprem(cpu, false);
          return;
        case 1:
          if (fyl2x(cpu, true)) pop(cpu);
          return;
        case 2:
          fsqrt(cpu);
          return;
        case 3:
          trigPush(cpu, true);
          return;
        case 4:
          frndint(cpu);
          return;
        case 5:
          fscale(cpu);
          return;
        case 6:
          trig(cpu, Math.sin);
          return;
        default:
          trig(cpu, Math.cos);
      }
  }
}
