// First step of the JIT: a block that has run often becomes one JavaScript function. The hottest
// op kinds (register ALU, INC/DEC, 32/64-bit loads and stores, Jcc/JMP) are emitted inline with
// their operands as constants; every other op calls its handler (one handler per call site, so V8
// inlines it) or, for generic ops, the single-step executor.
//
// Exactness: RIP and `retired` are written back before anything that can fault, call out, or end
// the block, so a fault leaves RIP at the faulting instruction and `retired` counting exactly the
// ops before it; ops that only touch registers and lazy flags are not observable until then.
// The generated code follows the handlers in block-ops.ts line by line (same lazy-flag encoding).

import type { Block } from "./block-cache.js";
import { EaKind, genericOp, type Op, OpKind } from "./block-ops.js";
import { condition, lazyCf, lazyZf } from "./flags.js";
import type { Interpreter } from "./interpreter.js";

/** runs the block (repeatedly, for a self-loop, while `budget` instructions allow a whole pass) */
export type CompiledBlock = (cpu: Interpreter, budget: number) => void;

/** runs of a block before it is compiled (Interpreter.jitThreshold defaults to this) */
export const COMPILE_THRESHOLD = 16;

const TWO32 = 4294967296;

/** JS expression for the op's linear address (mirrors block-ops.ts ea()) */
function eaExpr(op: Op): string {
  switch (op.eaKind) {
    case EaKind.A16: {
      const parts = [String(op.disp)];
      if (op.base >= 0) parts.push(`lo[${op.base}]`);
      if (op.index >= 0) parts.push(`lo[${op.index}]`);
      return `((cpu.effBase[${op.seg}] + ((${parts.join(" + ")}) & 0xffff)) >>> 0)`;
    }
    case EaKind.A32: {
      const parts = [String(op.disp)];
      if (op.base >= 0) parts.push(`lo[${op.base}]`);
      if (op.index >= 0) parts.push(`(lo[${op.index}] << ${op.scale})`);
      return `((cpu.effBase[${op.seg}] + ((${parts.join(" + ")}) >>> 0)) >>> 0)`;
    }
    case EaKind.A64: {
      const l = [String(op.disp)];
      const h = ["0"];
      if (op.base >= 0) {
        l.push(`(lo[${op.base}] >>> 0)`);
        h.push(`hi[${op.base}]`);
      }
      if (op.index >= 0) {
        l.push(`(lo[${op.index}] >>> 0) * ${1 << op.scale}`);
        h.push(`hi[${op.index}] * ${1 << op.scale}`);
      }
      // common case first: a non-negative offset below 4 GiB needs no carry folding
      // a non-canonical stack reference is #SS(0) (block-ops.ts ea())
      const slow = op.seg === 2 ? "cpu.canon(ea64(l, h), 2)" : "ea64(l, h)";
      return `LH const l = ${l.join(" + ")}, h = ${h.join(" + ")}; LH (h === 0 && l >= 0 && l < 4294967296 ? l : ${slow})`;
    }
    default:
      return `(rip0 + ${op.len} + ${op.disp} + OFF)`;
  }
}

/** [statements to put first, expression] for the op's linear address at block offset `off` */
function linDecl(op: Op, off: number): [string, string] {
  const e = eaExpr(op).replace("OFF", String(off));
  if (!e.startsWith("LH ")) return ["", e];
  const [, pre, expr] = e.split("LH ");
  return [pre, expr];
}

