// The JIT: a block that has run often becomes one JavaScript function. Every fast op kind
// (block-ops.ts) is emitted inline with its operands as constants; only generic ops call the
// single-step executor.
//
// Inside the function the guest registers the block touches live in JS locals (r<n> for the low
// half, h<n> for the high half, loaded at entry) and the lazy flags in the locals of
// block-flags.ts, with the producing op's kind and size known at compile time. Everything is
// written back to the CPU ("sync") only where it can be observed: before a generic op, on the slow
// path of a memory access (a TLB miss: a fill that may fault, MMIO; a write that hits the bytes of
// cached blocks; an offset past the segment's bound, where segCheck decides), and at every exit.
// A sync writes RIP and `retired` as they are before the op, so a fault leaves the state exactly
// as single-stepping would. After a call out, the locals are reloaded and
// the block exits when codeEpoch moved (code or mappings changed) or a window request appeared.
//
// A block that branches back to its own start and has no generic op loops inside the function
// while the budget allows a whole pass: the first pass runs with the flags in the CPU, the loop
// body (compiled a second time) with the flags the pass leaves in locals. Nothing in such a loop
// can halt, change the mode or ask for an interrupt window except through a slow path, which
// exits; so the budget is the only per-iteration check.

import { type Block, CODE_TAG } from "./block-cache.js";
import {
  borrowOut,
  carryOut,
  cf01,
  condExpr,
  FLAG_LOCALS,
  flagReload,
  flagSync,
  inCpu,
  type StaticFlags,
} from "./block-flags.js";
import { EaKind, genericOp, hasMem, type Op, OpKind } from "./block-ops.js";
import { kernelOpFlags } from "./block-ops-kernel.js";
import { condition, LZ_ADD, LZ_DEC, LZ_INC, LZ_LOGIC, LZ_RES, LZ_SUB, lazyCf, PARITY } from "./flags.js";
import type { Interpreter } from "./interpreter.js";
import { mulS64, product } from "./mul64.js";

/**
 * Runs the block (repeatedly, for a self-loop, while `budget` instructions allow a whole pass).
 * Returns which exit it left by: 0 fall-through, 1 branch taken at the end, 2 a conditional branch
 * taken before the end (the run loop may chain to the successor without looking at anything else),
 * -1 when the run loop must look at the state.
 */
export type CompiledBlock = (cpu: Interpreter, budget: number) => number;

/**
 * Runs of a block before it is compiled (Interpreter.jitThreshold defaults to this). High on
 * purpose: a compiled block is a new JS function that V8 parses, runs in its own interpreter and
 * optimizes on a background thread, which costs more than the block saves unless it runs tens of
 * thousands of times. Kernel code is mostly blocks run a few hundred times: the Linux lane's boot
 * (`nodevmm run --deterministic`, so the same 1.96 billion instructions each time) took 158 s of
 * CPU at 16, 87 s at 2,000, 65 s at 20,000 and 64 s at 100,000.
 */
export const COMPILE_THRESHOLD = 20_000;

const TWO32 = 4294967296;

/** most instructions a self-loop runs in one call; in its first WARM_CALLS calls, WARM_SLICE */
const LOOP_SLICE = 1 << 16;
const WARM_CALLS = 64;
const WARM_SLICE = 1024;

/**
 * where a generic op that does not end the block reads the segment bases again (blockSource fills
 * in those the block uses): in 64-bit mode a new FS/GS base (WRMSR, WRFSBASE, MOV or POP to FS/GS)
 * leaves codeEpoch as it was (system.ts updateMode)
 */
const SEG_RELOAD = "/*segs*/";

const R = (r: number): string => `r${r}`;
const H = (r: number): string => `h${r}`;

/** registers an op reads or writes, and whether it writes the high half (a 32/64-bit write) */
function regsOf(op: Op): { use: number[]; def: number[]; defHi: boolean } {
  const use: number[] = [];
  if (hasMem(op) && op.eaKind !== EaKind.RipRel) {
    if (op.base >= 0) use.push(op.base);
    if (op.index >= 0) use.push(op.index);
  }
  switch (op.kind) {
    case OpKind.AluRR:
    case OpKind.TestRR:
    case OpKind.MovRR:
    case OpKind.MovxR:
    case OpKind.CmovRR:
      use.push(op.reg, op.rm);
      break;
    case OpKind.SetccR:
      // an 8-bit write: the rest of the register is kept
      return { use: [op.rm], def: [op.rm], defHi: false };
    case OpKind.AluRI:
    case OpKind.TestRI:
    case OpKind.TestMR:
    case OpKind.IncDec:
    case OpKind.ShiftRI:
    case OpKind.MovRI:
    case OpKind.AluRM:
    case OpKind.AluMR:
    case OpKind.Load:
    case OpKind.Store:
    case OpKind.Lea:
    case OpKind.MovxM:
      use.push(op.reg);
      break;
    // the stack ops inline in 64-bit mode (elsewhere their handler runs, and reloads)
    case OpKind.Push:
      return { use: [op.reg, 4], def: [4], defHi: true };
    case OpKind.Pop:
      return { use: [4], def: [op.reg, 4], defHi: true };
    case OpKind.Call:
    case OpKind.Ret:
      return { use: [4], def: [4], defHi: true };
    case OpKind.Imul:
      // inline only with register operands of 32 or 64 bits (Gen.imul)
      if (inlineImul(op))
        return { use: op.sub === 1 ? [op.rm] : [op.reg, op.rm], def: [op.reg], defHi: true };
      break;
  }
  let def: number[] = [];
  const writes =
    ((op.kind === OpKind.AluRR || op.kind === OpKind.AluRI || op.kind === OpKind.AluRM) && op.sub !== 7) ||
    op.kind === OpKind.IncDec ||
    op.kind === OpKind.MovRR ||
    op.kind === OpKind.MovRI ||
    op.kind === OpKind.Load ||
    op.kind === OpKind.Lea ||
    op.kind === OpKind.MovxR ||
    op.kind === OpKind.MovxM ||
    op.kind === OpKind.CmovRR ||
    op.kind === OpKind.ShiftRI;
  if (writes) def = [op.reg];
  return { use, def, defHi: writes && op.size >= 32 };
}

