import { describe, expect, it } from "vitest";
import type { LogicalProcessor } from "../../lib/vmx/index.js";
import { EntryCtl, F, Pin, Proc, Proc2, VmxInstructionError } from "../../lib/vmx/index.js";
import { hltStep } from "./fake-cpu.js";
import { rig } from "./setup.js";

type Mutation = [string, (lp: LogicalProcessor) => void];
const or = (lp: LogicalProcessor, enc: number, bits: bigint) => lp.vmwrite(enc, lp.vmread(enc) | bits);
const andNot = (lp: LogicalProcessor, enc: number, bits: bigint) => lp.vmwrite(enc, lp.vmread(enc) & ~bits);

const INVALID_GUEST: Mutation[] = [
  ["CR0.PE=0 without unrestricted guest", (lp) => andNot(lp, F.GUEST_CR0, 1n)],
  ["CR0.NE=0", (lp) => andNot(lp, F.GUEST_CR0, 0x20n)],
  ["CR0 bit 32 set", (lp) => or(lp, F.GUEST_CR0, 1n << 32n)],
  ["CR4.VMXE=0", (lp) => andNot(lp, F.GUEST_CR4, 0x2000n)],
  ["CR4 unsupported bit", (lp) => or(lp, F.GUEST_CR4, 1n << 12n)],
  ["IA-32e guest without CR4.PAE", (lp) => or(lp, F.VM_ENTRY_CONTROLS, BigInt(EntryCtl.IA32E_MODE))],
  ["RFLAGS bit 1 clear", (lp) => lp.vmwrite(F.GUEST_RFLAGS, 0n)],
  ["RFLAGS reserved bit 3", (lp) => lp.vmwrite(F.GUEST_RFLAGS, 0xan)],
  ["RIP bits 63:32 outside 64-bit mode", (lp) => lp.vmwrite(F.GUEST_RIP, 1n << 32n)],
  ["CS type data (no UG)", (lp) => lp.vmwrite(F.GUEST_CS_AR_BYTES, 0xc093)],
  ["CS not present", (lp) => andNot(lp, F.GUEST_CS_AR_BYTES, 0x80n)],
  ["CS unusable", (lp) => or(lp, F.GUEST_CS_AR_BYTES, 0x10000n)],
  ["CS limit/G inconsistent", (lp) => lp.vmwrite(F.GUEST_CS_LIMIT, 0xfffff000)],
  ["SS type code", (lp) => lp.vmwrite(F.GUEST_SS_AR_BYTES, 0xc09b)],
  ["SS.RPL != CS.RPL", (lp) => lp.vmwrite(F.GUEST_SS_SELECTOR, 0x13)],
  ["DS not accessed", (lp) => lp.vmwrite(F.GUEST_DS_AR_BYTES, 0xc092)],
  ["DS reserved AR bits", (lp) => or(lp, F.GUEST_DS_AR_BYTES, 0x100n)],
  ["FS base not canonical", (lp) => lp.vmwrite(F.GUEST_FS_BASE, 0x0000_8000_0000_0000n)],
  ["TR not busy", (lp) => lp.vmwrite(F.GUEST_TR_AR_BYTES, 0x89)],
  ["TR unusable", (lp) => or(lp, F.GUEST_TR_AR_BYTES, 0x10000n)],
  ["TR selector TI", (lp) => lp.vmwrite(F.GUEST_TR_SELECTOR, 4)],
  ["LDTR usable with wrong type", (lp) => lp.vmwrite(F.GUEST_LDTR_AR_BYTES, 0x83)],
  ["GDTR limit bits 31:16", (lp) => lp.vmwrite(F.GUEST_GDTR_LIMIT, 0x10000)],
  ["IDTR base not canonical", (lp) => lp.vmwrite(F.GUEST_IDTR_BASE, 0x0001_0000_0000_0000n)],
  [
    "wait-for-SIPI with STI blocking",
    (lp) => {
      lp.vmwrite(F.GUEST_RFLAGS, 0x202);
      lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 1);
      lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    },
  ],
  [
    "NMI injected in wait-for-SIPI",
    (lp) => {
      lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000202);
    },
  ],
  [
    "#GP injected in shutdown",
    (lp) => {
      lp.vmwrite(F.GUEST_ACTIVITY_STATE, 2);
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000b0d);
      lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, 0);
    },
  ],
  ["activity 4", (lp) => lp.vmwrite(F.GUEST_ACTIVITY_STATE, 4)],
  [
    "HLT with SS.DPL 3",
    (lp) => {
      lp.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
      lp.vmwrite(F.GUEST_SS_AR_BYTES, 0xc0f3);
      lp.vmwrite(F.GUEST_SS_SELECTOR, 0x13);
      lp.vmwrite(F.GUEST_CS_SELECTOR, 0x0b);
      lp.vmwrite(F.GUEST_CS_AR_BYTES, 0xc0fb);
    },
  ],
  [
    "blocking by STI and MOV SS",
    (lp) => {
      lp.vmwrite(F.GUEST_RFLAGS, 0x202);
      lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 3);
    },
  ],
  ["blocking by STI with IF=0", (lp) => lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 1)],
  ["blocking by SMI", (lp) => lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 4)],
  ["interruptibility reserved bits", (lp) => lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 0x20)],
  ["external interrupt injected with IF=0", (lp) => lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000020)],
  [
    "external interrupt injected under MOV-SS blocking",
    (lp) => {
      lp.vmwrite(F.GUEST_RFLAGS, 0x202);
      lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 2);
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000020);
    },
  ],
  ["pending debug exceptions reserved bits", (lp) => lp.vmwrite(F.GUEST_PENDING_DBG_EXCEPTIONS, 0x10n)],
  ["VMCS link pointer not all-ones", (lp) => lp.vmwrite(F.VMCS_LINK_POINTER, 0n)],
  [
    "EFER.LMA without IA-32e mode (load EFER)",
    (lp) => {
      or(lp, F.VM_ENTRY_CONTROLS, BigInt(EntryCtl.LOAD_EFER));
      lp.vmwrite(F.GUEST_IA32_EFER, 0x500n);
    },
  ],
  [
    "PAT with an invalid type (load PAT)",
    (lp) => {
      or(lp, F.VM_ENTRY_CONTROLS, BigInt(EntryCtl.LOAD_PAT));
      lp.vmwrite(F.GUEST_IA32_PAT, 0x02n);
    },
  ],
];

