// Differential cases (a short instruction sequence + a starting state), their comparison between
// the interpreter and the host CPU, and a readable report of a mismatch.

import fc from "fast-check";
import { generalForms } from "./insn-forms-gp.js";
import { arbFx, mmxForms } from "./insn-forms-mmx.js";
import { sseForms } from "./insn-forms-sse.js";
import { stringOp } from "./insn-forms-string.js";
import type { InterpResult } from "./interp-harness.js";
import { CODE_ADDR, type CpuState, type OracleResult, SCRATCH_ADDR } from "./oracle.js";
import { ARITH, bit, CC_FLAGS, CC_NAMES, DF, type Insn } from "./x86-encode.js";

export interface DiffCase {
  insns: Insn[];
  state: CpuState;
  /** 64 when absent */
  bits?: 32 | 64;
}

/** leaves room for 4 pops below the end of the compared scratch bytes */
export const STACK_TOP = SCRATCH_ADDR + 0x3c0;

const arbGpr = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 0x1ffn }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 0xffffffffn }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      0n,
      1n,
      0x7fn,
      0x80n,
      0xffn,
      0x7fffn,
      0x8000n,
      0xffffn,
      0x7fffffffn,
      0x80000000n,
      0xffffffffn,
      0x7fffffffffffffffn,
      0x8000000000000000n,
      0xffffffffffffffffn,
    ),
  },
);

const arbBytes = (n: number) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 0x7fffffff }).map((seed) => noise(seed, n)) },
    { weight: 1, arbitrary: fc.constantFrom(0, 0xff, 0x80, 0x7f).map((b) => new Uint8Array(n).fill(b)) },
  );

/** 1 KiB of deterministic noise from a seed (fast-check's byte arrays are slow at this size). */
function noise(seed: number, size = 1024): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed | 0;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const arbState: fc.Arbitrary<CpuState> = fc
  .record({
    gpr: fc.array(arbGpr, { minLength: 16, maxLength: 16 }),
    base: fc.integer({ min: 0, max: 16 }),
    index: fc.integer({ min: 0, max: 15 }),
    flags: fc.integer({ min: 0, max: 0xfff }),
    xmm: arbBytes(256),
    fx: arbFx,
    scratch: fc.integer({ min: 1, max: 0x7fffffff }).map(noise),
  })
  .map(({ gpr, base, index, flags, xmm, fx, scratch }) => {
    const g = [...gpr];
    g[4] = BigInt(STACK_TOP);
    g[14] = BigInt(index);
    g[15] = BigInt(SCRATCH_ADDR + base * 16);
    return {
      gpr: g,
      rflags: BigInt(0x202 | (flags & (ARITH | DF))),
      rip: BigInt(CODE_ADDR),
      xmm,
      fx,
      scratch,
    };
  });

/** Everything but the forms that need their own register setup (they run alone). */
const sequenceForm: fc.Arbitrary<Insn> = fc.oneof(
  ...Object.values(generalForms).map((a) => ({ weight: 3, arbitrary: a })),
  ...Object.values(sseForms).map((a) => ({ weight: 2, arbitrary: a })),
  ...Object.values(mmxForms).map((a) => ({ weight: 1, arbitrary: a })),
);

/** MMX-heavy sequences: MMX forms, with SSE and general forms to move values in and out */
const mmxSequenceForm: fc.Arbitrary<Insn> = fc.oneof(
  ...Object.values(mmxForms).map((a) => ({ weight: 6, arbitrary: a })),
  ...Object.values(sseForms).map((a) => ({ weight: 1, arbitrary: a })),
  ...Object.values(generalForms).map((a) => ({ weight: 1, arbitrary: a })),
);

/**
 * A conditional branch over the next instruction: Jcc rel8, or (cc 16, 17) LOOP / JRCXZ, which
 * use RCX. The displacement is the length of the instruction it skips.
 */
function branchOver(cc: number, next: Insn): Insn {
  const loop = cc === 16;
  const rcx = cc >= 16;
  const n = next.bytes.length;
  return {
    bytes: [rcx ? (loop ? 0xe2 : 0xe3) : 0x70 + cc, n],
    text: rcx ? `${loop ? "loop" : "jrcxz"} +${n}` : `j${CC_NAMES[cc]} +${n}`,
    reads: rcx ? bit(1) : 0,
    writes: loop ? bit(1) : 0,
    flagsRead: rcx ? 0 : CC_FLAGS[cc]!,
    flagsWritten: 0,
    flagsUndefined: 0,
    memRead: false,
    memWrite: false,
    branches: true,
  };
}