/**
 * the op is a control transfer whose target is known only when it runs (CALL, RET, indirect), or
 * a REP STOS, which leaves RIP at itself while iterations remain
 */
function transfers(op: Op): boolean {
  return (
    op.kind === OpKind.Call ||
    op.kind === OpKind.Ret ||
    op.kind === OpKind.Indirect ||
    op.kind === OpKind.RepStos
  );
}

/** IMUL with register operands of 32 or 64 bits runs inline (others call their handler) */
const inlineImul = (op: Op): boolean => !op.mem && op.size >= 32;

/** the page-offset bound below which an access of `size` bits stays in its page */
const limit = (size: number): number => 0x1000 - (size >> 3) + 1;

/**
 * The block being generated runs over guest memory other threads share (Interpreter.smp): its
 * views are AtomicViews (smp-memory.ts) and an 8-byte access is one access (ld64/st64), not two
 * 4-byte ones. Set by blockSource for the block it generates.
 */
let atomic64 = false;

/** JS source of the little-endian 8-byte read at view m, offset p, into `v` and `vh` */
function read64(): string {
  return atomic64
    ? "const v = m.ld64(p), vh = m.vh;"
    : "const v = m.getInt32(p, true), vh = m.getInt32(p + 4, true);";
}
/** JS source of the little-endian 8-byte write of x, xh at view m, offset p */
function write64(x: string, xh: string): string {
  return atomic64 ? `m.st64(p, ${x}, ${xh});` : `m.setInt32(p, ${x}, true); m.setInt32(p + 4, ${xh}, true);`;
}

/** JS source of the little-endian read of `size` bits at view m, offset p, into `v` (and `vh`) */
function readMem(size: number): string {
  if (size === 8) return "const v = m.getUint8(p);";
  if (size === 16) return "const v = m.getUint16(p, true);";
  if (size === 32) return "const v = m.getInt32(p, true);";
  return read64();
}

/** JS source of the little-endian write of x (and xh) at view m, offset p */
function writeMem(size: number, x: string, xh: string): string {
  if (size === 8) return `m.setUint8(p, ${x});`;
  if (size === 16) return `m.setUint16(p, ${x}, true);`;
  if (size === 32) return `m.setInt32(p, ${x}, true);`;
  return write64(x, xh);
}

/** The 16/32-bit offset of a memory operand as a JS sum (16-bit forms have no scale). */
function offsetSum(op: Op): string {
  let e = String(op.disp);
  if (op.base >= 0) e += ` + ${R(op.base)}`;
  if (op.index >= 0)
    e += op.eaKind === EaKind.A16 ? ` + ${R(op.index)}` : ` + (${R(op.index)} << ${op.scale})`;
  return e;
}

/**
 * A 64-bit address as two exact JS sums, low dwords and high dwords (the offset need not be
 * canonical, so it may not fit a double); the caller folds the carry.
 */
function a64Sums(op: Op): [string, string] {
  let l = String(op.disp);
  let h = "0";
  if (op.base >= 0) {
    l += ` + (${R(op.base)} >>> 0)`;
    h += ` + ${H(op.base)}`;
  }
  if (op.index >= 0) {
    l += ` + (${R(op.index)} >>> 0) * ${1 << op.scale}`;
    h += ` + ${H(op.index)} * ${1 << op.scale}`;
  }
  return [l, h];
}

/**
 * SHL (sub 4) / SHR (5) / SAR (7) of register op.reg by the constant op.imm (1..31, 1..63 for
 * 64 bits) into fr (frh), with CF in fcf and OF in fof, as exec-arith.ts shiftOp computes them
 */
function shift(op: Op): string {
  const c = op.imm;
  const a = R(op.reg);
  const ah = H(op.reg);
  if (op.size === 16) {
    const v = `const a = ${a} & 0xffff;`;
    if (op.sub === 4)
      return `${v} fr = (a << ${c}) & 0xffff; fcf = ${c <= 16 ? `(a >>> ${16 - c}) & 1` : "0"}; fof = (fr >>> 15) ^ fcf; frh = 0;`;
    if (op.sub === 5) return `${v} fr = a >>> ${c}; fcf = (a >>> ${c - 1}) & 1; fof = a >>> 15; frh = 0;`;
    return `${v} const s = (a << 16) >> 16; fr = (s >> ${c}) & 0xffff; fcf = (s >> ${c - 1}) & 1; fof = 0; frh = 0;`;
  }
  if (op.size === 32) {
    const v = `const a = ${a};`;
    if (op.sub === 4)
      return `${v} fr = a << ${c}; fcf = (a >>> ${32 - c}) & 1; fof = (fr >>> 31) ^ fcf; frh = 0;`;
    if (op.sub === 5)
      return `${v} fr = (a >>> ${c}) | 0; fcf = (a >>> ${c - 1}) & 1; fof = a >>> 31; frh = 0;`;
    return `${v} fr = a >> ${c}; fcf = (a >> ${c - 1}) & 1; fof = 0; frh = 0;`;
  }
  const v = `const a = ${a}, ah = ${ah};`;
  if (op.sub === 4) {
    const body =
      c < 32
        ? `fcf = (ah >>> ${32 - c}) & 1; frh = (ah << ${c}) | (a >>> ${32 - c}); fr = a << ${c};`
        : c === 32
          ? "fcf = ah & 1; frh = a; fr = 0;"
          : `fcf = (a >>> ${64 - c}) & 1; frh = a << ${c - 32}; fr = 0;`;
    return `${v} ${body} fof = (frh >>> 31) ^ fcf;`;
  }
  const sar = op.sub === 7;
  const hiShift = sar ? ">>" : ">>>";
  const body =
    c < 32
      ? `fcf = (a >>> ${c - 1}) & 1; fr = (a >>> ${c}) | (ah << ${32 - c}); frh = (ah ${hiShift} ${c}) | 0;`
      : c === 32
        ? `fcf = a >>> 31; fr = ah; frh = ${sar ? "ah >> 31" : "0"};`
        : `fcf = (ah ${hiShift} ${c - 33}) & 1; fr = (ah ${hiShift} ${c - 32}) | 0; frh = ${sar ? "ah >> 31" : "0"};`;
  return `${v} ${body} fof = ${sar ? "0" : "ah >>> 31"};`;
}