/** inline source of a register-only op, or null */
function regOp(op: Op): string | null {
  const d = op.reg;
  const s = op.rm;
  const w = op.sub !== 7;
  if (op.kind === OpKind.AluRR || op.kind === OpKind.AluRI) {
    if (op.size === 32) {
      const b = op.kind === OpKind.AluRR ? `(lo[${s}] >>> 0)` : String(op.imm);
      const a = `(lo[${d}] >>> 0)`;
      switch (op.sub) {
        case 0:
          return `{ const a = ${a}, b = ${b}, r = a + b; cpu.fOp = 1; cpu.fSize = 32; cpu.fA = a; cpu.fB = b; cpu.fRes = r; lo[${d}] = r; hi[${d}] = 0; }`;
        case 5:
        case 7:
          return `{ const a = ${a}, b = ${b}, r = a - b; cpu.fOp = 2; cpu.fSize = 32; cpu.fA = a; cpu.fB = b; cpu.fRes = r;${w ? ` lo[${d}] = r; hi[${d}] = 0;` : ""} }`;
        case 1:
        case 4:
        case 6: {
          const o = op.sub === 1 ? "|" : op.sub === 4 ? "&" : "^";
          return `{ const r = (${a} ${o} ${b}) >>> 0; cpu.fOp = 3; cpu.fSize = 32; cpu.fRes = r; cpu.fResHi = 0; lo[${d}] = r; hi[${d}] = 0; }`;
        }
        default:
          return null;
      }
    }
    if (op.size === 16) {
      const b = op.kind === OpKind.AluRR ? `(lo[${s}] & 0xffff)` : String(op.imm);
      const a = `(lo[${d}] & 0xffff)`;
      const put = `lo[${d}] = (lo[${d}] & ~0xffff) | (r & 0xffff);`;
      switch (op.sub) {
        case 0:
          return `{ const a = ${a}, b = ${b}, r = a + b; cpu.fOp = 1; cpu.fSize = 16; cpu.fA = a; cpu.fB = b; cpu.fRes = r; ${put} }`;
        case 5:
        case 7:
          return `{ const a = ${a}, b = ${b}, r = a - b; cpu.fOp = 2; cpu.fSize = 16; cpu.fA = a; cpu.fB = b; cpu.fRes = r;${w ? ` ${put}` : ""} }`;
        case 1:
        case 4:
        case 6: {
          const o = op.sub === 1 ? "|" : op.sub === 4 ? "&" : "^";
          return `{ const r = (${a} ${o} ${b}) >>> 0; cpu.fOp = 3; cpu.fSize = 16; cpu.fRes = r; cpu.fResHi = 0; ${put} }`;
        }
        default:
          return null;
      }
    }
    if (op.size === 64) {
      const rr = op.kind === OpKind.AluRR;
      const b = rr ? `(lo[${s}] >>> 0)` : String(op.imm);
      const bh = rr ? `hi[${s}]` : String(op.immHi);
      const head = `const a = (lo[${d}] >>> 0), ah = hi[${d}], b = ${b}, bh = ${bh};`;
      switch (op.sub) {
        case 0:
          return `{ ${head} const r = a + b; const rh = (ah >>> 0) + (bh >>> 0) + (r > 0xffffffff ? 1 : 0); cpu.fOp = 1; cpu.fSize = 64; cpu.fA = a; cpu.fB = b; cpu.fRes = r; cpu.fAHi = ah; cpu.fBHi = bh; cpu.fResHi = rh; lo[${d}] = r; hi[${d}] = rh; }`;
        case 5:
        case 7:
          return `{ ${head} const r = a - b; const rh = (ah >>> 0) - (bh >>> 0) - (r < 0 ? 1 : 0); cpu.fOp = 2; cpu.fSize = 64; cpu.fA = a; cpu.fB = b; cpu.fRes = r; cpu.fAHi = ah; cpu.fBHi = bh; cpu.fResHi = rh;${w ? ` lo[${d}] = r; hi[${d}] = rh;` : ""} }`;
        case 1:
        case 4:
        case 6: {
          const o = op.sub === 1 ? "|" : op.sub === 4 ? "&" : "^";
          return `{ ${head} const r = (a ${o} b) >>> 0; const rh = ah ${o} bh; cpu.fOp = 3; cpu.fSize = 64; cpu.fRes = r; cpu.fResHi = rh; lo[${d}] = r; hi[${d}] = rh; }`;
        }
        default:
          return null;
      }
    }
    return null;
  }
  if (op.kind === OpKind.IncDec) {
    const inc = op.sub === 0;
    if (op.size === 32)
      return `{ const a = lo[${d}] >>> 0; cpu.fCf = lazyCf(cpu); cpu.fOp = ${inc ? 4 : 5}; cpu.fSize = 32; cpu.fA = a; cpu.fB = 1; const m = (a ${inc ? "+" : "-"} 1) >>> 0; cpu.fRes = m; lo[${d}] = m; hi[${d}] = 0; }`;
    if (op.size === 16)
      return `{ const a = lo[${d}] & 0xffff; cpu.fCf = lazyCf(cpu); cpu.fOp = ${inc ? 4 : 5}; cpu.fSize = 16; cpu.fA = a; cpu.fB = 1; const m = (a ${inc ? "+" : "-"} 1) & 0xffff; cpu.fRes = m; lo[${d}] = (lo[${d}] & ~0xffff) | m; }`;
    if (op.size === 64)
      return `{ const a = lo[${d}] >>> 0, ah = hi[${d}]; cpu.fCf = lazyCf(cpu); cpu.fOp = ${inc ? 4 : 5}; cpu.fSize = 64; cpu.fA = a; cpu.fB = 1; cpu.fAHi = ah; cpu.fBHi = 0; const r = a ${inc ? "+" : "-"} 1; const rh = ${inc ? "r > 0xffffffff ? (ah + 1) | 0 : ah" : "r < 0 ? (ah - 1) | 0 : ah"}; cpu.fResHi = rh; cpu.fRes = r >>> 0; lo[${d}] = r; hi[${d}] = rh; }`;
    return null;
  }
  if (op.kind === OpKind.MovRR && op.size !== 16)
    return `lo[${d}] = lo[${s}]; hi[${d}] = ${op.size === 64 ? `hi[${s}]` : "0"};`;
  if (op.kind === OpKind.MovRI && op.size !== 16)
    return `lo[${d}] = ${op.imm | 0}; hi[${d}] = ${op.immHi | 0};`;
  if (op.kind === OpKind.Nop) return "";
  return null;
}