/** 1-4 instructions (mapped to the mode by `map`, dropped when it cannot), some preceded by a
 * branch over them */
function sequenceOf(map: (i: Insn) => Insn | undefined, forms = sequenceForm): fc.Arbitrary<Insn[]> {
  return fc
    .tuple(
      fc.array(
        forms
          .filter((i) => !i.init)
          .map(map)
          .filter((i): i is Insn => i !== undefined),
        { minLength: 1, maxLength: 4 },
      ),
      fc.array(fc.option(fc.integer({ min: 0, max: 17 }), { freq: 3 }), { minLength: 4, maxLength: 4 }),
    )
    .map(([insns, branches]) => {
      const out: Insn[] = [];
      insns.forEach((insn, i) => {
        const cc = branches[i];
        if (i > 0 && cc !== null && cc !== undefined) out.push(branchOver(cc, insn));
        out.push(insn);
      });
      return out;
    });
}

const solo = (a: fc.Arbitrary<Insn>, map: (i: Insn) => Insn | undefined) =>
  a
    .filter((i) => !!i.init)
    .map(map)
    .filter((i): i is Insn => i !== undefined)
    .map((i) => [i]);

/** 64-bit mode cases */
export const arbCase: fc.Arbitrary<DiffCase> = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: sequenceOf((i) => i) },
      { weight: 1, arbitrary: stringOp.map((i) => [i]) },
      { weight: 1, arbitrary: solo(generalForms.bitTest, (i) => i) },
      { weight: 1, arbitrary: solo(generalForms.memoryStack, (i) => i) },
      { weight: 1, arbitrary: solo(mmxForms.maskmovq, (i) => i) },
    ),
    arbState,
  )
  .map(([insns, state]) => withInit(insns, state));

function withInit(insns: Insn[], state: CpuState): DiffCase {
  const gpr = [...state.gpr];
  for (const i of insns) for (const [r, v] of i.init ?? []) gpr[r] = BigInt.asUintN(64, v);
  return { insns, state: { ...state, gpr } };
}

/** 64-bit mode cases that are mostly MMX */
export const arbMmxCase: fc.Arbitrary<DiffCase> = fc
  .tuple(
    fc.oneof(
      { weight: 8, arbitrary: sequenceOf((i) => i, mmxSequenceForm) },
      { weight: 1, arbitrary: solo(mmxForms.maskmovq, (i) => i) },
    ),
    arbState,
  )
  .map(([insns, state]) => withInit(insns, state));

/** 32-bit code cases that are mostly MMX */
export const arbMmxCase32: fc.Arbitrary<DiffCase> = fc
  .tuple(sequenceOf(to32, mmxSequenceForm), arbState)
  .map(([insns, state]) => {
    const gpr = [...state.gpr];
    gpr[6] = gpr[14]!;
    gpr[7] = gpr[15]!;
    return { insns, state: { ...state, gpr }, bits: 32 as const };
  });

/**
 * The same instruction as 32-bit code, or undefined when it has no 32-bit twin. A REX prefix that
 * only selects the memory base R15 / index R14 is dropped: the same ModRM/SIB bytes then address
 * [EDI + ESI*s + disp], and the 32-bit harness gives EDI/ESI the values R15/R14 have. Anything
 * else that needs REX, or whose meaning changes in 32-bit mode (64-bit default operand size of
 * PUSH/POP, the 67 prefix, opcodes that are #UD only in 64-bit mode) is left out.
 */
