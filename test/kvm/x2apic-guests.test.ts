// The x2APIC team guests on KVM's in-kernel local APIC, the reference for what the soft backend
// prints (test/soft/x2apic-guests.test.ts): the #GP guest and the two-vCPU IPI guest. They wait on
// interrupts, never on time. The TSC-deadline guest is left to the soft backend's deterministic
// run: on KVM its margins between two instructions would be host time, which a loaded host (or
// the nested lane's emulated CPU) can stretch.

import { describe, expect, it } from "vitest";
import { kvmComparable, runGuest, X2APIC_FAULTS_OUT, X2APIC_IPI_OUT } from "../support/x2apic-guests.js";
import { probe } from "./helpers.js";

const kvmSkip = probe.usable ? "" : ` (skipped: ${probe.reason})`;
describe.skipIf(!probe.usable)(`the x2APIC guests on KVM's in-kernel irqchip${kvmSkip}`, () => {
  it("x2apic-faults: KVM agrees but for the reserved bits it does not check", async () => {
    const kvm = await runGuest("x2apic-faults", 64, { backend: "kvm" });
    expect(kvm.result.reason).toBe("hlt");
    expect(kvmComparable(kvm.out)).toBe(kvmComparable(X2APIC_FAULTS_OUT));
  });
  it("x2apic-ipi on two vCPUs: KVM prints what the soft backend prints", async () => {
    const kvm = await runGuest("x2apic-ipi", 64, { backend: "kvm", vcpus: 2 });
    expect(kvm.out).toBe(X2APIC_IPI_OUT);
    expect(kvm.result.exitCode).toBe(1);
  });
});