const isLogic = (op: Op): boolean =>
  (op.kind === OpKind.AluRR || op.kind === OpKind.AluRI) && (op.sub === 1 || op.sub === 4 || op.sub === 6);

/** the op is emitted inline and defines the whole lazy-flag state without reading it */
function overwritesFlags(op: Op | undefined): boolean {
  return (
    op !== undefined &&
    (op.kind === OpKind.AluRR || op.kind === OpKind.AluRI) &&
    op.sub !== 2 &&
    op.sub !== 3 &&
    regOp(op) !== null
  );
}

export function compileBlock(blk: Block): CompiledBlock {
  const ops = blk.ops;
  const out: string[] = ["const rip0 = cpu.rip;"];
  // ops retired since `retired` was last written, and whether RIP is current
  let unsynced = 0;
  let ripSynced = true;
  let off = 0;
  const sync = (at: number): void => {
    if (unsynced !== 0) out.push(`cpu.retired += ${unsynced};`);
    if (!ripSynced) out.push(`cpu.rip = rip0 + ${at};`);
    unsynced = 0;
    ripSynced = true;
  };
  let ended = false;
  for (let k = 0; k < ops.length; k++) {
    const op = ops[k];
    const next = off + op.len;
    let reg = regOp(op);
    if (reg !== null) {
      // lazy-flag state the next op replaces before anything can observe it is not written
      if (overwritesFlags(ops[k + 1])) reg = reg.replace(/cpu\.f[A-Za-z]+ = [^;]+;/g, "");
      else if (k > 0 && op.kind === OpKind.IncDec && regOp(ops[k - 1]) !== null) {
        // INC/DEC keep CF: known statically after a logic op (0) or another INC/DEC (unchanged)
        const prev = ops[k - 1];
        if (prev.kind === OpKind.IncDec) reg = reg.replace("cpu.fCf = lazyCf(cpu);", "");
        else if (isLogic(prev)) reg = reg.replace("cpu.fCf = lazyCf(cpu);", "cpu.fCf = 0;");
      }
      out.push(reg);
      unsynced++;
      ripSynced = false;
    } else if ((op.kind === OpKind.Load || op.kind === OpKind.Store) && op.size === 16) {
      sync(off);
      const [pre, lin] = linDecl(op, off);
      if (op.kind === OpKind.Load) {
        out.push(
          `{ ${pre}const lin = ${lin}, o = lin & 0xfff, i = (lin >>> 12) & 0xfff; let v;`,
          "if (cpu.tlbRTag[i] === lin - o && o < 0xfff) { const m = cpu.tlbRMem[i], p = cpu.tlbROff[i] + o; v = m[p] | (m[p + 1] << 8); }",
          `else v = cpu.rd16(lin); lo[${op.reg}] = (lo[${op.reg}] & ~0xffff) | v; }`,
        );
      } else {
        out.push(
          `{ ${pre}const lin = ${lin}, o = lin & 0xfff, i = (lin >>> 12) & 0xfff, v = lo[${op.reg}];`,
          "if (cpu.tlbWTag[i] === lin - o && o < 0xfff) { const m = cpu.tlbWMem[i], p = cpu.tlbWOff[i] + o; m[p] = v; m[p + 1] = v >> 8; }",
          "else cpu.wr16(lin, v); }",
        );
        if (k < ops.length - 1)
          out.push(`if (cpu.codeEpoch !== epoch) { cpu.retired++; cpu.rip = rip0 + ${next}; return; }`);
      }
      unsynced = 1;
      ripSynced = false;
    } else if (op.kind === OpKind.Load || op.kind === OpKind.Store) {
      sync(off);
      const [pre, lin] = linDecl(op, off);
      const n8 = op.size === 64;
      if (op.kind === OpKind.Load) {
        out.push(
          `{ ${pre}const lin = ${lin}, o = lin & 0xfff, i = (lin >>> 12) & 0xfff;`,
          `if (cpu.tlbRTag[i] === lin - o && o < 0xff9) { const m = cpu.tlbRMem[i], p = cpu.tlbROff[i] + o;`,
          `lo[${op.reg}] = m[p] | (m[p + 1] << 8) | (m[p + 2] << 16) | (m[p + 3] << 24);`,
          `hi[${op.reg}] = ${n8 ? "m[p + 4] | (m[p + 5] << 8) | (m[p + 6] << 16) | (m[p + 7] << 24)" : "0"}; }`,
          n8
            ? `else { lo[${op.reg}] = cpu.rd64(lin); hi[${op.reg}] = cpu.vh; } }`
            : `else { lo[${op.reg}] = cpu.rd32(lin); hi[${op.reg}] = 0; } }`,
        );
        unsynced = 1;
        ripSynced = false;
      } else {
        out.push(
          `{ ${pre}const lin = ${lin}, o = lin & 0xfff, i = (lin >>> 12) & 0xfff, v = lo[${op.reg}];`,
          `if (cpu.tlbWTag[i] === lin - o && o < 0xff9) { const m = cpu.tlbWMem[i], p = cpu.tlbWOff[i] + o;`,
          "m[p] = v; m[p + 1] = v >> 8; m[p + 2] = v >> 16; m[p + 3] = v >> 24;",
          n8
            ? `const vh = hi[${op.reg}]; m[p + 4] = vh; m[p + 5] = vh >> 8; m[p + 6] = vh >> 16; m[p + 7] = vh >> 24; }`
            : "}",
          n8 ? `else cpu.wr64(lin, v, hi[${op.reg}]); }` : "else cpu.wr32(lin, v); }",
        );
        if (k < ops.length - 1)
          out.push(`if (cpu.codeEpoch !== epoch) { cpu.retired++; cpu.rip = rip0 + ${next}; return; }`);
        unsynced = 1;
        ripSynced = false;
      }
    } else if (op.kind === OpKind.Jcc || op.kind === OpKind.Jmp) {
      // always the last op
      const wrap = (t: string) => (op.size === 64 ? t : op.size === 16 ? `(${t}) & 0xffff` : `(${t}) >>> 0`);
      const target = wrap(`rip0 + ${next + op.imm}`);
      out.push(`cpu.retired += ${unsynced + 1};`);
      if (op.kind === OpKind.Jmp) out.push(`cpu.rip = ${target};`);
      else {
        const cc = op.sub;
        const prev = k > 0 ? ops[k - 1] : undefined;
        // JZ/JNZ right after an inline op of known size: ZF from the raw result in place
        const zf =
          prev !== undefined &&
          regOp(prev) !== null &&
          prev.kind !== OpKind.MovRR &&
          prev.kind !== OpKind.MovRI &&
          prev.kind !== OpKind.Nop
            ? prev.size === 64
              ? "((cpu.fRes | 0) === 0 && (cpu.fResHi | 0) === 0)"
              : prev.size === 32
                ? "((cpu.fRes | 0) === 0)"
                : "((cpu.fRes & 0xffff) === 0)"
            : null;
        const taken =
          (cc & 0xe) === 4
            ? zf !== null
              ? `${zf} === ${cc === 4}`
              : `(cpu.fOp !== 0 ? lazyZf(cpu) === ${cc === 4} : condition(cpu, ${cc}))`
            : `condition(cpu, ${cc})`;
        out.push(`cpu.rip = ${taken} ? ${target} : rip0 + ${next};`);
      }
      ended = true;
    } else if (op.kind !== OpKind.Generic) {
      sync(off);
      out.push(`f${k}(cpu, o${k});`, "cpu.retired++;");
      if (k < ops.length - 1) out.push("if (cpu.codeEpoch !== epoch) return;");
    } else {
      sync(off);
      out.push(
        `generic(cpu, o${k});`,
        "cpu.retired++;",
        "if (cpu.interruptibility !== 0 && cpu.shadowAt !== cpu.retired) cpu.interruptibility &= ~3;",
        `if (cpu.rip !== rip0 + ${next} || cpu.codeEpoch !== epoch || cpu.activity !== 0 || cpu.windowRequests !== 0 || (cpu.interruptibility & 3) !== 0) return;`,
      );
    }
    off = next;
  }
  if (!ended) sync(off);
  // a block that branches back to its own start (a loop with no generic op, so nothing in it can
  // halt, set an interrupt shadow or call out of the CPU) repeats inside the function while the
  // budget allows a whole pass and nothing asked the run loop to look
  const last = ops[ops.length - 1];
  const loops = ended && ops.every((o) => o.kind !== OpKind.Generic) && off + last.imm === 0;
  const body = loops
    ? [
        "for (let left = budget;;) {",
        ...out,
        `left -= ${ops.length};`,
        `if (cpu.rip !== rip0 || left < ${ops.length} || cpu.codeEpoch !== epoch || cpu.windowRequests !== 0) return;`,
        "}",
      ]
    : out;
  const factory = new Function(
    "generic",
    "ops",
    "lazyCf",
    "lazyZf",
    "condition",
    "ea64",
    `const [${ops.map((_, k) => `o${k}`).join(", ")}] = ops;
const [${ops.map((_, k) => `f${k}`).join(", ")}] = ops.map((o) => o.fn);
return function block(cpu, budget) {
const lo = cpu.lo, hi = cpu.hi, epoch = cpu.codeEpoch;
${body.join("\n")}
};`,
  ) as (
    generic: typeof genericOp,
    ops: Op[],
    cf: typeof lazyCf,
    zf: typeof lazyZf,
    cond: typeof condition,
    e64: typeof ea64,
  ) => CompiledBlock;
  return factory(genericOp, ops, lazyCf, lazyZf, condition, ea64);
}

/** 64-bit address from the exact low sum and the high sum (carry folded, as Interpreter.modrm) */
function ea64(l: number, h: number): number {
  return ((h + Math.floor(l / TWO32)) | 0) * TWO32 + (l >>> 0);
}
