// The interpreter against the host CPU: random ALU/shift/rotate/mul/div/bit/string/SSE instruction
// sequences run on both from the same state, compared register by register, flag by flag (masking
// only what the SDM leaves undefined), byte by byte in the scratch memory, and by exception vector;
// in 64-bit mode, and as 32-bit code (protected mode on the interpreter, compatibility mode on the
// CPU). NODEVMM_DIFF_CASES sets the number of 64-bit cases (half as many 32-bit ones), and
// NODEVMM_DIFF_SEED replays a run; a mismatch prints the seed and the case shrunk to the
// instructions that matter.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import {
  arbCase,
  arbCase32,
  compareRuns,
  type DiffCase,
  describeCase,
  lastMnemonic,
  minimizeCase,
} from "./support/diff-cases.js";
import { InterpHarness } from "./support/interp-harness.js";
import { knownMismatch } from "./support/known-mismatches.js";
import {
  type OracleCase,
  oracle32UnsupportedReason,
  oracleUnsupportedReason,
  runOracle,
} from "./support/oracle.js";

const CASES = Number(process.env.NODEVMM_DIFF_CASES ?? 10000);
const SEED = Number(process.env.NODEVMM_DIFF_SEED ?? Math.floor(Math.random() * 0x7fffffff));
const BATCH = 5000;
const MAX_REPORTED = 12;

const unsupported = oracleUnsupportedReason();
/** generous: a case takes well under a millisecond; large NODEVMM_DIFF_CASES runs need the room */
const timeoutFor = (cases: number) => Math.max(60_000, cases * 3);
const toOracle = (c: DiffCase): OracleCase => ({
  code: Uint8Array.from(c.insns.flatMap((i) => i.bytes)),
  state: c.state,
  bits: c.bits ?? 64,
});

function differential(arb: fc.Arbitrary<DiffCase>, bits: 32 | 64, cases: number, seed: number): void {
  const harness = new InterpHarness(new Interpreter(), bits);
  const diffOf = (c: DiffCase) =>
    compareRuns(harness.run(c.insns, c.state), runOracle([toOracle(c)])[0]!, bits);
  const failures: string[] = [];
  const byMnemonic = new Map<string, number>();
  const knownCounts = new Map<string, number>();
  let run = 0;
  for (let start = 0; start < cases; start += BATCH) {
    const n = Math.min(BATCH, cases - start);
    const batch: DiffCase[] = fc.sample(arb, { seed: seed + start, numRuns: n });
    const expected = runOracle(batch.map(toOracle));
    batch.forEach((c, i) => {
      run++;
      if (compareRuns(harness.run(c.insns, c.state), expected[i]!, bits).length === 0) return;
      const small = minimizeCase(c, (candidate) => diffOf(candidate).length > 0);
      const known = knownMismatch(small);
      if (known) {
        knownCounts.set(known.id, (knownCounts.get(known.id) ?? 0) + 1);
        return;
      }
      const key = lastMnemonic(small);
      byMnemonic.set(key, (byMnemonic.get(key) ?? 0) + 1);
      if (failures.length < MAX_REPORTED && byMnemonic.get(key) === 1) {
        failures.push(
          `case ${start + i} (${bits}-bit, NODEVMM_DIFF_SEED=${SEED}):\n${describeCase(small)}\n  ${diffOf(small).join("\n  ")}`,
        );
      }
    });
  }
  if (knownCounts.size) {
    const known = [...knownCounts].map(([id, n]) => `${id} x${n}`).join(", ");
    console.warn(`${bits}-bit: known interpreter bugs hit (support/known-mismatches.ts): ${known}`);
  }
  const total = [...byMnemonic.values()].reduce((a, b) => a + b, 0);
  if (total) {
    const summary = [...byMnemonic].sort((a, b) => b[1] - a[1]).map(([m, n]) => `${m} x${n}`);
    console.error(
      `${total} mismatches in ${run} ${bits}-bit cases (seed ${SEED}), by instruction: ${summary.join(", ")}\n\n${failures.join("\n\n")}`,
    );
  }
  expect(total, `${total} mismatches in ${run} ${bits}-bit cases (seed ${SEED}); details above`).toBe(0);
  expect(run).toBe(cases);
}

describe.skipIf(unsupported !== undefined)(
  `interpreter vs host CPU${unsupported ? ` (skipped: ${unsupported})` : ""}`,
  () => {
    it(
      `64-bit mode: agrees on ${CASES} random instruction sequences (seed ${SEED})`,
      () => {
        differential(arbCase, 64, CASES, SEED);
      },
      timeoutFor(CASES),
    );
    const cases32 = Math.ceil(CASES / 2);
    const no32 = oracle32UnsupportedReason();
    it.skipIf(no32 !== undefined)(
      `32-bit code: agrees on ${cases32} random instruction sequences (seed ${SEED})${no32 ? ` (skipped: ${no32})` : ""}`,
      () => {
        differential(arbCase32, 32, cases32, SEED + 0x40000000);
      },
      timeoutFor(cases32),
    );
  },
);