export function to32(i: Insn): Insn | undefined {
  if (
    /\b(push|pop|pushfq|xlatb)\b|\(#UD\)|addr32|\[r15d|\b(spl|bpl|sil|dil)\b|\br(8|9|1[0-3])[dwb]?\b|xmm(8|9|1[0-5])\b/.test(
      i.text,
    )
  ) {
    return undefined;
  }
  let p = 0;
  while ([0x66, 0x67, 0xf2, 0xf3, 0xf0].includes(i.bytes[p]!)) p++;
  const rex = i.bytes[p]!;
  let bytes = i.bytes;
  if (rex >= 0x40 && rex <= 0x4f) {
    if (rex & 0x0c || !i.text.includes("[r15")) return undefined;
    bytes = [...i.bytes.slice(0, p), ...i.bytes.slice(p + 1)];
  }
  const moved = (mask: number) =>
    (mask & 0xff) | ((mask >> 14) & 1 ? bit(6) : 0) | ((mask >> 15) & 1 ? bit(7) : 0);
  // ESI/EDI are the memory index/base here, except for string instructions, which set them up
  const ownsSiDi = i.init?.some(([r]) => r === 6) && i.init?.some(([r]) => r === 7);
  if (i.writes & bit(4) || (i.writes & (bit(6) | bit(7)) && !ownsSiDi)) return undefined;
  const init = i.init?.map(([r, v]): [number, bigint] => [r === 15 ? 7 : r === 14 ? 6 : r, v]);
  if (init?.some(([r]) => r >= 8)) return undefined;
  // a register set up for the instruction (a bit offset) must not be the memory base or index
  if (!ownsSiDi && i.init?.some(([r]) => r === 6 || r === 7)) return undefined;
  return { ...i, bytes, reads: moved(i.reads), writes: moved(i.writes), init };
}

/** 32-bit (protected / compatibility mode) cases */
export const arbCase32: fc.Arbitrary<DiffCase> = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: sequenceOf(to32) },
      { weight: 1, arbitrary: solo(stringOp, to32) },
      { weight: 1, arbitrary: solo(generalForms.bitTest, to32) },
    ),
    arbState,
  )
  .map(([insns, state]) => {
    const gpr = [...state.gpr];
    gpr[6] = gpr[14]!;
    gpr[7] = gpr[15]!;
    for (const i of insns) for (const [r, v] of i.init ?? []) gpr[r] = BigInt.asUintN(64, v);
    return { insns, state: { ...state, gpr }, bits: 32 as const };
  });

const GPR = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
];
const hex = (v: bigint) => `0x${BigInt.asUintN(64, v).toString(16)}`;

/** Differences that the SDM does not excuse; empty when the two runs agree. In 32-bit mode only
 * EAX..EDI, EIP and XMM0-7 exist. */
export function compareRuns(interp: InterpResult, oracle: OracleResult, bits: 32 | 64 = 64): string[] {
  const out: string[] = [];
  if (interp.indeterminate) return out;
  const width = (v: bigint) => (bits === 32 ? v & 0xffffffffn : v);
  if (interp.vector !== oracle.vector)
    out.push(`exception: interpreter ${interp.vector}, cpu ${oracle.vector}`);
  if (width(interp.state.rip) !== width(oracle.state.rip)) {
    out.push(`rip: interpreter ${hex(interp.state.rip)}, cpu ${hex(oracle.state.rip)}`);
  }
  for (let r = 0; r < (bits === 32 ? 8 : 16); r++) {
    if (interp.taintRegs & (1 << r)) continue;
    if (width(interp.state.gpr[r]!) !== width(oracle.state.gpr[r]!)) {
      out.push(`${GPR[r]}: interpreter ${hex(interp.state.gpr[r]!)}, cpu ${hex(oracle.state.gpr[r]!)}`);
    }
  }
  const mask = BigInt((ARITH | DF) & ~interp.taintFlags);
  const fi = interp.state.rflags & mask;
  const fo = oracle.state.rflags & mask;
  if (fi !== fo) {
    out.push(
      `rflags (mask ${hex(mask)}): interpreter ${hex(fi)}, cpu ${hex(fo)} (${flagNames(fi ^ fo)} differ)`,
    );
  }
  for (let x = 0; x < (bits === 32 ? 8 : 16) && !interp.taintXmm; x++) {
    const a = interp.state.xmm.subarray(x * 16, x * 16 + 16);
    const b = oracle.state.xmm.subarray(x * 16, x * 16 + 16);
    if (!a.every((v, i) => v === b[i])) out.push(`xmm${x}: interpreter ${bytesHex(a)}, cpu ${bytesHex(b)}`);
  }
  out.push(...compareX87(interp.state.fx, oracle.state.fx, interp.taintMm));
  if (!interp.taintMem) {
    const a = interp.state.scratch;
    const b = oracle.state.scratch;
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        out.push(`memory 0x${(SCRATCH_ADDR + i).toString(16)}: interpreter ${a[i]}, cpu ${b[i]}`);
        break;
      }
    }
  }
  return out;
}

