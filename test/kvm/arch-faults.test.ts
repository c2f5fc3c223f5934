// The guests of test/soft/arch-faults.test.ts that fault alike on every x86 CPU, run on KVM (the
// nested-KVM lane): the vector and the RIP in the exception frame must be what the soft backend
// reports, which the soft suite checks against the same table (test/support/fault-guest.ts).
import { describe, expect, it } from "vitest";
import { FAULTS_EVERYWHERE, runFaultGuest } from "../support/fault-guest.js";
import { probe, skipReason } from "./helpers.js";

const hex = (s: string): number[] => s.split(/\s+/).map((x) => Number.parseInt(x, 16));

describe.skipIf(!probe.usable)(`guest writes that fault, on KVM${skipReason}`, () => {
  it.each(FAULTS_EVERYWHERE.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const r = await runFaultGuest(c.mode, hex(c.code), { backend: "kvm" });
    expect(r.result.reason, r.result.message).toBe("hlt");
    expect(r.vectors).toEqual(c.vectors);
    if (c.frameRip !== undefined) expect(r.frameRip).toBe(c.frameRip);
  });
});
