import { describe, expect, it } from "vitest";
import {
  CAPABILITY_MSRS,
  F,
  HostMemory,
  LogicalProcessor,
  Msr,
  VMCS_REGION_SIZE,
  VMCS_REVISION_ID,
  VmxFaultError,
  VmxInstructionError,
} from "../../lib/vmx/index.js";
import { FakeCpu, hltStep } from "./fake-cpu.js";
import { newRegion, rig } from "./setup.js";

function fresh() {
  const mem = new HostMemory();
  const lp = new LogicalProcessor({ memory: mem, cpu: new FakeCpu() });
  return { mem, lp };
}

/** runs fn and returns the VMX error it threw (failing the test when it did not throw one) */
function vmxError(fn: () => unknown): VmxInstructionError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VmxInstructionError) return e;
    throw e;
  }
  throw new Error("expected a VmxInstructionError");
}

describe("VMXON / VMXOFF", () => {
  it("enters VMX operation with a matching revision and reports VMsucceed", () => {
    const { mem, lp } = fresh();
    lp.vmxon(newRegion(mem));
    expect(lp.inVmxOperation).toBe(true);
    expect(lp.rflags & 0x8d5).toBe(0);
  });

  it("fails invalid with a wrong revision, a misaligned or unbacked address", () => {
    const { mem, lp } = fresh();
    for (const addr of [newRegion(mem, 0x1234), newRegion(mem) + 8, 0x7000_0000]) {
      const e = vmxError(() => lp.vmxon(addr));
      expect(e.outcome).toBe("VMfailInvalid");
      expect(lp.rflags & 1).toBe(1);
    }
    expect(lp.inVmxOperation).toBe(false);
  });

  it("VMXON in VMX root operation: VMfailInvalid without a current VMCS, error 15 with one", () => {
    const { mem, lp } = fresh();
    lp.vmxon(newRegion(mem));
    expect(vmxError(() => lp.vmxon(newRegion(mem))).outcome).toBe("VMfailInvalid");
    lp.vmptrld(newRegion(mem));
    const e = vmxError(() => lp.vmxon(newRegion(mem)));
    expect([e.outcome, e.number]).toEqual(["VMfailValid", 15]);
    expect(e.meaning).toMatch(/VMXON executed in VMX root/);
    expect(lp.rflags & 0x40).toBe(0x40);
    expect(lp.vmread(F.VM_INSTRUCTION_ERROR)).toBe(15n);
  });

  it("VMX instructions outside VMX operation raise #UD", () => {
    const { mem, lp } = fresh();
    expect(() => lp.vmptrld(newRegion(mem))).toThrow(VmxFaultError);
    expect(() => lp.vmread(F.GUEST_RIP)).toThrow(/#UD/);
    expect(() => lp.vmxoff()).toThrow(VmxFaultError);
  });
});

describe("VMPTRLD / VMPTRST / VMCLEAR", () => {
  it("error 9 for an invalid address, 10 for the VMXON pointer, 11 for a wrong revision or shadow bit", () => {
    const { mem, lp } = fresh();
    const vmxon = newRegion(mem);
    lp.vmxon(vmxon);
    lp.vmptrld(newRegion(mem)); // so failures are VMfailValid
    expect(vmxError(() => lp.vmptrld(0x123)).number).toBe(9);
    expect(vmxError(() => lp.vmptrld(0x7000_0000)).number).toBe(9);
    expect(vmxError(() => lp.vmptrld(vmxon)).number).toBe(10);
    expect(vmxError(() => lp.vmptrld(newRegion(mem, 0x42))).number).toBe(11);
    expect(vmxError(() => lp.vmptrld(newRegion(mem, (VMCS_REVISION_ID | 0x80000000) >>> 0))).number).toBe(11);
    expect(lp.vmread(F.VM_INSTRUCTION_ERROR)).toBe(11n);
  });

  it("without a current VMCS the same failures are VMfailInvalid", () => {
    const { mem, lp } = fresh();
    const vmxon = newRegion(mem);
    lp.vmxon(vmxon);
    const e = vmxError(() => lp.vmptrld(vmxon));
    expect(e.outcome).toBe("VMfailInvalid");
    expect(e.number).toBe(0);
  });

  it("VMPTRST returns the current pointer, all-ones when none", () => {
    const { mem, lp } = fresh();
    lp.vmxon(newRegion(mem));
    expect(lp.vmptrst()).toBe(0xffffffffffffffffn);
    const v = newRegion(mem);
    lp.vmptrld(v);
    expect(lp.vmptrst()).toBe(BigInt(v));
    lp.vmclear(v);
    expect(lp.vmptrst()).toBe(0xffffffffffffffffn);
  });

  it("VMCLEAR error 2 for an invalid address and 3 for the VMXON pointer", () => {
    const { mem, lp } = fresh();
    const vmxon = newRegion(mem);
    lp.vmxon(vmxon);
    lp.vmptrld(newRegion(mem));
    expect(vmxError(() => lp.vmclear(0x1001)).number).toBe(2);
    expect(vmxError(() => lp.vmclear(vmxon)).number).toBe(3);
  });

  it("VMCLEAR flushes the cached data to the region", () => {
    const { mem, lp } = fresh();
    lp.vmxon(newRegion(mem));
    const v = newRegion(mem);
    lp.vmptrld(v);
    lp.vmwrite(F.GUEST_RIP, 0x1234_5678_9abcn);
    const before = mem.read(v, VMCS_REGION_SIZE);
    lp.vmclear(v);
    const after = mem.read(v, VMCS_REGION_SIZE);
    expect(after).not.toEqual(before);
    lp.vmptrld(v);
    expect(lp.vmread(F.GUEST_RIP)).toBe(0x1234_5678_9abcn);
  });
});

describe("VMREAD / VMWRITE outcomes", () => {
  it("no current VMCS: VMfailInvalid", () => {
    const { mem, lp } = fresh();
    lp.vmxon(newRegion(mem));
    expect(vmxError(() => lp.vmread(F.GUEST_RIP)).outcome).toBe("VMfailInvalid");
    expect(vmxError(() => lp.vmwrite(F.GUEST_RIP, 1n)).outcome).toBe("VMfailInvalid");
  });

  it("unsupported encodings give error 12, read-only fields error 13", () => {
    const { lp } = rig();
    for (const enc of [0x0001, 0x6801, 0x2030, 0x1000, 0x8000, 0x4830, 0xffffffff, -1]) {
      expect(vmxError(() => lp.vmread(enc)).number).toBe(12);
    }
    expect(vmxError(() => lp.vmwrite(F.VM_EXIT_REASON, 1n)).number).toBe(13);
    expect(vmxError(() => lp.vmwrite(F.GUEST_PHYSICAL_ADDRESS + 1, 1n)).number).toBe(13);
    expect(vmxError(() => lp.vmwrite(F.EXIT_QUALIFICATION, 1n)).meaning).toMatch(/read-only/);
  });
});

describe("launch state", () => {
  it("VMRESUME of a clear VMCS is error 5; VMLAUNCH of a launched one is error 4; VMCLEAR makes it clear", () => {
    const { lp, cpu, vmcs } = rig();
    cpu.program[0] = hltStep;
    lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, lp.vmread(F.CPU_BASED_VM_EXEC_CONTROL) | (1n << 7n));
    expect(vmxError(() => lp.vmresume()).number).toBe(5);
    expect(lp.vmlaunch()).toBe(12);
    expect(vmxError(() => lp.vmlaunch()).number).toBe(4);
    expect(lp.vmresume()).toBe(12);
    lp.vmclear(vmcs);
    lp.vmptrld(vmcs);
    expect(vmxError(() => lp.vmresume()).number).toBe(5);
    expect(lp.vmlaunch()).toBe(12);
  });

  it("VMRESUME after VMXOFF and VMXON is error 6", () => {
    const { lp, vmcs, mem } = rig();
    expect(lp.vmlaunch()).toBe(12);
    lp.vmxoff();
    lp.vmxon(newRegion(mem));
    lp.vmptrld(vmcs);
    expect(vmxError(() => lp.vmresume()).number).toBe(6);
  });

  it("VMLAUNCH / VMRESUME without a current VMCS fail invalid", () => {
    const { lp, vmcs } = rig();
    lp.vmclear(vmcs);
    expect(vmxError(() => lp.vmlaunch()).outcome).toBe("VMfailInvalid");
    expect(vmxError(() => lp.vmresume()).outcome).toBe("VMfailInvalid");
  });

  it("a failed entry (invalid guest state) leaves the launch state clear", () => {
    const { lp } = rig();
    lp.vmwrite(F.GUEST_RFLAGS, 0n);
    expect(lp.vmlaunch()).toBe((33 | 0x80000000) >>> 0);
    expect(vmxError(() => lp.vmresume()).number).toBe(5);
  });
});

