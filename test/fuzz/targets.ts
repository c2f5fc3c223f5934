// The fuzz targets by name (npm run fuzz -- --target NAME), in the order a run takes turns.

import fc from "fast-check";
import { apiTarget } from "./api.js";
import { bindingTarget } from "./binding.js";
import { guestTarget } from "./guest-code.js";
import { imageTarget } from "./images.js";
import type { FuzzTarget } from "./target.js";

/** Each target's case type stays inside it; the runner only passes cases back to the same target. */
const erase = <C>(t: FuzzTarget<C>): FuzzTarget<unknown> => t as unknown as FuzzTarget<unknown>;

/**
 * Checks the runner itself (test/fuzz/runner.test.ts): an even case kills its
 * process with SIGSEGV, as a crash in native code would. Only with NODEVMM_FUZZ_SELFTEST=1.
 */
const selftest: FuzzTarget<number> = {
  name: "selftest",
  about: "the runner reports a child that dies of a signal, with the case that killed it",
  arbitrary: fc.nat(1000),
  async run(n) {
    if (n % 2 === 0) process.kill(process.pid, "SIGSEGV");
    return { outcome: "ok", bytes: n % 10 };
  },
  describe: (n) => `case ${n}`,
};

export const TARGETS: Record<string, FuzzTarget<unknown>> = {
  guest: erase(guestTarget),
  image: erase(imageTarget),
  api: erase(apiTarget),
  binding: erase(bindingTarget),
  ...(process.env.NODEVMM_FUZZ_SELFTEST === "1" ? { selftest: erase(selftest) } : {}),
};