class Gen {
  readonly out: string[] = [];
  flags: StaticFlags = inCpu();
  /** registers with locals, registers the block writes (low half / high half) */
  readonly used = new Set<number>();
  readonly dirty = new Set<number>();
  readonly dirtyHi = new Set<number>();
  /** effective-address segments, segment bounds (sR<seg>/sW<seg>) and TLB tables the code refers to */
  readonly segs = new Set<number>();
  readonly bounds = new Set<string>();
  tlbR = false;
  tlbW = false;
  /**
   * " - sk" where the block skips ops (a conditional branch forward to a later op of the block,
   * blockSource): op k then retires as instruction k - sk of the pass
   */
  skew = "";

  constructor(readonly ops: Op[]) {
    for (const op of ops) {
      if (op.kind === OpKind.Generic) continue;
      const { use, def, defHi } = regsOf(op);
      for (const r of use) this.used.add(r);
      for (const r of def) {
        this.used.add(r);
        this.dirty.add(r);
        if (defHi) this.dirtyHi.add(r);
      }
    }
  }

  /** locals -> CPU registers and flags */
  spill(): string {
    let s = "";
    for (const r of this.dirty) s += `lo[${r}] = ${R(r)}; `;
    for (const r of this.dirtyHi) s += `hi[${r}] = ${H(r)}; `;
    return s + flagSync(this.flags);
  }

  /** CPU registers -> locals (all the block uses, or only `regs`) */
  reload(regs: Iterable<number> = this.used): string {
    let s = "";
    for (const r of regs) s += `${R(r)} = lo[${r}]; ${H(r)} = hi[${r}]; `;
    return s;
  }

  /** the whole state as it is before op k (at byte offset off) */
  sync(k: number, off: number): string {
    return `cpu.rip = rip0 + ${off}; cpu.retired = ret + ${k}${this.skew}; ${this.spill()}`;
  }

  /**
   * The slow path of a memory op: sync, run the op's handler (which raises any fault with the
   * state synced), reload, and leave the block when the call changed code, mappings or asked for
   * a window. `after` is the flag state the op leaves. A handler that returns has changed only
   * the registers regsOf names as its defs (a fault, an exit or an MMIO access that needs the
   * host throws past the block), so `defsOnly` reloads just those: every other register keeps
   * its local, and the code after the op does not merge a fresh load of each one. Likewise the
   * flag locals stay as they are when the op leaves the flags as they were (`after` is then the
   * state before it).
   */
  slow(k: number, off: number, after: StaticFlags, defsOnly = false): string {
    const regs = defsOnly ? regsOf(this.ops[k]).def : this.used;
    const flags = defsOnly && after === this.flags ? "" : flagReload(after);
    return `${this.sync(k, off)} f${k}(cpu, o${k}); ${this.reload(regs)}${flags}
if (cpu.codeEpoch !== epoch) { cpu.retired++; return -1; }`;
  }

  /**
   * [statements, expression, condition] of the op's linear address for an access of `bytes`
   * bytes: the fast path also needs the condition (the segment bound of block-ops.ts eaAcc; the
   * handler on the slow path runs segCheck)
   */
  linear(op: Op, off: number, bytes: number, write: boolean): [string, string, string] {
    switch (op.eaKind) {
      case EaKind.A16:
      case EaKind.A32: {
        this.segs.add(op.seg);
        const bound = `s${write ? "W" : "R"}${op.seg}`;
        this.bounds.add(bound);
        const e = offsetSum(op);
        const mask = op.eaKind === EaKind.A16 ? "& 0xffff" : ">>> 0";
        return [
          `const e = (${e}) ${mask};`,
          `((eb${op.seg} + e) >>> 0)`,
          ` && e ${bytes > 1 ? `+ ${bytes - 1} ` : ""}<= ${bound}`,
        ];
      }
      case EaKind.A64: {
        // The offset wrapped to 64 bits, plus the FS/GS base (DS/SS bases are 0 in 64-bit
        // mode). A non-canonical address never equals a TLB tag (only canonical pages are
        // filled; beyond 2^53 the double is inexact but still far outside the canonical range),
        // so it takes the slow path, where the handler applies the canonical rule (#SS(0)
        // through RSP/RBP, #GP(0) otherwise) with the state synced.
        const [l, h] = a64Sums(op);
        const base = op.seg >= 4 ? `eb${op.seg} + ` : "";
        if (op.seg >= 4) this.segs.add(op.seg);
        return [
          `const l = ${l}, hh = ${h};`,
          `(${base}(hh === 0 && l >= 0 && l < ${TWO32} ? l : ((hh + Math.floor(l / ${TWO32})) | 0) * ${TWO32} + (l >>> 0)))`,
          "",
        ];
      }
      default: {
        const base = op.seg >= 4 ? `eb${op.seg} + ` : "";
        if (op.seg >= 4) this.segs.add(op.seg);
        return ["", `(${base}rip0 + ${off + op.len + op.disp})`, ""];
      }
    }
  }

