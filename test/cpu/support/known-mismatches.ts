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
// not zero-extending the destination register.
export const KNOWN_MISMATCHES: KnownMismatch[] = [
  {
    id: "cmpxchg16b-alignment",
    description: "CMPXCHG16B on a memory operand that is not 16-byte aligned runs instead of raising #GP(0)",
    matches: (c) => /^cmpxchg16b /.test(c.insns[c.insns.length - 1]!.text),
  },
  {
    id: "lock-ud",
    description: "LOCK on a register destination or on CMP executes instead of raising #UD",
    matches: (c) => {
      const last = c.insns[c.insns.length - 1]!;
      return last.text.startsWith("lock ") && (!last.memWrite || last.text.startsWith("lock cmp"));
    },
  },
];

export function knownMismatch(c: DiffCase): KnownMismatch | undefined {
  return KNOWN_MISMATCHES.find((k) => k.matches(c));
}
