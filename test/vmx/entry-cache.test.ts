// Host-state checks are skipped on entries after one that passed them, until a VMWRITE touches a
// field they read: an invalid host state written between two entries must still fail with error 8.
import { describe, expect, it } from "vitest";
import { F, VmxInstructionError } from "../../lib/vmx/index.js";
import { hltStep } from "./fake-cpu.js";
import { rig } from "./setup.js";

function failure(run: () => unknown): VmxInstructionError {
  try {
    run();
  } catch (e) {
    if (e instanceof VmxInstructionError) return e;
    throw e;
  }
  throw new Error("the entry succeeded");
}

describe("host-state checks after a successful entry", () => {
  it("a host field written between entries is checked again (error 8)", () => {
    const r = rig();
    r.cpu.program[0] = hltStep;
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    r.lp.vmwrite(F.HOST_CS_SELECTOR, 0);
    expect(failure(() => r.lp.vmresume()).number).toBe(8);
    r.lp.vmwrite(F.HOST_CS_SELECTOR, 8);
    expect(r.lp.vmresume()).toBe(12);
  });

  it("clearing host address-space size in the exit controls is checked again (error 8)", () => {
    const r = rig();
    r.cpu.program[0] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    r.lp.vmwrite(F.VM_EXIT_CONTROLS, r.lp.vmread(F.VM_EXIT_CONTROLS) & ~(1n << 9n));
    expect(failure(() => r.lp.vmresume()).number).toBe(8);
  });

  it("a VMCS loaded from memory (VMCLEAR + VMPTRLD) is checked again", () => {
    const r = rig();
    r.cpu.program[0] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    r.lp.vmwrite(F.HOST_TR_SELECTOR, 0x1b); // RPL set
    r.lp.vmclear(r.vmcs);
    r.lp.vmptrld(r.vmcs);
    expect(failure(() => r.lp.vmlaunch()).number).toBe(8);
  });
});
