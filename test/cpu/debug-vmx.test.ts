// #DB under the software VT-x (SDM 25.2, 27.2.1, 26.7.3): with exception-bitmap bit 1 a #DB from a
// debug condition exits with interruption type 3 and the DR6-style bits as qualification (DR6 left
// alone), ICEBP exits as a privileged software exception with its length, and the pending debug
// exceptions VM entry loads are delivered before the first instruction.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { F } from "../../lib/vmx/index.js";
import { type RigOptions, rigWith } from "../vmx/setup.js";
import { BS, dr7For } from "./debug-support.js";

const RAM = 1 << 20;

function guest(code: number[], opts: RigOptions = {}) {
  const r = rigWith(new Interpreter(), { realMode: true, ...opts });
  const ram = r.mem.allocate(RAM);
  r.ept.map(0, ram.hpa, RAM);
  ram.bytes.set(code, 0x1000);
  r.lp.vmwrite(F.GUEST_RIP, 0x1000);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  r.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 1);
  return r;
}

describe("#DB under VMX", () => {
  it("TF: the single-step trap exits with qualification BS, RIP past the instruction", () => {
    const g = guest([0x90, 0x90, 0xf4]);
    g.lp.vmwrite(F.GUEST_RFLAGS, 0x102);
    g.cpu.setControl("dr6", 0xffff0ff0n);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000301n);
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(BigInt(BS));
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1001n);
    expect(g.cpu.getControl("dr6")).toBe(0xffff0ff0n);
  });

  it("an instruction breakpoint exits before its instruction with B0", () => {
    const g = guest([0x90, 0x90, 0xf4]);
    g.cpu.dr[0] = 0x1001;
    g.lp.vmwrite(F.GUEST_DR7, dr7For(0, 0, 0) | 0x400n);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000301n);
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(1n);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1001n);
  });

  it("ICEBP exits as a privileged software exception (type 5) with its length, no qualification", () => {
    const g = guest([0xf1, 0xf4]);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000501n);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(1n);
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0n);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1000n);
  });

  it("pending debug exceptions loaded by VM entry: #DB before the first instruction, field cleared", () => {
    const g = guest([0x90, 0xf4]);
    g.lp.vmwrite(F.GUEST_PENDING_DBG_EXCEPTIONS, BS);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000301n);
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(BigInt(BS));
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1000n);
    expect(g.lp.vmread(F.GUEST_PENDING_DBG_EXCEPTIONS)).toBe(0n);
  });

  it("a trap held over MOV SS when an exit comes is saved as pending debug exceptions", () => {
    // mov ss, ax; hlt, with TF set and HLT exiting: the #DB for MOV SS waits for HLT, which exits
    const g = guest([0x8e, 0xd0, 0xf4], { proc: 0x80 });
    g.lp.vmwrite(F.GUEST_RFLAGS, 0x102);
    expect(g.lp.vmlaunch()).toBe(12);
    expect(g.lp.vmread(F.GUEST_PENDING_DBG_EXCEPTIONS)).toBe(BigInt(BS));
  });
});