describe("VM-entry guest-state checks", () => {
  it("the baseline guest state enters", () => {
    const r = rig({ proc: Proc.HLT });
    r.cpu.program[0] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
  });

  for (const [name, mutate] of INVALID_GUEST) {
    it(`${name}: VM exit with reason 33 and bit 31 set, host state loaded`, () => {
      const r = rig({ proc: Proc.HLT });
      r.cpu.program[0] = hltStep;
      mutate(r.lp);
      expect(r.lp.vmlaunch()).toBe(0x80000021);
      expect(r.lp.vmread(F.VM_EXIT_REASON)).toBe(0x80000021n);
      expect(r.lp.hostState?.rip).toBe(0xffffffff81000000n);
      expect(r.cpu.retired).toBe(0);
    });
  }

  it("the VMCS link-pointer failure reports qualification 4", () => {
    const r = rig();
    r.lp.vmwrite(F.VMCS_LINK_POINTER, 0n);
    r.lp.vmlaunch();
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(4n);
  });

  it("real mode needs unrestricted guest, which needs EPT", () => {
    const ok = rig({ realMode: true, proc: Proc.HLT });
    ok.cpu.program[0] = hltStep;
    expect(ok.lp.vmlaunch()).toBe(12);
    const noUg = rig({ realMode: true, proc: Proc.HLT });
    noUg.lp.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, Proc2.EPT);
    expect(noUg.lp.vmlaunch()).toBe(0x80000021);
  });

  it("a failing MSR-load list entry gives reason 34 with the entry number", () => {
    const r = rig();
    const list = r.mem.allocatePage();
    r.mem.writeU32(list, 0x10);
    r.mem.writeU32(list + 16, 0xdead);
    r.lp.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDR, list);
    r.lp.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 2);
    expect(r.lp.vmlaunch()).toBe((34 | 0x80000000) >>> 0);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(2n);
  });
});

const secondary = (lp: LogicalProcessor, value: number) => {
  or(lp, F.CPU_BASED_VM_EXEC_CONTROL, BigInt(Proc.SECONDARY));
  lp.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, value);
};

