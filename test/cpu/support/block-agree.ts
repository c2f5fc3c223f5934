// The block engine against the single-step executor: a program run single-stepped, with blocks
// interpreted, compiled on their first run, and compiled in slices of 7 instructions must end with
// the same registers (general and XMM), flags, memory, instruction count and fault. Shared by the
// block fast-form tests (block-fast-ops, block-fast-muldiv, block-fast-sse).

import { expect } from "vitest";
import { OpKind } from "../../../lib/cpu/block-ops.js";
import { StopReason } from "../../../lib/cpu/index.js";
import { type Guest, type Mode, makeGuest, STACK_TOP } from "../guest.js";

export type Config = "single-step" | "blocks" | "compiled";

export interface Setup {
  regs: [number, bigint][];
  data: Uint8Array;
  at: number;
  prepare?: (g: Guest) => void;
}

export interface Outcome {
  stop: StopReason;
  event: string;
  regs: bigint[];
  flags: number;
  rip: bigint;
  /** the 16 XMM registers (SSE forms) */
  xmm: number[];
  retired: number;
  cr2: bigint;
  data: number[];
  stack: number[];
  /** a hash of the first MiB (every stack these programs use, wrapped or not) */
  memory: number;
  mmioWrites: number[];
}

function fnv(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h >>> 0;
}

export function run(mode: Mode, code: number[], config: Config, s: Setup, slice = 1_000_000): Outcome {
  // every exception exits with the state at the faulting instruction
  const mmioWrites: number[] = [];
  const g = makeGuest(mode, code, {
    event: () => true,
    mmioRead: (gpa) => Math.imul(gpa, 0x9e3779b1) >>> 0,
    mmioWrite: (gpa, size, lo, hi) => mmioWrites.push(gpa, size, lo, hi),
  });
  g.cpu.decodeCache = config !== "single-step";
  g.cpu.jitThreshold = config === "compiled" ? 1 : 0;
  g.ram.set(s.data, s.at);
  s.prepare?.(g);
  for (const [r, v] of s.regs) g.cpu.setGpr(r, v);
  let stop: StopReason = StopReason.Budget;
  for (let n = 0; n < 100_000 && stop === StopReason.Budget; n++) stop = g.cpu.run(slice);
  const exit = g.hooks.lastExit;
  return {
    stop,
    event: exit?.kind === "event" ? `${exit.vector}/${exit.errorCode}` : exit ? exit.kind : "",
    regs: Array.from({ length: 16 }, (_, r) => g.cpu.getGpr(r)),
    flags: g.cpu.getFlags(),
    rip: g.cpu.getRip(),
    xmm: Array.from(g.cpu.getExtendedState().xmm),
    retired: g.cpu.retired,
    cr2: g.cpu.getControl("cr2"),
    data: Array.from(g.ram.subarray(s.at, s.at + 0x100)),
    stack: Array.from(g.ram.subarray(STACK_TOP - 0x100, STACK_TOP + 0x10)),
    memory: fnv(g.ram.subarray(0, 0x100000)),
    mmioWrites,
  };
}

/** single-stepped, then with blocks (interpreted, compiled, compiled in small slices): all equal */
export function agree(mode: Mode, code: number[], s: Setup): Outcome {
  const ref = run(mode, code, "single-step", s);
  expect(run(mode, code, "blocks", s), "blocks").toEqual(ref);
  expect(run(mode, code, "compiled", s), "compiled").toEqual(ref);
  expect(run(mode, code, "compiled", s, 7), "compiled, slices of 7").toEqual(ref);
  return ref;
}

/** the ops decoded for the program's code page that have no fast form, by their first byte */
export function genericOps(mode: Mode, code: number[], s: Setup): number[] {
  const g = makeGuest(mode, code, { event: () => true });
  g.ram.set(s.data, s.at);
  s.prepare?.(g);
  for (const [r, v] of s.regs) g.cpu.setGpr(r, v);
  g.cpu.run(1_000_000);
  return genericOpBytes(g);
}

/** the first bytes of the ops without a fast form in the blocks `g` has decoded */
export function genericOpBytes(g: Guest): number[] {
  const out: number[] = [];
  for (const page of g.cpu.codePages.values())
    for (const [key, blk] of page.blocks) {
      let off = key >> 2;
      blk.ops.forEach((op, k) => {
        if (op.kind === OpKind.Generic) out.push(g.ram[page.gpa + off]);
        // a JMP before the block's end is one the block went on after, at its target
        off += op.len + (op.kind === OpKind.Jmp && k < blk.ops.length - 1 ? op.imm : 0);
      });
    }
  return out;
}
