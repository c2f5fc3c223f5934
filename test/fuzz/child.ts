// One batch of one fuzz target, in a process of its own (scripts/fuzz/run.mjs bundles this file and
// spawns it): fast-check draws `runs` cases from `seed` (or replays `path`), runs each against the
// target's oracle and shrinks a failure. Reports go to fd 3 as JSON lines, each written before the
// next case starts, so when a case kills the process (a signal) the runner knows which one did it.
//
//   node child.mjs TARGET SEED RUNS TIME_MS [PATH]
//
// Lines: {"ev":"case","i":N,"case":"..."} before case N (N counts from 0 in fast-check's order, so a
// crash in the first runs replays with path N); {"ev":"fail",...} for an oracle violation (after
// shrinking); {"ev":"known",...} for a failure known.ts lists (not shrunk; the batch goes on);
// {"ev":"done","runs":N,"bytes":N,"outcomes":{...}} at the end.
// Env: FUZZ_STRICT=1 fails on known bugs too; FUZZ_SHRINK_MS bounds shrinking (default 20000).

import { writeSync } from "node:fs";
import fc from "fast-check";
import { knownBug } from "./known.js";
import { errorLine, errorSignature, type FuzzTarget, OracleViolation } from "./target.js";
import { TARGETS } from "./targets.js";

const REPORT_FD = 3;
const STRICT = process.env.FUZZ_STRICT === "1";
const SHRINK_MS = Number(process.env.FUZZ_SHRINK_MS ?? 20_000);

function report(o: object): void {
  writeSync(REPORT_FD, `${JSON.stringify(o)}\n`);
}

async function main(): Promise<void> {
  const [name, seedText, runsText, timeText, path] = process.argv.slice(2);
  const target: FuzzTarget<unknown> | undefined = TARGETS[name ?? ""];
  if (!target) throw new Error(`unknown target ${String(name)}: ${Object.keys(TARGETS).join(", ")}`);
  const seed = Number(seedText);
  const runs = Number(runsText);
  const timeMs = Number(timeText);
  let invocations = 0;
  let failedAt: number | undefined;
  let shrinkStart = 0;
  let firstSignature = "";
  let runsDone = 0;
  let bytes = 0;
  const outcomes: Record<string, number> = {};
  const property = fc.asyncProperty(target.arbitrary, async (c) => {
    const i = invocations++;
    // out of shrinking time: every further candidate "passes", so fast-check settles on the
    // smallest failing case it has
    if (failedAt !== undefined && Date.now() - shrinkStart > SHRINK_MS) return;
    // while shrinking, only the case index matters for a crash report; skip the long description
    report({
      ev: "case",
      i,
      case: failedAt === undefined ? target.describe(c) : undefined,
      shrinking: failedAt !== undefined,
    });
    try {
      const o = await target.run(c);
      if (failedAt === undefined) {
        runsDone++;
        bytes += o.bytes;
        outcomes[o.outcome] = (outcomes[o.outcome] ?? 0) + 1;
      }
    } catch (e) {
      const signature = e instanceof OracleViolation ? e.signature : `escaped: ${errorSignature(e)}`;
      const known = STRICT ? undefined : knownBug(signature);
      if (known && failedAt === undefined) {
        runsDone++;
        outcomes[`known: ${signature}`] = (outcomes[`known: ${signature}`] ?? 0) + 1;
        report({
          ev: "known",
          i,
          signature,
          note: known.note,
          error: errorLine(e),
          case: target.describe(c),
        });
        return;
      }
      if (failedAt === undefined) {
        failedAt = i;
        shrinkStart = Date.now();
        firstSignature = signature;
      } else if (signature !== firstSignature) {
        // another failure: shrinking must not slip from the bug found to a different one
        return;
      }
      throw e;
    }
  });
  const details = await fc.check(property, {
    seed,
    numRuns: runs,
    ...(path ? { path } : {}),
    interruptAfterTimeLimit: timeMs,
    markInterruptAsFailure: false,
  });
  if (details.failed && details.counterexample) {
    const error = details.errorInstance;
    const [c] = details.counterexample as [unknown];
    report({
      ev: "fail",
      target: target.name,
      seed: details.seed,
      path: details.counterexamplePath,
      firstFailure: failedAt,
      shrinks: details.numShrinks,
      signature: error instanceof OracleViolation ? error.signature : `escaped: ${errorSignature(error)}`,
      error: errorLine(error),
      cause:
        error instanceof OracleViolation && error.cause !== undefined ? errorLine(error.cause) : undefined,
      stack:
        error instanceof Error ? (error.cause instanceof Error ? error.cause.stack : error.stack) : undefined,
      case: target.describe(c),
    });
  }
  report({ ev: "done", runs: runsDone, bytes, outcomes, interrupted: details.interrupted });
}

main().then(
  () => process.exit(0),
  (e) => {
    report({ ev: "crash", error: errorLine(e), stack: e instanceof Error ? e.stack : undefined });
    process.exit(3);
  },
);
