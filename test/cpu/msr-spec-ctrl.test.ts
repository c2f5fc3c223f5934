// IA32_SPEC_CTRL and IA32_PRED_CMD, which CPUID.7.0:EDX[26] (IBRS/IBPB) enumerates: SPEC_CTRL keeps
// IBRS (bit 0) and BHI_DIS_S (bit 10, CPUID.7.2:EDX[4]) as written and refuses the bits of
// features not enumerated (STIBP, SSBD); PRED_CMD
// is write-only and takes IBPB (bit 0) alone. Anything else is #GP (WRMSR/RDMSR report false /
// undefined, which the executor turns into #GP(0)). Both are carried with the vCPU (the stored MSRs).

import { describe, expect, it } from "vitest";
import { cpuidModel } from "../../lib/cpu/cpuid.js";
import { Interpreter } from "../../lib/cpu/interpreter.js";

describe("IA32_SPEC_CTRL and IA32_PRED_CMD", () => {
  it("are enumerated by CPUID.7.0:EDX[26], BHI_DIS_S by CPUID.7.2:EDX[4]", () => {
    expect((cpuidModel(7, 0, 0)[3] >>> 26) & 1).toBe(1);
    expect(cpuidModel(7, 0, 0)[0]).toBeGreaterThanOrEqual(2);
    expect((cpuidModel(7, 2, 0)[3] >>> 4) & 1).toBe(1);
  });

  it("SPEC_CTRL keeps IBRS and BHI_DIS_S and refuses reserved bits", () => {
    const cpu = new Interpreter();
    expect(cpu.getMsr(0x48)).toBe(0n);
    expect(cpu.setMsr(0x48, 1n)).toBe(true);
    expect(cpu.getMsr(0x48)).toBe(1n);
    for (const bad of [2n, 4n, 1n << 63n, 3n, 0x800n])
      expect(cpu.setMsr(0x48, bad), `0x${bad.toString(16)}`).toBe(false);
    expect(cpu.getMsr(0x48)).toBe(1n);
    expect(cpu.setMsr(0x48, 0x401n)).toBe(true);
    expect(cpu.getMsr(0x48)).toBe(0x401n);
    // kept with the MSRs a vCPU carries between threads and into snapshots
    expect(cpu.otherMsrs.get(0x48)).toBe(0x401n);
    expect(cpu.setMsr(0x48, 0n)).toBe(true);
    expect(cpu.getMsr(0x48)).toBe(0n);
  });

  it("PRED_CMD takes IBPB, refuses other bits and cannot be read", () => {
    const cpu = new Interpreter();
    expect(cpu.setMsr(0x49, 1n)).toBe(true);
    expect(cpu.setMsr(0x49, 0n)).toBe(true);
    expect(cpu.setMsr(0x49, 2n)).toBe(false);
    expect(cpu.getMsr(0x49)).toBeUndefined();
  });
});