  /** the ALU op `sub` of `size` bits on a (ah) and b (bh); `dst` receives the result (or null) */
  alu(
    sub: number,
    size: number,
    a: string,
    ah: string,
    b: string,
    bh: string,
    dst: (x: string, xh: string) => string,
  ): string {
    const f = this.flags;
    const logic = sub === 1 || sub === 4 || sub === 6;
    const add = sub === 0 || sub === 2;
    const carry = sub === 2 || sub === 3;
    const pm = add ? "+" : "-";
    let s = carry ? `const c = ${cf01(f)}; ` : "";
    if (logic) {
      const o = sub === 1 ? "|" : sub === 4 ? "&" : "^";
      if (size <= 16) s += `fr = (${a} ${o} ${b}) >>> 0; frh = 0;`;
      else s += `fr = ${a} ${o} ${b}; frh = ${size === 64 ? `${ah} ${o} ${bh}` : "0"};`;
    } else if (size <= 16) {
      // the CPU's representation: masked operands, raw result
      s += `fa = ${a}; fb = ${b}; fr = fa ${pm} fb${carry ? ` ${pm} c` : ""};`;
    } else {
      s += `fa = ${a}; fb = ${b};${carry ? " fc = c;" : ""} fr = (fa ${pm} fb${carry ? ` ${pm} fc` : ""}) | 0;`;
      if (size === 64) {
        const out = add ? carryOut("fa", "fb", "fr") : borrowOut("fa", "fb", "fr");
        s += ` fah = ${ah}; fbh = ${bh}; fcl = ${out}; frh = (fah ${pm} fbh ${pm} fcl) | 0;`;
      }
    }
    if (sub !== 7) s += ` ${dst("fr", "frh")}`;
    this.flags = { kind: logic ? LZ_LOGIC : add ? LZ_ADD : LZ_SUB, size, carry };
    return `{ ${s} }`;
  }

  /** the op's immediate as [lo, hi] operands */
  imm(op: Op): [string, string] {
    return op.size <= 16 ? [String(op.imm), "0"] : [String(op.imm | 0), String(op.immHi | 0)];
  }

  /** assignment of x (xh) to register r at `size` bits (8 bits: bits 8-15 when `high`) */
  setReg(size: number, r: number, x: string, xh: string, high = false): string {
    if (size === 8)
      return high
        ? `${R(r)} = (${R(r)} & -65281) | ((${x} & 0xff) << 8);`
        : `${R(r)} = (${R(r)} & -256) | (${x} & 0xff);`;
    if (size === 16) return `${R(r)} = (${R(r)} & -65536) | (${x} & 0xffff);`;
    return `${R(r)} = ${x} | 0; ${H(r)} = ${size === 64 ? `${xh} | 0` : "0"};`;
  }

  /** operand of `size` bits from register r: [lo, hi] (int32 halves; 8/16 bits: zero-extended) */
  getReg(size: number, r: number, high = false): [string, string] {
    if (size === 8) return [high ? `((${R(r)} >> 8) & 0xff)` : `(${R(r)} & 0xff)`, "0"];
    if (size === 16) return [`(${R(r)} & 0xffff)`, "0"];
    return [R(r), size === 64 ? H(r) : "0"];
  }

