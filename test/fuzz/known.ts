// Failures the fuzzer has found that are reported and not yet fixed (each has an `it.fails` test in
// regressions.test.ts with its minimal case). A run counts them and prints one replay per kind but
// does not fail for them; `npm run fuzz -- --strict` (FUZZ_STRICT=1) does. When a fix lands, its
// regression test starts to pass, `it.fails` then fails, and the entry here goes.

export interface KnownBug {
  /** matched against an OracleViolation's signature */
  signature: RegExp;
  /** what is wrong and where it is reported */
  note: string;
}

export const KNOWN_BUGS: readonly KnownBug[] = [
  {
    signature: /^guest run fail-entry: /,
    note: "a guest-caused VM-entry failure: the interpreter left a guest state no CPU could be in and the next VM entry's full checks (entryChecks.all, on while fuzzing) caught it (exit reason 0x80000021). The case found so far, far JMP/CALL/RET/IRET in real mode past CS's limit, is fixed (#GP); a new one is a bug in lib/cpu",
  },
];

export function knownBug(signature: string): KnownBug | undefined {
  return KNOWN_BUGS.find((k) => k.signature.test(signature));
}
