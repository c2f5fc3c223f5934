// Checks of the differential machinery itself, independent of the interpreter: the host-CPU oracle
// gives known answers (results, flags, zero-extension, #DE/#UD/#GP vectors, string ops, SSE), and
// every instruction the generator encodes is valid with the length iced-x86 decodes.

import fc from "fast-check";
import { Decoder, DecoderOptions, Mnemonic } from "iced-x86";
import { describe, expect, it } from "vitest";
import { arbCase, arbState } from "./support/diff-cases.js";
import {
  CODE_ADDR,
  type CpuState,
  oracle32UnsupportedReason,
  oracleUnsupportedReason,
  runOracle,
  SCRATCH_ADDR,
} from "./support/oracle.js";

const unsupported = oracleUnsupportedReason();

function state(regs: Record<number, bigint>, rflags = 0x202n): CpuState {
  const [s] = fc.sample(arbState, { seed: 1, numRuns: 1 });
  const gpr = [...s!.gpr];
  for (const [r, v] of Object.entries(regs)) gpr[Number(r)] = v;
  return { ...s!, gpr, rflags };
}

describe.skipIf(unsupported !== undefined)(
  `host-CPU oracle${unsupported ? ` (skipped: ${unsupported})` : ""}`,
  () => {
    it("runs ALU code and reports results, flags and 32-bit zero-extension", () => {
      const [add64, add32] = runOracle([
        { code: Uint8Array.of(0x48, 0x01, 0xd8), state: state({ 0: 5n, 3: 7n }) }, // add rax, rbx
        { code: Uint8Array.of(0x01, 0xd8), state: state({ 0: 0x12345678ffffffffn, 3: 1n }) }, // add eax, ebx
      ]);
      expect(add64!.vector).toBe(-1);
      expect(add64!.state.gpr[0]).toBe(12n);
      expect(add64!.state.rflags & 0x8d5n).toBe(0x4n); // PF only
      expect(add64!.state.rip).toBe(BigInt(CODE_ADDR + 3));
      expect(add32!.state.gpr[0]).toBe(0n);
      expect(add32!.state.rflags & 0x41n).toBe(0x41n); // ZF, CF
    });

    it("reports #DE, #UD and #GP with the state at the faulting instruction", () => {
      const [de, ud, gp] = runOracle([
        // inc rax; div rcx (rcx = 0); inc rax
        {
          code: Uint8Array.of(0x48, 0xff, 0xc0, 0x48, 0xf7, 0xf1, 0x48, 0xff, 0xc0),
          state: state({ 0: 1n, 1: 0n }),
        },
        { code: Uint8Array.of(0x0f, 0x0b), state: state({}) }, // ud2
        // movdqa xmm0, [r15+1]: misaligned
        {
          code: Uint8Array.of(0x66, 0x41, 0x0f, 0x6f, 0x47, 0x01),
          state: state({ 15: BigInt(SCRATCH_ADDR) }),
        },
      ]);
      expect(de!.vector).toBe(0);
      expect(de!.state.gpr[0]).toBe(2n);
      expect(de!.state.rip).toBe(BigInt(CODE_ADDR + 3));
      expect(ud!.vector).toBe(6);
      expect(gp!.vector).toBe(13);
    });

    const no32 = oracle32UnsupportedReason();
    it.skipIf(no32 !== undefined)(
      `runs compatibility-mode (32-bit) code, faults included, between 64-bit cases${no32 ? ` (skipped: ${no32})` : ""}`,
      () => {
        const lo32 = (v: bigint) => v & 0xffffffffn;
        const [inc, de, after] = runOracle([
          // 40: inc eax (a REX prefix in 64-bit mode); 50 59: push eax, pop ecx (4-byte stack slots)
          { code: Uint8Array.of(0x40, 0x50, 0x59), state: state({ 0: 41n, 1: 0n }), bits: 32 },
          // 40 f7 f1: inc eax; div ecx with ecx = 0
          { code: Uint8Array.of(0x40, 0xf7, 0xf1), state: state({ 0: 1n, 1: 0n }), bits: 32 },
          { code: Uint8Array.of(0x48, 0x01, 0xd8), state: state({ 0: 5n, 3: 7n }) },
        ]);
        expect(inc!.vector).toBe(-1);
        expect(lo32(inc!.state.gpr[0]!)).toBe(42n);
        expect(lo32(inc!.state.gpr[1]!)).toBe(42n);
        expect(lo32(inc!.state.gpr[4]!)).toBe(lo32(state({}).gpr[4]!));
        expect(de!.vector).toBe(0);
        expect(lo32(de!.state.gpr[0]!)).toBe(2n);
        expect(de!.state.rip).toBe(BigInt(CODE_ADDR + 1));
        expect(after!.state.gpr[0]).toBe(12n);
      },
    );

    it("runs REP MOVSB and SSE over the scratch page", () => {
      const s = state({ 6: BigInt(SCRATCH_ADDR), 7: BigInt(SCRATCH_ADDR + 0x100), 1: 5n });
      s.scratch.set([1, 2, 3, 4, 5, 6], 0);
      const [movs, pxor] = runOracle([
        { code: Uint8Array.of(0xf3, 0xa4), state: s }, // rep movsb
        { code: Uint8Array.of(0x66, 0x0f, 0xef, 0xc9), state: state({}) }, // pxor xmm1, xmm1
      ]);
      expect(Array.from(movs!.state.scratch.subarray(0x100, 0x106))).toEqual([
        1,
        2,
        3,
        4,
        5,
        s.scratch[0x105],
      ]);
      expect(movs!.state.gpr[1]).toBe(0n);
      expect(movs!.state.gpr[6]).toBe(BigInt(SCRATCH_ADDR + 5));
      expect(Array.from(pxor!.state.xmm.subarray(16, 32))).toEqual(new Array(16).fill(0));
    });
  },
);

describe("differential case generator", () => {
  it("encodes only valid instructions whose length and mnemonic iced-x86 agrees with", () => {
    const bad: string[] = [];
    for (const c of fc.sample(arbCase, { seed: 7, numRuns: 3000 })) {
      for (const insn of c.insns) {
        const decoder = new Decoder(64, Uint8Array.from(insn.bytes), DecoderOptions.None);
        const decoded = decoder.decode();
        if (insn.branches) continue; // "jcc +n" is relative to its place in the sequence
        const words = insn.text.split(" ").filter((w) => !/^(addr32|rep|repe|repne|lock)$/.test(w));
        const expected = words[0]!.toLowerCase();
        const got = Mnemonic[decoded.mnemonic]?.toLowerCase();
        // LOCK on a register destination or on CMP is meant to raise #UD: iced calls it invalid
        const lockUd = insn.text.startsWith("lock ") && (!insn.memWrite || words[0] === "cmp");
        if (insn.text.endsWith("(#UD)")) {
          if (!decoded.isInvalid && !/^ud[012]/.test(insn.text))
            bad.push(`${insn.text}: iced decodes it in 64-bit mode`);
        } else if (lockUd) {
          if (!decoded.isInvalid) bad.push(`${insn.text}: iced accepts LOCK here`);
        } else if (decoded.isInvalid || decoded.length !== insn.bytes.length || got !== expected) {
          bad.push(
            `${insn.text}: ${Buffer.from(insn.bytes).toString("hex")} decodes as ${got} (${decoded.length} bytes)`,
          );
        }
        decoded.free();
        decoder.free();
      }
    }
    expect(bad.slice(0, 20)).toEqual([]);
  });
});