  /** emits op k (not the final branch) */
  op(op: Op, k: number, off: number): void {
    const out = this.out;
    const size = op.size;
    const d = op.reg;
    switch (op.kind) {
      case OpKind.AluRR:
      case OpKind.AluRI: {
        const [a, ah] = this.getReg(size, d, op.regHi);
        const [b, bh] = op.kind === OpKind.AluRR ? this.getReg(size, op.rm, op.byteHi) : this.imm(op);
        out.push(this.alu(op.sub, size, a, ah, b, bh, (x, xh) => this.setReg(size, d, x, xh, op.regHi)));
        return;
      }
      case OpKind.TestRR:
      case OpKind.TestRI: {
        const [a, ah] = this.getReg(size, d, op.regHi);
        const [b, bh] = op.kind === OpKind.TestRR ? this.getReg(size, op.rm, op.byteHi) : this.imm(op);
        out.push(this.alu(4, size, a, ah, b, bh, () => ""));
        return;
      }
      case OpKind.IncDec: {
        const inc = op.sub === 0;
        const pm = inc ? "+" : "-";
        let s = `fcf = ${cf01(this.flags)}; fb = 1; `;
        if (size === 16)
          s += `fa = ${R(d)} & 0xffff; fr = (fa ${pm} 1) & 0xffff; ${R(d)} = (${R(d)} & -65536) | fr;`;
        else if (size === 32) s += `fa = ${R(d)}; fr = (fa ${pm} 1) | 0; ${R(d)} = fr; ${H(d)} = 0;`;
        else {
          s += `fa = ${R(d)}; fah = ${H(d)}; fbh = 0; fr = (fa ${pm} 1) | 0; `;
          s += inc ? "frh = fr === 0 ? (fah + 1) | 0 : fah;" : "frh = fa === 0 ? (fah - 1) | 0 : fah;";
          s += ` ${R(d)} = fr; ${H(d)} = frh;`;
        }
        this.flags = { kind: inc ? LZ_INC : LZ_DEC, size, carry: false };
        out.push(`{ ${s} }`);
        return;
      }
      case OpKind.MovRR: {
        const [v, vh] = this.getReg(size, op.rm, op.byteHi);
        out.push(this.setReg(size, d, v, vh, op.regHi));
        return;
      }
      case OpKind.MovRI:
        out.push(this.setReg(size, d, String(op.imm), String(op.immHi), op.regHi));
        return;
      case OpKind.Nop:
        return;
      case OpKind.Lea: {
        out.push(`{ ${this.lea(op, off)} }`);
        return;
      }
      case OpKind.ShiftRI:
        out.push(`{ ${shift(op)} ${this.setReg(size, d, "fr", "frh")} }`);
        this.flags = { kind: LZ_RES, size, carry: false };
        return;
      case OpKind.MovxR: {
        const s = R(op.rm);
        const sx = op.sub === 1;
        let v: string;
        if (op.imm === 32) v = `(${s} | 0)`;
        else if (op.imm === 16) v = sx ? `((${s} << 16) >> 16)` : `(${s} & 0xffff)`;
        else if (op.byteHi) v = sx ? `((${s} << 16) >> 24)` : `((${s} >> 8) & 0xff)`;
        else v = sx ? `((${s} << 24) >> 24)` : `(${s} & 0xff)`;
        out.push(`{ const v = ${v}; ${this.setReg(size, d, "v", sx ? "(v >> 31)" : "0")} }`);
        return;
      }
      case OpKind.CmovRR: {
        // a 32-bit CMOV clears the high half even when the condition is false
        const [v, vh] = this.getReg(size, op.rm);
        const c = condExpr(this.flags, op.sub);
        if (size === 32) out.push(`if (${c}) ${R(d)} = ${v}; ${H(d)} = 0;`);
        else out.push(`if (${c}) { ${this.setReg(size, d, v, vh)} }`);
        return;
      }
      case OpKind.SetccR: {
        const r = R(op.rm);
        const sh = op.byteHi ? 8 : 0;
        out.push(`${r} = (${r} & ${~(0xff << sh)}) | ((${condExpr(this.flags, op.sub)} ? 1 : 0) << ${sh});`);
        return;
      }
      case OpKind.Load:
      case OpKind.Store:
      case OpKind.AluRM:
      case OpKind.AluMR:
      case OpKind.AluMI:
      case OpKind.MovxM:
      case OpKind.StoreImm:
      case OpKind.TestMR:
      case OpKind.TestMI:
        out.push(this.memOp(op, k, off));
        return;
      case OpKind.Push:
      case OpKind.Pop:
      case OpKind.Call:
      case OpKind.Ret:
        // inline in 64-bit mode (a flat stack); elsewhere SS.B, limits and wraps are the handler's
        out.push(op.size === 64 ? this.stack(op, k, off) : this.callOut(op, k, off));
        return;
      case OpKind.Imul:
        if (inlineImul(op)) {
          out.push(`{ ${this.imul(op)} ${this.setReg(size, d, "fr", "frh")} }`);
          this.flags = { kind: LZ_RES, size, carry: false };
        } else out.push(this.callOut(op, k, off));
        return;
      case OpKind.Leave:
      case OpKind.Indirect:
      case OpKind.Unary:
      case OpKind.BitOp:
      case OpKind.IncDecM:
      case OpKind.Shift:
      case OpKind.MulDiv:
      case OpKind.Convert:
      case OpKind.Sse:
      case OpKind.Pause:
      case OpKind.Rdtsc:
      case OpKind.RepStos:
      case OpKind.Cmpxchg:
      case OpKind.BitScan:
      case OpKind.DoubleShift:
      case OpKind.MovSreg:
      case OpKind.Swapgs:
        out.push(this.callOut(op, k, off));
        return;
      default: {
        // generic: the executor runs it with the whole state in the CPU. The block goes on (or,
        // after its last op, chains by RIP) unless the op changed what the run loop must look at:
        // code or mappings, a halt, an interrupt shadow, or a requested interrupt/NMI window that
        // may have opened (only where RFLAGS.IF or NMI blocking changed)
        const next = off + op.len;
        const lastOp = k === this.ops.length - 1;
        out.push(
          `${this.sync(k, off)} const w${k} = (cpu.eflags & 0x200) | (cpu.interruptibility & 8); generic(cpu, o${k}); cpu.retired++;`,
          "if (cpu.interruptibility !== 0 && cpu.shadowAt !== cpu.retired) cpu.interruptibility &= ~3;",
          `if (${lastOp ? "" : `cpu.rip !== rip0 + ${next} || `}cpu.codeEpoch !== epoch || cpu.activity !== 0 || (cpu.interruptibility & 3) !== 0 || (cpu.windowRequests !== 0 && ((cpu.eflags & 0x200) | (cpu.interruptibility & 8)) !== w${k})) return -1;`,
          lastOp ? `return cpu.rip === rip0 + ${next} ? 0 : 1;` : `${this.reload()}${SEG_RELOAD}`,
        );
        this.flags = inCpu();
      }
    }
  }

  /**
   * IMUL (register operands) into fr (frh) with CF = OF in fcf and fof, as exec.ts imulTrunc
   * computes them: a double holds a 32 x 32-bit product exactly; 64-bit operands that are
   * zero-extended or sign-extended 32-bit values multiply as doubles, others through mulS64
   */
  imul(op: Op): string {
    const [a, ah] = this.getReg(op.size, op.rm);
    const [b, bh] = op.sub === 1 ? this.imm(op) : this.getReg(op.size, op.reg);
    if (op.size === 32)
      return `const x = ${a}, y = ${b}; fr = Math.imul(x, y); fcf = fr !== x * y ? 1 : 0; fof = fcf; frh = 0;`;
    return `const a = ${a}, ah = ${ah}, b = ${b}, bh = ${bh}; let p = 0;
if ((ah | bh) === 0) { const x = a >>> 0, y = b >>> 0; fr = Math.imul(x, y); frh = Math.round((x * y - (fr >>> 0)) / ${TWO32}) | 0; fcf = frh >>> 31; }
else if (ah === a >> 31 && bh === b >> 31 && (p = a * b) <= 9007199254740992 && p >= -9007199254740992) { fr = p | 0; frh = Math.floor(p / ${TWO32}) | 0; fcf = 0; }
else { fcf = mulS64(a, ah, b, bh) ? 1 : 0; fr = product[0] | 0; frh = product[1] | 0; }
fof = fcf;`;
  }

