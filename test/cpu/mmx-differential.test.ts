// MMX against the host CPU: random mostly-MMX sequences (with SSE and general instructions moving
// values in and out) from random x87 states (TOP, tags, register contents, now and then a pending
// unmasked exception) run on the interpreter and the real processor; mm registers (the x87
// registers' 80-bit contents), FCW/FSW/FTW, general registers, flags, XMM and memory compared.
// NODEVMM_MMX_CASES sets the number of 64-bit cases (half as many 32-bit), NODEVMM_DIFF_SEED replays.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import {
  arbMmxCase,
  arbMmxCase32,
  arbState,
  compareRuns,
  type DiffCase,
  describeCase,
  minimizeCase,
} from "./support/diff-cases.js";
import { InterpHarness } from "./support/interp-harness.js";
import {
  initialFx,
  type OracleCase,
  oracle32UnsupportedReason,
  oracleUnsupportedReason,
  runOracle,
} from "./support/oracle.js";

const CASES = Number(process.env.NODEVMM_MMX_CASES ?? 4000);
const SEED = Number(process.env.NODEVMM_DIFF_SEED ?? Math.floor(Math.random() * 0x7fffffff));
const unsupported = oracleUnsupportedReason();
const toOracle = (c: DiffCase): OracleCase => ({
  code: Uint8Array.from(c.insns.flatMap((i) => i.bytes)),
  state: c.state,
  bits: c.bits ?? 64,
});

function run(arb: fc.Arbitrary<DiffCase>, bits: 32 | 64, cases: number): void {
  const harness = new InterpHarness(new Interpreter(), bits);
  const diffOf = (c: DiffCase) =>
    compareRuns(harness.run(c.insns, c.state), runOracle([toOracle(c)])[0]!, bits);
  const batch = fc.sample(arb, { seed: SEED + bits, numRuns: cases });
  const expected = runOracle(batch.map(toOracle));
  const failures: string[] = [];
  let mismatches = 0;
  let faulted = 0;
  batch.forEach((c, i) => {
    if (expected[i]!.vector >= 0) faulted++;
    if (compareRuns(harness.run(c.insns, c.state), expected[i]!, bits).length === 0) return;
    mismatches++;
    if (failures.length >= 8) return;
    const small = minimizeCase(c, (candidate) => diffOf(candidate).length > 0);
    failures.push(
      `case ${i} (${bits}-bit, NODEVMM_DIFF_SEED=${SEED}):\n${describeCase(small)}\n  ${diffOf(small).join("\n  ")}`,
    );
  });
  if (failures.length) console.error(failures.join("\n\n"));
  expect(mismatches, `${mismatches} mismatches in ${cases} ${bits}-bit MMX cases; details above`).toBe(0);
  // the pending-exception states must really reach #MF on both sides, and most cases run through
  expect(faulted).toBeGreaterThan(0);
  expect(faulted).toBeLessThan(cases / 2);
}

describe.skipIf(unsupported !== undefined)(
  `MMX: interpreter vs host CPU${unsupported ? ` (skipped: ${unsupported})` : ""}`,
  () => {
    it("the oracle loads the x87 state it is given and reports the CPU's (known answers)", () => {
      const [base] = fc.sample(arbState, { seed: 5, numRuns: 1 });
      const fx = initialFx();
      const dv = new DataView(fx.buffer);
      dv.setUint16(2, 5 << 11, true); // TOP 5
      fx[4] = 0x21; // R0, R5 valid
      dv.setBigUint64(32, 0xfedcba9876543210n, true); // ST0 = R5: an MMX value
      dv.setUint16(40, 0xffff, true);
      const gpr = [...base!.gpr];
      gpr[0] = 0x12345678n;
      const state = { ...base!, gpr, fx };
      const pending = new Uint8Array(fx);
      pending[0] = 0x7e; // FCW.IM clear
      new DataView(pending.buffer).setUint16(2, 0x8081 | (5 << 11), true); // IE, ES, B
      const [movd, emms, mf] = runOracle([
        { code: Uint8Array.of(0x0f, 0x6e, 0xd0), state }, // movd mm2, eax
        { code: Uint8Array.of(0x0f, 0x77), state }, // emms
        { code: Uint8Array.of(0x0f, 0x6e, 0xd0), state: { ...state, fx: pending } },
      ]);
      const out = (r: typeof movd) => new DataView(r!.state.fx!.buffer, r!.state.fx!.byteOffset, 160);
      expect(movd!.vector).toBe(-1);
      expect(out(movd).getUint16(2, true) & 0x3800).toBe(0); // TOP 0
      expect(movd!.state.fx![4]).toBe(0xff);
      expect([out(movd).getBigUint64(32 + 16 * 2, true), out(movd).getUint16(40 + 16 * 2, true)]).toEqual([
        0x12345678n,
        0xffff,
      ]);
      expect(out(movd).getBigUint64(32 + 16 * 5, true)).toBe(0xfedcba9876543210n); // R5 kept
      expect([emms!.state.fx![4], out(emms).getUint16(2, true) & 0x3800]).toEqual([0, 0]);
      expect(mf!.vector).toBe(16);
      expect(out(mf).getUint16(2, true)).toBe(0x8081 | (5 << 11));
    });
    it(
      `64-bit mode: ${CASES} random MMX sequences (seed ${SEED})`,
      () => run(arbMmxCase, 64, CASES),
      120_000,
    );
    const no32 = oracle32UnsupportedReason();
    it.skipIf(no32 !== undefined)(
      `32-bit code: ${Math.ceil(CASES / 2)} random MMX sequences (seed ${SEED})${no32 ? ` (skipped: ${no32})` : ""}`,
      () => run(arbMmxCase32, 32, Math.ceil(CASES / 2)),
      120_000,
    );
  },
);
