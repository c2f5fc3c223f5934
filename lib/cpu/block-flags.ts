// Lazy flags at compile time, for the block compiler (block-compile.ts). Inside a compiled block the
// op that last set the arithmetic flags is known when the block is compiled, so its operands and
// result stay in locals of the generated function and a Jcc computes the one flag it needs from
// them, with the kind and size as constants. The state is converted to the CPU's lazy-flag fields
// (flags.ts) only where something else can observe it: before a call out of the block, on a path
// that may fault, and at exits.
//
// Locals, for 32- and 64-bit ops all int32 (V8 keeps them in machine registers; carries and
// borrows are computed without branches, which matters: a carry depends on the data, so a branch
// on it is mispredicted half the time):
//   fa fb fr     operands and result (low halves)          fah fbh frh  high halves (64-bit)
//   fc           carry/borrow in (ADC/SBB)                  fcl          carry/borrow out of the low half (64-bit)
//   fcf          CF kept by INC/DEC, or set by a shift   fof          OF set by a shift
// 8- and 16-bit ops keep the CPU's own representation (operands masked, raw unmasked result). Shifts
// (kind LZ_RES) keep their result in fr/frh and CF/OF in fcf/fof.

import { LZ_ADD, LZ_DEC, LZ_INC, LZ_LOGIC, LZ_RES, LZ_SUB } from "./flags.js";

/** the flags are in the CPU (whatever ran before the block, or an op the block called) */
export const IN_CPU = -1;

/**
 * kind: IN_CPU or the LZ_* kind of the op that produced them (ADD SUB LOGIC INC DEC RES); size
 * 8/16/32/64; carry: the op added or subtracted a carry in (ADC/SBB, held in fc)
 */
export interface StaticFlags {
  kind: number;
  size: number;
  carry: boolean;
}

export const inCpu = (): StaticFlags => ({ kind: IN_CPU, size: 0, carry: false });

/** the flag locals the generated function declares */
export const FLAG_LOCALS =
  "let fa = 0, fb = 0, fr = 0, fah = 0, fbh = 0, frh = 0, fc = 0, fcl = 0, fcf = 0, fof = 0;";

/** carry out of the top bit of a + b (+ carry in) = r, as 0 or 1 */
export const carryOut = (a: string, b: string, r: string): string =>
  `((((${a}) & (${b})) | (((${a}) | (${b})) & ~(${r}))) >>> 31)`;
/** borrow out of the top bit of a - b (- borrow in) = r, as 0 or 1 */
export const borrowOut = (a: string, b: string, r: string): string =>
  `(((~(${a}) & (${b})) | ((~(${a}) | (${b})) & (${r}))) >>> 31)`;

/** CF as 0 or 1 */
export function cf01(f: StaticFlags): string {
  const w = f.size === 64;
  switch (f.kind) {
    case LZ_ADD:
      if (f.size <= 16) return `((fr >>> ${f.size}) & 1)`;
      return w ? carryOut("fah", "fbh", "frh") : carryOut("fa", "fb", "fr");
    case LZ_SUB:
      if (f.size <= 16) return "(fr >>> 31)";
      return w ? borrowOut("fah", "fbh", "frh") : borrowOut("fa", "fb", "fr");
    case LZ_LOGIC:
      return "0";
    case LZ_INC:
    case LZ_DEC:
    case LZ_RES:
      return "fcf";
    default:
      return "lazyCf(cpu)";
  }
}

function zf(f: StaticFlags): string {
  if (f.size === 8) return "((fr & 0xff) === 0)";
  if (f.size === 16) return "((fr & 0xffff) === 0)";
  return f.size === 32 ? "(fr === 0)" : "((fr | frh) === 0)";
}

function sf(f: StaticFlags): string {
  if (f.size === 8) return "((fr & 0x80) !== 0)";
  if (f.size === 16) return "((fr & 0x8000) !== 0)";
  return f.size === 32 ? "(fr < 0)" : "(frh < 0)";
}

function of(f: StaticFlags): string {
  const [a, b, r] = f.size === 64 ? ["fah", "fbh", "frh"] : ["fa", "fb", "fr"];
  const m = f.size === 8 ? "0x80" : f.size === 16 ? "0x8000" : "0x80000000";
  switch (f.kind) {
    case LZ_ADD:
    case LZ_INC:
      return `(((${a} ^ ${r}) & (${b} ^ ${r}) & ${m}) !== 0)`;
    case LZ_SUB:
    case LZ_DEC:
      return `(((${a} ^ ${b}) & (${a} ^ ${r}) & ${m}) !== 0)`;
    case LZ_RES:
      return "(fof !== 0)";
    default:
      return "false";
  }
}