const INVALID_CONTROLS: Mutation[] = [
  ["pin-based reserved bit 8", (lp) => or(lp, F.PIN_BASED_VM_EXEC_CONTROL, 1n << 8n)],
  ["pin-based default1 bit cleared", (lp) => andNot(lp, F.PIN_BASED_VM_EXEC_CONTROL, 2n)],
  ["TPR shadow (unsupported)", (lp) => or(lp, F.CPU_BASED_VM_EXEC_CONTROL, BigInt(Proc.TPR_SHADOW))],
  [
    "posted interrupts (unsupported)",
    (lp) => or(lp, F.PIN_BASED_VM_EXEC_CONTROL, BigInt(Pin.POSTED_INTERRUPTS)),
  ],
  ["virtualize APIC accesses (unsupported)", (lp) => secondary(lp, 1)],
  ["CR3-target count 5", (lp) => lp.vmwrite(F.CR3_TARGET_COUNT, 5)],
  [
    "I/O bitmap misaligned",
    (lp) => {
      or(lp, F.CPU_BASED_VM_EXEC_CONTROL, BigInt(Proc.USE_IO_BITMAPS));
      lp.vmwrite(F.IO_BITMAP_A, 0x1008n);
    },
  ],
  [
    "MSR bitmap beyond MAXPHYADDR",
    (lp) => {
      or(lp, F.CPU_BASED_VM_EXEC_CONTROL, BigInt(Proc.USE_MSR_BITMAPS));
      lp.vmwrite(F.MSR_BITMAP, 1n << 40n);
    },
  ],
  ["virtual NMIs without NMI exiting", (lp) => or(lp, F.PIN_BASED_VM_EXEC_CONTROL, BigInt(Pin.VIRTUAL_NMIS))],
  [
    "NMI-window exiting without virtual NMIs",
    (lp) => or(lp, F.CPU_BASED_VM_EXEC_CONTROL, BigInt(Proc.NMI_WINDOW)),
  ],
  [
    "EPT with a 5-level walk",
    (lp) => {
      secondary(lp, Proc2.EPT);
      lp.vmwrite(F.EPT_POINTER, (lp.vmread(F.EPT_POINTER) & ~0x38n) | (4n << 3n));
    },
  ],
  ["unrestricted guest without EPT", (lp) => secondary(lp, Proc2.UNRESTRICTED_GUEST)],
  ["VPID 0 with VPID enabled", (lp) => secondary(lp, Proc2.VPID)],
  ["injection type 1", (lp) => lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000120)],
  ["NMI injection with vector 3", (lp) => lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000203)],
  ["error code for #UD", (lp) => lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000b06)],
  ["software interrupt with length 0", (lp) => lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000480)],
  [
    "MSR-load list misaligned",
    (lp) => {
      lp.vmwrite(F.VM_ENTRY_MSR_LOAD_COUNT, 1);
      lp.vmwrite(F.VM_ENTRY_MSR_LOAD_ADDR, 0x1004n);
    },
  ],
];

const INVALID_HOST: Mutation[] = [
  ["host CR0.PG=0", (lp) => andNot(lp, F.HOST_CR0, 0x80000000n)],
  ["host CR4.VMXE=0", (lp) => andNot(lp, F.HOST_CR4, 0x2000n)],
  ["host CR3 beyond MAXPHYADDR", (lp) => lp.vmwrite(F.HOST_CR3, 1n << 45n)],
  ["host CS selector 0", (lp) => lp.vmwrite(F.HOST_CS_SELECTOR, 0)],
  ["host TR selector 0", (lp) => lp.vmwrite(F.HOST_TR_SELECTOR, 0)],
  ["host SS selector RPL 3", (lp) => lp.vmwrite(F.HOST_SS_SELECTOR, 0x13)],
  ["host RIP not canonical", (lp) => lp.vmwrite(F.HOST_RIP, 0x0000_9000_0000_0000n)],
  ["host GS base not canonical", (lp) => lp.vmwrite(F.HOST_GS_BASE, 0x0000_9000_0000_0000n)],
  ["host address-space size 0", (lp) => andNot(lp, F.VM_EXIT_CONTROLS, 1n << 9n)],
];

describe("VM-entry control and host-state checks", () => {
  for (const [list, number] of [
    [INVALID_CONTROLS, 7],
    [INVALID_HOST, 8],
  ] as const) {
    for (const [name, mutate] of list) {
      it(`${name}: VMfailValid(${number})`, () => {
        const r = rig();
        mutate(r.lp);
        let err: unknown;
        try {
          r.lp.vmlaunch();
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(VmxInstructionError);
        expect((err as VmxInstructionError).number).toBe(number);
        expect(r.lp.rflags & 0x41).toBe(0x40);
        expect(r.lp.vmread(F.VM_INSTRUCTION_ERROR)).toBe(BigInt(number));
      });
    }
  }
});