  lea(op: Op, off: number): string {
    const size = op.size;
    switch (op.eaKind) {
      case EaKind.A16: {
        const e = offsetSum(op);
        return this.setReg(size, op.reg, `((${e}) & 0xffff)`, "0");
      }
      case EaKind.A32: {
        const e = offsetSum(op);
        return this.setReg(size, op.reg, `(${e})`, "0");
      }
      case EaKind.A64: {
        // halves kept apart: the offset need not be canonical, so it may not fit a double
        const [l, h] = a64Sums(op);
        return `const l = ${l}; ${this.setReg(size, op.reg, "l", `(${h} + Math.floor(l / ${TWO32}))`)}`;
      }
      default:
        // RIP-relative: RIP is canonical, so the sum is exact
        return `const a = rip0 + ${off + op.len + op.disp}; ${this.setReg(size, op.reg, "a", `Math.floor(a / ${TWO32})`)}`;
    }
  }

  /**
   * An op whose compiled form is its handler (exact, no decoding): the state synced before it,
   * the locals reloaded after it. A control transfer leaves its target in `tgt`.
   */
  callOut(op: Op, k: number, off: number): string {
    const flags =
      op.kind === OpKind.Imul ||
      op.kind === OpKind.BitOp ||
      op.kind === OpKind.IncDecM ||
      op.kind === OpKind.Shift ||
      op.kind === OpKind.MulDiv ||
      (op.kind === OpKind.Unary && op.sub === 3) ||
      kernelOpFlags(op.kind);
    const after = flags ? inCpu() : this.flags;
    const s = this.slow(k, off, after);
    this.flags = after;
    return `{ ${s}${transfers(op) ? " tgt = cpu.rip;" : ""} }`;
  }

  /**
   * PUSH/POP/CALL/RET in 64-bit mode: the stack slot through the TLB inline (an 8-byte access
   * within a page at a canonical RSP: anything else, a non-canonical RSP (#SS) or a target that
   * is not canonical (#GP) included, goes to the handler with the state synced)
   */
  stack(op: Op, k: number, off: number): string {
    const slow = this.slow(k, off, this.flags, true);
    const slowT = `${slow}${transfers(op) ? " tgt = cpu.rip;" : ""}`;
    const at = "o = lin & 0xfff, i = (lin >>> 12) & 0xfff";
    const lim = limit(64);
    if (op.kind === OpKind.Push || op.kind === OpKind.Call) {
      this.tlbW = true;
      const value =
        op.kind === OpKind.Push
          ? `const vl = ${R(op.reg)}, vh = ${H(op.reg)};`
          : `const ra = rip0 + ${off + op.len}, vl = ra | 0, vh = Math.floor(ra / ${TWO32}) | 0;`;
      const done = op.kind === OpKind.Call ? ` tgt = rip0 + ${off + op.len + op.imm};` : "";
      return `{ ${value} const nl = (r4 - 8) | 0, nh = (r4 >>> 0) < 8 ? (h4 - 1) | 0 : h4;
const lin = nh * ${TWO32} + (nl >>> 0), ${at}; let tg;
if (((tg = tlbWTag[i]) === lin - o || (tg === lin - o + ${CODE_TAG} && !tlbWCode[i].covers(o, 8))) && o < ${lim}) { const m = tlbWView[i], p = tlbWOff[i] + o; ${write64("vl", "vh")} r4 = nl; h4 = nh;${done} }
else { ${slowT} } }`;
    }
    this.tlbR = true;
    const rsp = `const lin = h4 * ${TWO32} + (r4 >>> 0), ${at};`;
    if (op.kind === OpKind.Pop) {
      return `{ ${rsp}
if (tlbRTag[i] === lin - o && o < ${lim}) { const m = tlbRView[i], p = tlbROff[i] + o; ${read64()} h4 = (r4 >>> 0) >= 0xfffffff8 ? (h4 + 1) | 0 : h4; r4 = (r4 + 8) | 0; ${R(op.reg)} = v; ${H(op.reg)} = vh; }
else { ${slow} } }`;
    }
    return `{ ${rsp} let t = Number.NaN;
if (tlbRTag[i] === lin - o && o < ${lim}) { const m = tlbRView[i], p = tlbROff[i] + o; ${read64()} t = vh * ${TWO32} + (v >>> 0); }
if (t >= -140737488355328 && t < 140737488355328) { const a = (r4 >>> 0) + ${8 + op.imm}; h4 = (h4 + Math.floor(a / ${TWO32})) | 0; r4 = a | 0; tgt = t; }
else { ${slowT} } }`;
  }