/** condition code 0..15 (Jcc/SETcc/CMOVcc encoding) as a boolean expression */
export function condExpr(f: StaticFlags, cc: number): string {
  if (f.kind === IN_CPU) return `condition(cpu, ${cc})`;
  const cf = `(${cf01(f)} !== 0)`;
  let r: string;
  switch (cc >> 1) {
    case 0:
      r = of(f);
      break;
    case 1:
      r = cf;
      break;
    case 2:
      r = zf(f);
      break;
    case 3:
      r = `(${cf} || ${zf(f)})`;
      break;
    case 4:
      r = sf(f);
      break;
    case 5:
      r = "(PARITY[fr & 0xff] !== 0)";
      break;
    case 6:
      r = `(${sf(f)} !== ${of(f)})`;
      break;
    default:
      r = `(${zf(f)} || ${sf(f)} !== ${of(f)})`;
  }
  return (cc & 1) === 0 ? r : `!${r}`;
}

/** statements that store the state into the CPU's lazy-flag fields (flags.ts representation) */
export function flagSync(f: StaticFlags): string {
  if (f.kind === IN_CPU) return "";
  const head = `cpu.fOp = ${f.kind}; cpu.fSize = ${f.size};`;
  if (f.kind === LZ_LOGIC) return `${head} cpu.fRes = fr >>> 0; cpu.fResHi = ${f.size === 64 ? "frh" : "0"};`;
  if (f.kind === LZ_RES)
    return `${head} cpu.fRes = fr >>> 0; cpu.fResHi = ${f.size === 64 ? "frh" : "0"}; cpu.fA = 0; cpu.fB = 0; cpu.fCf = fcf; cpu.fOf = fof; cpu.fAf = 0;`;
  const incDec = f.kind === LZ_INC || f.kind === LZ_DEC;
  const cf = incDec ? " cpu.fCf = fcf;" : "";
  if (f.size <= 16) return `${head} cpu.fA = fa; cpu.fB = fb; cpu.fRes = fr;${cf}`;
  if (incDec) {
    const wide = f.size === 64 ? " cpu.fAHi = fah; cpu.fBHi = 0; cpu.fResHi = frh;" : "";
    return `${head} cpu.fA = fa >>> 0; cpu.fB = 1; cpu.fRes = fr >>> 0;${wide}${cf}`;
  }
  // ADD/SUB: the raw (unmasked) sums the lazy evaluator derives CF from
  const pm = f.kind === LZ_ADD ? "+" : "-";
  const raw = `(fa >>> 0) ${pm} (fb >>> 0)${f.carry ? ` ${pm} fc` : ""}`;
  const wide =
    f.size === 64
      ? ` cpu.fAHi = fah; cpu.fBHi = fbh; cpu.fResHi = (fah >>> 0) ${pm} (fbh >>> 0) ${pm} fcl;`
      : "";
  return `${head} cpu.fA = fa >>> 0; cpu.fB = fb >>> 0; cpu.fRes = ${raw};${wide}`;
}

/** statements that load the locals from the CPU after an op of kind/size ran outside the block */
export function flagReload(f: StaticFlags): string {
  if (f.kind === IN_CPU) return "";
  if (f.kind === LZ_LOGIC) return `fr = cpu.fRes | 0; frh = ${f.size === 64 ? "cpu.fResHi | 0" : "0"};`;
  if (f.kind === LZ_RES)
    return `fr = cpu.fRes | 0; frh = ${f.size === 64 ? "cpu.fResHi | 0" : "0"}; fcf = cpu.fCf; fof = cpu.fOf;`;
  const incDec = f.kind === LZ_INC || f.kind === LZ_DEC;
  const cf = incDec ? " fcf = cpu.fCf;" : "";
  if (f.size <= 16) return `fa = cpu.fA; fb = cpu.fB; fr = cpu.fRes;${cf}`;
  let s = `fa = cpu.fA | 0; fb = cpu.fB | 0; fr = cpu.fRes | 0;${cf}`;
  if (f.size === 64) s += " fah = cpu.fAHi | 0; fbh = cpu.fBHi | 0; frh = cpu.fResHi | 0;";
  if (!incDec) {
    const add = f.kind === LZ_ADD;
    if (f.carry) s += add ? " fc = cpu.fRes - cpu.fA - cpu.fB;" : " fc = cpu.fA - cpu.fB - cpu.fRes;";
    if (f.size === 64) s += add ? " fcl = cpu.fRes > 0xffffffff ? 1 : 0;" : " fcl = cpu.fRes < 0 ? 1 : 0;";
  }
  return s;
}