/** FCW, FSW, the abridged FTW, and (unless tainted) the 80-bit contents of ST0-7 */
function compareX87(a: Uint8Array | undefined, b: Uint8Array | undefined, taintRegs: boolean): string[] {
  if (!a || !b) return a === b ? [] : ["x87 state missing on one side"];
  const out: string[] = [];
  const u16 = (x: Uint8Array, o: number) => x[o]! | (x[o + 1]! << 8);
  const h = (v: number, n: number) => `0x${v.toString(16).padStart(n, "0")}`;
  for (const [name, o] of [
    ["fcw", 0],
    ["fsw", 2],
  ] as const) {
    if (u16(a, o) !== u16(b, o)) out.push(`${name}: interpreter ${h(u16(a, o), 4)}, cpu ${h(u16(b, o), 4)}`);
  }
  if (a[4] !== b[4]) out.push(`ftw: interpreter ${h(a[4]!, 2)}, cpu ${h(b[4]!, 2)}`);
  if (taintRegs) return out;
  for (let k = 0; k < 8; k++) {
    const x = a.subarray(32 + 16 * k, 42 + 16 * k);
    const y = b.subarray(32 + 16 * k, 42 + 16 * k);
    if (!x.every((v, i) => v === y[i])) {
      const f80 = (r: Uint8Array) => bytesHex(r.slice().reverse());
      out.push(`st${k}: interpreter ${f80(x)}, cpu ${f80(y)}`);
    }
  }
  return out;
}

function flagNames(bits: bigint): string {
  const names: Array<[number, string]> = [
    [0x1, "CF"],
    [0x4, "PF"],
    [0x10, "AF"],
    [0x40, "ZF"],
    [0x80, "SF"],
    [0x400, "DF"],
    [0x800, "OF"],
  ];
  return names
    .filter(([b]) => (bits & BigInt(b)) !== 0n)
    .map(([, n]) => n)
    .join(",");
}

function bytesHex(b: Uint8Array): string {
  return Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
}

export function describeCase(c: DiffCase): string {
  const lines = c.insns.map((i) => `  ${bytesHex(Uint8Array.from(i.bytes)).padEnd(32)} ${i.text}`);
  const regs = c.state.gpr.map((v, r) => `${GPR[r]}=${hex(v)}`).join(" ");
  const mode = c.bits === 32 ? "  32-bit code: [r15+r14*s] reads [edi+esi*s], no REX\n" : "";
  return `${mode}${lines.join("\n")}\n  initial: ${regs} rflags=${hex(c.state.rflags)}`;
}

/**
 * Shrinks a mismatching case: the shortest failing prefix, then greedily drops earlier instructions
 * while it still fails. `fails` runs a candidate on both sides.
 */
export function minimizeCase(c: DiffCase, fails: (candidate: DiffCase) => boolean): DiffCase {
  // a branch must still skip exactly the instruction after it
  const wellFormed = (insns: Insn[]) =>
    insns.every((insn, i) => !insn.branches || insns[i + 1]?.bytes.length === insn.bytes[1]);
  const check = (candidate: DiffCase) => wellFormed(candidate.insns) && fails(candidate);
  let best = c;
  for (let k = 1; k < c.insns.length; k++) {
    const prefix = { ...c, insns: c.insns.slice(0, k) };
    if (check(prefix)) {
      best = prefix;
      break;
    }
  }
  for (let i = best.insns.length - 2; i >= 0; i--) {
    const without = { ...best, insns: best.insns.filter((_, j) => j !== i) };
    if (check(without)) best = without;
  }
  return best;
}

/** The mnemonic of a case's last instruction, for grouping mismatches. */
export function lastMnemonic(c: DiffCase): string {
  const words = c.insns[c.insns.length - 1]!.text.split(" ");
  return words.filter((w) => !/^(addr32|rep|repe|repne|lock)$/.test(w))[0] ?? "?";
}
