// The CR4 features the interpreter offers its guests (CPUID, lib/cpu/control-checks.ts CR4_OFFERED)
// must be ones IA32_VMX_CR4_FIXED1 allows: a guest that sets CR4.SMEP, SMAP or UMIP, as CPUID lets
// it, must still pass the VM-entry checks (SDM Vol. 3C 27.3.1.1), and a bit nobody offers must not.
import { describe, expect, it } from "vitest";
import { CR4_OFFERED } from "../../lib/cpu/index.js";
import { CAPABILITY_MSRS, CR4_FIXED1, F, Msr, Proc } from "../../lib/vmx/index.js";
import { hltStep } from "./fake-cpu.js";
import { rig } from "./setup.js";

describe("CR4 features and the VMX fixed bits", () => {
  it("IA32_VMX_CR4_FIXED1 allows every CR4 bit the interpreter offers, UMIP, PCIDE, SMEP and SMAP among them", () => {
    expect(BigInt(CR4_OFFERED) & ~CR4_FIXED1).toBe(0n);
    expect(CAPABILITY_MSRS.get(Msr.VMX_CR4_FIXED1)! & 0x320800n).toBe(0x320800n);
  });

  it.each([
    ["UMIP", 0x800n],
    ["SMEP", 0x100000n],
    ["SMAP", 0x200000n],
    ["FSGSBASE", 0x10000n],
    ["PKE", 0x400000n],
  ])("a guest CR4 with %s enters", (_name, bit) => {
    const r = rig({ proc: Proc.HLT });
    r.cpu.program[0] = hltStep;
    r.lp.vmwrite(F.GUEST_CR4, r.lp.vmread(F.GUEST_CR4) | bit);
    expect(r.lp.vmlaunch()).toBe(12); // HLT exit
  });

  it("a guest CR4 with LA57 (not offered) fails the entry checks", () => {
    const r = rig({ proc: Proc.HLT });
    r.cpu.program[0] = hltStep;
    r.lp.vmwrite(F.GUEST_CR4, r.lp.vmread(F.GUEST_CR4) | 0x1000n);
    expect(r.lp.vmlaunch()).toBe(0x80000021);
  });
});
