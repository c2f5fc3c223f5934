// What every fuzz target gives the runner (scripts/fuzz/run.mjs, through test/fuzz/child.ts): a
// fast-check arbitrary of cases, a function that runs one case against its oracle, and a short
// description of a case for reports. A target throws OracleViolation when the host misbehaved; any
// other exception that reaches the runner is a violation too (it escaped the code under test).

import type fc from "fast-check";
import type { RunResult } from "../../lib/index.js";

/** What one case did, for the runner's figures. */
export interface CaseOutcome {
  /** how the case ended, e.g. a run reason or an error class ("hlt", "GuestImageError") */
  outcome: string;
  /** guest code or image bytes the case put through the VMM */
  bytes: number;
}

export interface FuzzTarget<C> {
  readonly name: string;
  /** one line: what is fuzzed and what the oracle is */
  readonly about: string;
  readonly arbitrary: fc.Arbitrary<C>;
  run(c: C): Promise<CaseOutcome>;
  /** a compact, replayable rendering of a case (hex of the bytes, the call made) */
  describe(c: C): string;
}

/** The host did something the oracle forbids. `signature` groups repeats of one bug. */
export class OracleViolation extends Error {
  override name = "OracleViolation";
  constructor(
    readonly signature: string,
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

export function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** "Name: message" of any thrown value, first line only. */
export function errorLine(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message.split("\n")[0]}`;
  return String(e);
}

/**
 * Where an error came from, as a signature: its class and the first stack frame in our sources
 * (messages carry values that differ between cases of one bug; frames do not).
 */
export function errorSignature(e: unknown): string {
  if (!(e instanceof Error)) return `non-Error ${typeof e}`;
  const frame = (e.stack ?? "")
    .split("\n")
    .slice(1)
    .map((l) => l.trim())
    .find((l) => /lib\/|test\//.test(l) && !l.includes("node_modules"));
  const where = frame?.match(/((?:lib|test)\/[^:)]+):(\d+)/);
  return `${e.name}${where ? ` at ${where[1]}:${where[2]}` : ""}`;
}

/** run reasons a run may end with whatever the guest does */
const DEFINED = new Set([
  "hlt",
  "shutdown",
  "reset",
  "poweroff",
  "debug-exit",
  "debug",
  "timeout",
  "max-exits",
  "max-instructions",
  "stopped",
]);

/**
 * The run ended for a reason the guest may cause: one of DEFINED, or a jump to guest-physical
 * memory with nothing behind it, which KVM stops as an emulation failure and the soft backend the
 * same way (test/kvm/outside-ram.test.ts compares).
 */
export function definedStop(r: Pick<RunResult, "reason" | "message">): boolean {
  if (DEFINED.has(r.reason)) return true;
  return (
    r.reason === "internal-error" &&
    /^internal error \(suberror 1\): emulation failure: instruction fetch from guest-physical /.test(
      r.message ?? "",
    )
  );
}