  /** a load, store or ALU op with a memory operand: TLB hit inline, the handler on a miss */
  memOp(op: Op, k: number, off: number): string {
    const size = op.size;
    const kind = op.kind;
    const rmw = (kind === OpKind.AluMR || kind === OpKind.AluMI) && op.sub !== 7;
    const write = kind === OpKind.Store || kind === OpKind.StoreImm || rmw;
    // bits accessed: MOVZX/MOVSX read their source width
    const width = kind === OpKind.MovxM ? op.imm : size;
    const [pre, lin, inSeg] = this.linear(op, off, width >> 3, write);
    if (write) this.tlbW = true;
    else this.tlbR = true;
    const t = write ? "W" : "R";
    const flagsBefore = this.flags;
    let body: string;
    const d = op.reg;
    switch (kind) {
      case OpKind.Load:
        body = `${readMem(size)} ${this.setReg(size, d, "v", "vh", op.regHi)}`;
        break;
      case OpKind.Store: {
        const [x, xh] = this.getReg(size, d, op.regHi);
        body = writeMem(size, x, xh);
        break;
      }
      case OpKind.StoreImm: {
        const [x, xh] = this.imm(op);
        body = writeMem(size, x, xh);
        break;
      }
      case OpKind.MovxM: {
        const sx = op.sub === 1;
        const get =
          op.imm === 8
            ? sx
              ? "getInt8"
              : "getUint8"
            : op.imm === 32
              ? "getInt32"
              : sx
                ? "getInt16"
                : "getUint16";
        body = `const v = m.${get}(p${op.imm === 8 ? "" : ", true"}); ${this.setReg(size, d, "v", sx ? "(v >> 31)" : "0")}`;
        break;
      }
      case OpKind.TestMR:
      case OpKind.TestMI: {
        const [b, bh] = kind === OpKind.TestMR ? this.getReg(size, d, op.regHi) : this.imm(op);
        body = `${readMem(size)} ${this.alu(4, size, "v", size === 64 ? "vh" : "0", b, bh, () => "")}`;
        break;
      }
      case OpKind.AluRM: {
        const [a, ah] = this.getReg(size, d, op.regHi);
        body = `${readMem(size)} ${this.alu(op.sub, size, a, ah, "v", size === 64 ? "vh" : "0", (x, xh) => this.setReg(size, d, x, xh, op.regHi))}`;
        break;
      }
      default: {
        const [b, bh] = kind === OpKind.AluMR ? this.getReg(size, d, op.regHi) : this.imm(op);
        body = `${readMem(size)} ${this.alu(op.sub, size, "v", size === 64 ? "vh" : "0", b, bh, (x, xh) => writeMem(size, `(${x} | 0)`, `(${xh} | 0)`))}`;
      }
    }
    const after = this.flags;
    // the slow path syncs the flags as they were before the op
    this.flags = flagsBefore;
    const slow = this.slow(k, off, after, true);
    this.flags = after;
    // a write to a page with cached blocks (a checked entry: tag + CODE_TAG) that misses their bytes
    // needs nothing more; one that hits them goes to the handler, which drops them
    const hit = write
      ? `((tg = tlbWTag[i]) === lin - o || (tg === lin - o + ${CODE_TAG} && !tlbWCode[i].covers(o, ${width >> 3})))`
      : `tlbRTag[i] === lin - o`;
    return `{ ${pre}const lin = ${lin}, o = lin & 0xfff, i = (lin >>> 12) & 0xfff;${write ? " let tg;" : ""}
if (${hit} && o < ${limit(width)}${inSeg}) { const m = tlb${t}View[i], p = tlb${t}Off[i] + o; ${body} }
else { ${slow} } }`;
  }

  /**
   * exit with the state synced after the whole pass; `rip` is the next RIP, `which` the exit's
   * number (block-chain.ts), -1 after a generic op (the run loop must look at the state)
   */
  exit(n: number, rip: string, which: string): string {
    return `{ ${this.spill()} cpu.rip = ${rip}; cpu.retired = ret + ${n}${this.skew}; return ${which}; }`;
  }
}

/**
 * For a conditional branch at op k of a block in 64-bit code whose target is where a later op j
 * of the block starts (j at most `straight`, the final branch): j; else -1. The ops between run
 * only when it is not taken. (64-bit only: there RIP neither wraps nor meets a segment limit
 * within the block, so the target is that op whichever path led there.)
 */
function joinOf(ops: Op[], starts: number[], k: number, straight: number): number {
  const op = ops[k];
  if (op.kind !== OpKind.Jcc || op.size !== 64 || k >= straight || op.imm < 0) return -1;
  const t = starts[k] + op.len + op.imm;
  for (let j = k + 1; j <= straight && j < ops.length; j++) {
    if (starts[j] === t) return j;
    if (starts[j] > t) return -1;
  }
  return -1;
}

