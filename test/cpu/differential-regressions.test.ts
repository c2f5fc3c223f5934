// Minimal cases the random differential suite found (all fixed since), replayed on the interpreter
// and the host CPU as regressions. A newly found bug that cannot be fixed at once goes here as
// `it.fails` with an entry in support/known-mismatches.ts.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { arbState, compareRuns, type DiffCase } from "./support/diff-cases.js";
import { InterpHarness } from "./support/interp-harness.js";
import { oracle32UnsupportedReason, oracleUnsupportedReason, runOracle } from "./support/oracle.js";
import { hexBytes, type Insn, plainInsn } from "./support/x86-encode.js";

const unsupported = oracleUnsupportedReason();

const insn = (hex: string, text: string, writes = 0): Insn =>
  plainInsn({ bytes: hexBytes(hex), text, writes });

function diff(insns: Insn[], regs: Record<number, bigint>, bits: 32 | 64 = 64): string[] {
  const [base] = fc.sample(arbState, { seed: 42, numRuns: 1 });
  const gpr = [...base!.gpr];
  for (const [r, v] of Object.entries(regs)) gpr[Number(r)] = v;
  const c: DiffCase = { insns, state: { ...base!, gpr } };
  const harness = new InterpHarness(new Interpreter(), bits);
  const code = Uint8Array.from(insns.flatMap((i) => i.bytes));
  const [expected] = runOracle([{ code, state: c.state, bits }]);
  return compareRuns(harness.run(c.insns, c.state), expected!, bits);
}

describe.skipIf(unsupported !== undefined)("differential regressions", () => {
  it("ADD/ADC chains with flags agree (sanity: the replay harness itself)", () => {
    expect(
      diff([insn("4801d8", "add rax, rbx"), insn("4811c8", "adc rax, rcx")], { 0: -1n, 3: 1n, 1: 5n }),
    ).toEqual([]);
  });

  const no32 = oracle32UnsupportedReason();
  it.skipIf(no32 !== undefined)(
    `32-bit code: INC/DEC are one-byte 40-4F, PUSH/POP move ESP by 4${no32 ? ` (skipped: ${no32})` : ""}`,
    () => {
      const code = [
        insn("40", "inc eax", 1),
        insn("4b", "dec ebx", 1 << 3),
        insn("50", "push eax"),
        insn("59", "pop ecx", 2),
      ];
      expect(diff(code, { 0: 0xffffffffn, 3: 0n, 4: 0x3003c0n }, 32)).toEqual([]);
    },
  );

  it("a taken and a not-taken JZ over an instruction agree (the harness follows branches)", () => {
    const jzOverInc = (rax: bigint) => {
      const jz = { ...insn("7403", "jz +3"), flagsRead: 0x40, branches: true };
      return diff([insn("4885c0", "test rax, rax"), jz, insn("48ffc3", "inc rbx", 1 << 3)], {
        0: rax,
        3: 7n,
      });
    };
    expect(jzOverInc(0n)).toEqual([]);
    expect(jzOverInc(1n)).toEqual([]);
  });

  // 32-bit shift/rotate/SHLD/SHRD whose masked count is 0 still writes (zero-extends) the register
  it("SAR r32, 0 zero-extends the destination", () => {
    expect(diff([insn("41c1fc00", "sar r12d, 0")], { 12: 0x41d0128b465f5729n })).toEqual([]);
  });
  it("SHLD r32, r32, CL with CL = 0 zero-extends the destination", () => {
    expect(diff([insn("0fa5d7", "shld edi, edx, cl")], { 1: 0n, 7: 0x22cfe99d82106a81n })).toEqual([]);
  });
  it("ROL r32, CL with CL masked to 0 zero-extends the destination", () => {
    expect(diff([insn("41d3c3", "rol r11d, cl")], { 1: 0x160n, 11: 0xab40642ee82ca571n })).toEqual([]);
  });

  // MOVDQU, PINSRW, PEXTRW, PSHUFLW raised #UD
  it("MOVDQU xmm2, xmm0 (F3 0F 6F)", () => {
    expect(diff([insn("f30f6fd0", "movdqu xmm2, xmm0")], {})).toEqual([]);
  });
  it("MOVDQU xmm10, xmm1 (F3 REX.R 0F 6F)", () => {
    expect(diff([insn("f3440f6fd1", "movdqu xmm10, xmm1")], {})).toEqual([]);
  });

  it("PINSRW xmm10, eax, 78", () => {
    expect(diff([insn("66440fc4d04e", "pinsrw xmm10, eax, 78")], { 0: 0xb156d11abf275a75n })).toEqual([]);
  });
  it("PEXTRW edi, xmm5, 188", () => {
    expect(diff([insn("660fc5fdbc", "pextrw edi, xmm5, 188")], {})).toEqual([]);
  });
  it("PSHUFLW xmm4, xmm1, 25", () => {
    expect(diff([insn("f20f70e119", "pshuflw xmm4, xmm1, 25")], {})).toEqual([]);
  });

  it("a count register left undefined by SHLD taints the flags of a later ROL by CL (harness masking)", () => {
    const shld = { ...insn("660fa5f9", "shld cx, di, cl", 1 << 1), reads: (1 << 1) | (1 << 7) };
    const rol = { ...insn("66d3c2", "rol dx, cl", 1 << 2), reads: (1 << 1) | (1 << 2), flagsWritten: 0x8d5 };
    // CL = 0xff: SHLD's count exceeds 16, so CX (and CL) are undefined, and so is what ROL does
    shld.dynamic = () => ({ flagsWritten: 0x8d5, flagsUndefined: 0x8d5, regsUndefined: 1 << 1 });
    expect(diff([shld, rol], { 1: 0xffn, 2: 0xd2ca2617819af9abn, 7: 0x8a43c3ef5d9bc98an })).toEqual([]);
  });

  it("CMPXCHG16B on an aligned operand", () => {
    // 49 0f c7 4f 10: cmpxchg16b [r15+16], r15 = scratch (aligned)
    expect(diff([insn("490fc74f10", "cmpxchg16b [r15+16]")], { 15: 0x300000n })).toEqual([]);
  });

  it("CMPXCHG16B on a misaligned operand raises #GP(0)", () => {
    expect(diff([insn("490fc74f03", "cmpxchg16b [r15+3]")], { 15: 0x300000n })).toEqual([]);
  });

  it("LOCK ADD on a memory destination runs", () => {
    // f0 41 01 37: lock add [r15], esi
    expect(diff([{ ...insn("f0410137", "lock add [r15], esi"), memWrite: true }], { 15: 0x300000n })).toEqual(
      [],
    );
  });

  it("LOCK on a register destination raises #UD", () => {
    // f0 21 e2: lock and edx, esp
    expect(diff([insn("f021e2", "lock and edx, esp", 1 << 2)], {})).toEqual([]);
  });

  it("LOCK on an instruction that does not write memory (CMP) raises #UD", () => {
    // f0 41 39 37: lock cmp [r15], esi
    expect(diff([insn("f0413937", "lock cmp [r15], esi")], { 15: 0x300000n })).toEqual([]);
  });
});
