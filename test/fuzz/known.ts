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
    signature:
      /^(guest|image) run internal-error: .*EPT violation outside guest RAM that is not a data access/,
    note: "a guest that jumps to (or walks page tables in) guest-physical memory with no RAM behind it ends the run as internal-error (soft backend EPT handling): it should be a defined stop (or an all-ones fetch), not an internal error",
  },
  {
    signature:
      /^guest stuck on (fxsave|fxrstor|fxsave64|fxrstor64|xsave|xrstor|fsave|fnsave|frstor|fstenv|fnstenv|fldenv|enter)\b/,
    note: "the instructions whose memory operand is larger than 16 bytes (FXSAVE/FXRSTOR, the x87 environment and state) or that write several stack slots (ENTER with a nesting level) still repeat an MMIO access without completing (lib/cpu: their accesses bypass the per-instruction MMIO log); every other form completes once",
  },
  {
    signature: /^guest run fail-entry: /,
    note: "a guest-caused VM-entry failure: the interpreter left a guest state no CPU could be in and the next VM entry's full checks (entryChecks.all, on while fuzzing) caught it (exit reason 0x80000021). The case found so far, far JMP/CALL/RET/IRET in real mode past CS's limit, is fixed (#GP); a new one is a bug in lib/cpu",
  },
];

export function knownBug(signature: string): KnownBug | undefined {
  return KNOWN_BUGS.find((k) => k.signature.test(signature));
}