describe("INVEPT / INVVPID", () => {
  it("error 28 for an unsupported type", () => {
    const { lp, cpu } = rig();
    expect(vmxError(() => lp.invept(3)).number).toBe(28);
    expect(vmxError(() => lp.invvpid(4)).number).toBe(28);
    const flushes = cpu.tlbFlushes;
    lp.invept(2);
    expect(cpu.tlbFlushes).toBe(flushes + 1);
  });
});

describe("capability MSRs", () => {
  it("IA32_VMX_BASIC reports the revision, region size, WB type and true controls", () => {
    const { lp } = fresh();
    const basic = lp.readMsr(Msr.VMX_BASIC)!;
    expect(Number(basic & 0x7fffffffn)).toBe(VMCS_REVISION_ID);
    expect(Number((basic >> 32n) & 0x1fffn)).toBe(4096);
    expect(Number((basic >> 50n) & 0xfn)).toBe(6);
    expect((basic >> 55n) & 1n).toBe(1n);
    expect((basic >> 48n) & 1n).toBe(0n);
  });

  it("every control MSR's allowed-0 settings are a subset of its allowed-1 settings", () => {
    for (const msr of [0x481, 0x482, 0x483, 0x484, 0x48b, 0x48d, 0x48e, 0x48f, 0x490]) {
      const v = CAPABILITY_MSRS.get(msr)!;
      const must = Number(v & 0xffffffffn);
      const may = Number(v >> 32n);
      expect((must & ~may) >>> 0).toBe(0);
    }
    expect(
      new LogicalProcessor({ memory: new HostMemory(), cpu: new FakeCpu() }).readMsr(0x10),
    ).toBeUndefined();
  });

  it("VMCS_ENUM reports the highest field index in use", () => {
    expect(CAPABILITY_MSRS.get(Msr.VMX_VMCS_ENUM)).toBe(BigInt(0x19 << 1));
  });
});