/** the body of the block's function (compileBlock), for tests and for reading */
export function blockSource(blk: Block, atomic = false): string {
  atomic64 = atomic;
  const ops = blk.ops;
  const n = ops.length;
  const g = new Gen(ops);
  const last = ops[n - 1];
  const branch = last.kind === OpKind.Jcc || last.kind === OpKind.Jmp;
  const straight = branch ? n - 1 : n;
  // where each op starts and the last one ends, from the block's start (a JMP before the end goes
  // on at its target)
  const starts: number[] = [];
  let end = 0;
  for (let k = 0; k < n; k++) {
    starts.push(end);
    end += ops[k].len + (k < n - 1 && ops[k].kind === OpKind.Jmp ? ops[k].imm : 0);
  }
  const joins = ops.map((_, k) => joinOf(ops, starts, k, straight));
  if (joins.some((j) => j >= 0)) g.skew = " - sk";
  /** a branch target as its operand size wraps it */
  const wrap = (t: string, size = last.size): string =>
    size === 64 ? t : size === 16 ? `((${t}) & 0xffff)` : `((${t}) >>> 0)`;
  const target = branch ? wrap(`rip0 + ${end + last.imm}`) : "";
  // a spin loop's PAUSE leaves the function each pass, as a generic op's block does: the run loop
  // and the chain then ask the host for interrupts (another vCPU's IPI) at the same pace as before
  const loops =
    branch && end + last.imm === 0 && ops.every((o) => o.kind !== OpKind.Generic && o.kind !== OpKind.Pause);

  /**
   * One pass over the ops before the branch. A conditional branch forward to a later op of the
   * block skips the ops between (an `if` around them), so the taken path stays in the function.
   * Where the two paths meet, their flag states differ when the skipped ops set flags: each path
   * then stores its own into the CPU.
   */
  const pass = (): void => {
    let off = 0;
    const open: { join: number; taken: StaticFlags; skipped: number }[] = [];
    const close = (k: number): void => {
      while (open.length > 0 && open[open.length - 1].join <= k) {
        const h = open.pop()!;
        const fall = g.flags;
        const t = h.taken;
        if (fall.kind === t.kind && fall.size === t.size && fall.carry === t.carry)
          g.out.push(`} else sk += ${h.skipped};`);
        else {
          g.out.push(`${flagSync(fall)} } else { sk += ${h.skipped}; ${flagSync(t)} }`);
          g.flags = inCpu();
        }
      }
    };
    for (let k = 0; k < straight; k++) {
      close(k);
      const op = ops[k];
      off += op.len;
      if (op.kind === OpKind.Jmp) {
        // a JMP forward that the block goes on after (buildBlock): nothing but the new offset
        off += op.imm;
        continue;
      }
      if (op.kind === OpKind.Jcc) {
        const j = joins[k];
        if (j >= 0 && (open.length === 0 || j <= open[open.length - 1].join)) {
          g.out.push(`if (!(${condExpr(g.flags, op.sub)})) {`);
          open.push({ join: j, taken: g.flags, skipped: j - k - 1 });
          continue;
        }
        // a side exit: taken, the block ends here
        const to = wrap(`rip0 + ${off + op.imm}`, op.size);
        g.out.push(`if (${condExpr(g.flags, op.sub)}) ${g.exit(k + 1, to, "2")}`);
      } else g.op(op, k, off - op.len);
    }
    close(straight);
  };
  const taken = (): string => (last.kind === OpKind.Jmp ? "true" : condExpr(g.flags, last.sub));
  // exits: 0 falls through, 1 takes the branch (or a CALL/RET/indirect transfer, to `tgt`); a
  // generic op returns -1 itself where the run loop must look at the state

  pass();
  if (transfers(last)) g.out.push(g.exit(n, "tgt", "1"));
  else if (!branch) {
    // a generic op at the end has synced everything and returned
    if (last.kind !== OpKind.Generic) g.out.push(g.exit(n, `rip0 + ${end}`, "0"));
  } else if (!loops) {
    g.out.push(`{ const t = ${taken()}; ${g.exit(n, `t ? ${target} : rip0 + ${end}`, "t ? 1 : 0")} }`);
  } else {
    const back = (): string =>
      `{ const t = ${taken()}; left -= ${n}${g.skew}; if (!t || left < ${n}) ${g.exit(n, `t ? rip0 : rip0 + ${end}`, "t ? 1 : 0")} ret += ${n}${g.skew};${g.skew === "" ? "" : " sk = 0;"} }`;
    g.out.push(back(), "for (;;) {");
    pass();
    g.out.push(back(), "}");
  }

  const head: string[] = [
    "const lo = cpu.lo, hi = cpu.hi, epoch = cpu.codeEpoch, rip0 = cpu.rip;",
    // a loop returns every LOOP_SLICE instructions (and block-chain.ts calls it again): V8 then
    // optimizes the function as a whole instead of running on-stack-replaced code (slower) for
    // the whole budget. The first calls return sooner, so that every path (the exits too) has
    // type feedback before V8 optimizes the function (otherwise the first exit deoptimizes it).
    `const slice = warm < ${WARM_CALLS} ? (warm++, ${WARM_SLICE}) : ${LOOP_SLICE};`,
    "let ret = cpu.retired, left = budget < slice ? budget : slice;",
    g.skew === "" ? "" : "let sk = 0;",
    FLAG_LOCALS,
  ];
  if (transfers(last)) head.push("let tgt = 0;");
  for (const s of g.segs) head.push(`let eb${s} = cpu.effBase[${s}];`);
  // segment loads change the bounds only through generic ops, after which the block leaves when
  // codeEpoch moved (updateMode bumps it); a base that changes alone (FS/GS in 64-bit mode) is
  // read again after each generic op, and SWAPGS (a call out) ends its block
  for (const b of g.bounds) head.push(`const ${b} = cpu.segFast${b[1]}[${b.slice(2)}];`);
  for (const t of [g.tlbR ? "R" : "", g.tlbW ? "W" : ""]) {
    if (t !== "")
      head.push(
        `const tlb${t}Tag = cpu.tlb${t}Tag, tlb${t}View = cpu.tlb${t}View, tlb${t}Off = cpu.tlb${t}Off;${t === "W" ? " const tlbWCode = cpu.tlbWCode;" : ""}`,
      );
  }
  if (g.used.size > 0)
    head.push(`let ${[...g.used].map((r) => `${R(r)} = lo[${r}], ${H(r)} = hi[${r}]`).join(", ")};`);

  const segReload = [...g.segs].map((s) => ` eb${s} = cpu.effBase[${s}];`).join("");
  return `${head.join("\n")}\n${g.out.join("\n").replaceAll(SEG_RELOAD, segReload)}`;
}

export function compileBlock(blk: Block, atomic = false): CompiledBlock {
  const ops = blk.ops;
  const factory = new Function(
    "generic",
    "ops",
    "lazyCf",
    "condition",
    "PARITY",
    "mulS64",
    "product",
    `"use strict";
const [${ops.map((_, k) => `o${k}`).join(", ")}] = ops;
const [${ops.map((_, k) => `f${k}`).join(", ")}] = ops.map((o) => o.fn);
let warm = 0;
return function block(cpu, budget) {
${blockSource(blk, atomic)}
};`,
  ) as (
    generic: typeof genericOp,
    ops: Op[],
    cf: typeof lazyCf,
    cond: typeof condition,
    parity: typeof PARITY,
    mul: typeof mulS64,
    prod: typeof product,
  ) => CompiledBlock;
  return factory(genericOp, ops, lazyCf, condition, PARITY, mulS64, product);
}
