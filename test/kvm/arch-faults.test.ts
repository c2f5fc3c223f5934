// The guests of test/soft/arch-faults.test.ts that fault alike on every x86 CPU, run on KVM (the
// nested-KVM lane): the vector and the RIP in the exception frame must be what the soft backend
// reports, which the soft suite checks against the same table (test/support/fault-guest.ts).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { FAULTS_EVERYWHERE, runFaultGuest } from "../support/fault-guest.js";
import { probe, skipReason } from "./helpers.js";

const hex = (s: string): number[] => s.split(/\s+/).map((x) => Number.parseInt(x, 16));

/** the nested lane sets this inside its guest (scripts/test-kvm.mjs): KVM there is kvm_amd under QEMU TCG */
const nested = process.env.NODEVMM_IN_NESTED_KVM === "1";
const amd = (() => {
  try {
    return /^vendor_id\s*:\s*AuthenticAMD/m.test(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
})();

describe.skipIf(!probe.usable)(`guest writes that fault, on KVM${skipReason}`, () => {
  for (const c of FAULTS_EVERYWHERE) {
    const why = (nested && c.nestedDiffers) || (amd && c.amdDiffers) || undefined;
    it.skipIf(why !== undefined)(`${c.name}${why ? ` (skipped: ${why})` : ""}`, async () => {
      const r = await runFaultGuest(c.mode, hex(c.code), { backend: "kvm" });
      expect(r.result.reason, r.result.message).toBe("hlt");
      expect(r.vectors).toEqual(c.vectors);
      if (c.frameRip !== undefined) expect(r.frameRip).toBe(c.frameRip);
    });
  }
});
