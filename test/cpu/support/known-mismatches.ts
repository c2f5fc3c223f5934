// Interpreter bugs the differential suite has found and that are not fixed yet, each with a minimal
// failing case in test/cpu/differential-regressions.test.ts. A random mismatch whose shrunk case
// matches one of these is reported but does not fail the random suite (the regression test tracks
// it); any other mismatch fails. Delete an entry when its regression test starts passing.

import type { DiffCase } from "./diff-cases.js";

export interface KnownMismatch {
  id: string;
  description: string;
  matches(c: DiffCase): boolean;
}

// Found and fixed so far (regression cases in differential-regressions.test.ts): PINSRW/PEXTRW/
// PSHUFLW/PSHUFHW and MOVDQU raising #UD; 32-bit shifts/rotates/SHLD/SHRD with a masked count of 0
// not zero-extending the destination register; CMPXCHG16B on a misaligned operand running instead of raising #GP(0); LOCK on
// a register destination or a non-lockable instruction running instead of raising #UD.
export const KNOWN_MISMATCHES: KnownMismatch[] = [];

export function knownMismatch(c: DiffCase): KnownMismatch | undefined {
  return KNOWN_MISMATCHES.find((k) => k.matches(c));
}
