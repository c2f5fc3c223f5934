import { describe, expect, it } from "vitest";
import { Access, EventType, EXIT, MMIO } from "../../lib/cpu/hooks.js";
import {
  EPT_OK,
  EPT_VIOLATION,
  ExitCtl,
  eptWalk,
  F,
  Pin,
  PREEMPTION_TIMER_RATE,
  Proc,
  Proc2,
} from "../../lib/vmx/index.js";
import { ctx, type FakeCpu, hltStep, type Step } from "./fake-cpu.js";
import { type Rig, rig } from "./setup.js";

const exitIf =
  (asks: (c: FakeCpu) => boolean): Step =>
  (c) =>
    asks(c) ? "exit" : undefined;

interface Case {
  name: string;
  on: { proc?: number; proc2?: number; pin?: number };
  step: Step;
  reason: number;
  qualification?: bigint;
  length?: number;
  setup?: (r: Rig) => void;
}

const CASES: Case[] = [
  { name: "HLT exiting", on: { proc: Proc.HLT }, step: hltStep, reason: 12, length: 1 },
  {
    name: "INVLPG exiting",
    on: { proc: Proc.INVLPG },
    step: exitIf((c) => c.hooks!.invlpg(0x4000, ctx(c))),
    reason: 14,
    qualification: 0x4000n,
  },
  {
    name: "RDTSC exiting",
    on: { proc: Proc.RDTSC },
    step: exitIf((c) => c.hooks!.rdtsc(false, ctx(c))),
    reason: 16,
  },
  {
    name: "RDTSCP exiting",
    on: { proc: Proc.RDTSC },
    step: exitIf((c) => c.hooks!.rdtsc(true, ctx(c))),
    reason: 51,
  },
  {
    name: "RDPMC exiting",
    on: { proc: Proc.RDPMC },
    step: exitIf((c) => c.hooks!.rdpmc(ctx(c))),
    reason: 15,
  },
  {
    name: "CR3-load exiting",
    on: { proc: Proc.CR3_LOAD },
    step: exitIf((c) => c.hooks!.crAccess({ type: "mov-to", cr: 3, gpr: 2, value: 0x5000n }, ctx(c))),
    reason: 28,
    qualification: 0x203n,
  },
  {
    name: "CR3-store exiting",
    on: { proc: Proc.CR3_STORE },
    step: exitIf((c) => c.hooks!.crAccess({ type: "mov-from", cr: 3, gpr: 1 }, ctx(c))),
    reason: 28,
    qualification: 0x113n,
  },
  {
    name: "CR8-load exiting",
    on: { proc: Proc.CR8_LOAD },
    step: exitIf((c) => c.hooks!.crAccess({ type: "mov-to", cr: 8, gpr: 0, value: 1n }, ctx(c))),
    reason: 28,
    qualification: 0x8n,
  },
  {
    name: "CR8-store exiting",
    on: { proc: Proc.CR8_STORE },
    step: exitIf((c) => c.hooks!.crAccess({ type: "mov-from", cr: 8, gpr: 3 }, ctx(c))),
    reason: 28,
    qualification: 0x318n,
  },
  {
    name: "MOV-DR exiting",
    on: { proc: Proc.MOV_DR },
    step: exitIf((c) => c.hooks!.drAccess(7, false, 5, ctx(c))),
    reason: 29,
    qualification: 0x517n,
  },
  {
    name: "unconditional I/O exiting",
    on: { proc: Proc.UNCOND_IO },
    step: exitIf((c) =>
      c.hooks!.io({ port: 0x3f8, size: 1, in: false, string: false, rep: false, immediate: false }, ctx(c)),
    ),
    reason: 30,
    qualification: 0x03f8_0000n,
  },
  {
    name: "MONITOR exiting",
    on: { proc: Proc.MONITOR },
    step: exitIf((c) => c.hooks!.other("monitor", ctx(c))),
    reason: 39,
  },
  {
    name: "MWAIT exiting",
    on: { proc: Proc.MWAIT },
    step: exitIf((c) => c.hooks!.other("mwait", ctx(c))),
    reason: 36,
  },
  {
    name: "PAUSE exiting",
    on: { proc: Proc.PAUSE },
    step: exitIf((c) => c.hooks!.other("pause", ctx(c))),
    reason: 40,
  },
  {
    name: "WBINVD exiting",
    on: { proc2: Proc2.WBINVD },
    step: exitIf((c) => c.hooks!.other("wbinvd", ctx(c))),
    reason: 54,
  },
  {
    name: "RDRAND exiting",
    on: { proc2: Proc2.RDRAND },
    step: exitIf((c) => c.hooks!.other("rdrand", ctx(c))),
    reason: 57,
  },
  {
    name: "descriptor-table exiting (LGDT)",
    on: { proc2: Proc2.DESC_TABLE },
    step: exitIf((c) => c.hooks!.descriptorTable("lgdt", ctx(c))),
    reason: 46,
  },
  {
    name: "descriptor-table exiting (LTR)",
    on: { proc2: Proc2.DESC_TABLE },
    step: exitIf((c) => c.hooks!.descriptorTable("ltr", ctx(c))),
    reason: 47,
  },
  {
    name: "exception bitmap (#UD)",
    on: {},
    setup: (r) => r.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 6),
    step: exitIf((c) => c.hooks!.event(6, EventType.HardwareException, undefined, undefined, ctx(c))),
    reason: 0,
  },
  {
    name: "#PF with error-code mask/match",
    on: {},
    setup: (r) => {
      r.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 14);
      r.lp.vmwrite(F.PAGE_FAULT_ERROR_CODE_MASK, 2);
      r.lp.vmwrite(F.PAGE_FAULT_ERROR_CODE_MATCH, 2);
    },
    step: exitIf((c) => c.hooks!.event(14, EventType.HardwareException, 2, 0xdead000, ctx(c))),
    reason: 0,
    qualification: 0xdead000n,
  },
  {
    name: "NMI exiting (event)",
    on: { pin: Pin.NMI_EXITING },
    step: exitIf((c) => c.hooks!.event(2, EventType.Nmi, undefined, undefined, ctx(c))),
    reason: 0,
  },
];

function runWith(c: Case, enabled: boolean): Rig {
  const r = rig(
    enabled ? { proc: (c.on.proc ?? 0) | Proc.HLT, proc2: c.on.proc2 ?? 0, pin: c.on.pin ?? 0 } : {},
  );
  if (enabled) c.setup?.(r);
  r.cpu.program[0] = c.step;
  r.lp.vmlaunch();
  return r;
}

describe("exit controls", () => {
  for (const c of CASES) {
    it(`${c.name}: on -> reason ${c.reason}; off -> the instruction runs`, () => {
      const on = runWith(c, true);
      expect(on.lp.vmread(F.VM_EXIT_REASON)).toBe(BigInt(c.reason));
      expect(on.lp.vmread(F.GUEST_RIP)).toBe(0n);
      if (c.qualification !== undefined) expect(on.lp.vmread(F.EXIT_QUALIFICATION)).toBe(c.qualification);
      if (c.length !== undefined) expect(on.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(BigInt(c.length));
      if (c.name === "HLT exiting") return;
      const off = runWith(c, false);
      // with the control clear the instruction executes and the guest reaches the HLT at RIP 1
      expect(off.lp.vmread(F.VM_EXIT_REASON)).toBe(12n);
      expect(off.lp.vmread(F.GUEST_RIP)).toBe(1n);
    });
  }

  it("CPUID, VMCALL, XSETBV and INVD always exit", () => {
    for (const [step, reason] of [
      [exitIf((c) => c.hooks!.cpuid(0, 0, ctx(c))), 10],
      [exitIf((c) => c.hooks!.vmxInstruction("vmcall", ctx(c))), 18],
      [exitIf((c) => c.hooks!.other("xsetbv", ctx(c))), 55],
      [exitIf((c) => c.hooks!.other("invd", ctx(c))), 13],
    ] as const) {
      const r = rig();
      r.cpu.program[0] = step;
      expect(r.lp.vmlaunch()).toBe(reason);
      expect(r.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(1n);
    }
  });

  it("exception exits record interruption info and error code", () => {
    const r = runWith(CASES.find((c) => c.name.startsWith("#PF"))!, true);
    expect(r.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(BigInt((0x80000000 | (3 << 8) | (1 << 11) | 14) >>> 0));
    expect(r.lp.vmread(F.VM_EXIT_INTR_ERROR_CODE)).toBe(2n);
    // a #PF whose error code does not match does not exit
    const miss = rig();
    miss.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 14);
    miss.lp.vmwrite(F.PAGE_FAULT_ERROR_CODE_MASK, 2);
    miss.lp.vmwrite(F.PAGE_FAULT_ERROR_CODE_MATCH, 2);
    miss.cpu.program[0] = exitIf((c) => c.hooks!.event(14, EventType.HardwareException, 0, 0, ctx(c)));
    expect(miss.lp.vmlaunch()).toBe(12);
  });

  it("I/O bitmaps select ports, including a multi-byte access straddling into a set bit", () => {
    const r = rig({ proc: Proc.HLT | Proc.USE_IO_BITMAPS });
    const a = r.mem.allocatePage();
    const b = r.mem.allocatePage();
    r.mem.writeU8(a + (0x71 >> 3), 1 << (0x71 & 7));
    r.mem.writeU8(b + (0x8001 & 0x7fff) / 8, 0);
    r.lp.vmwrite(F.IO_BITMAP_A, a);
    r.lp.vmwrite(F.IO_BITMAP_B, b);
    const io = (port: number, size: 1 | 2 | 4): Step =>
      exitIf((c) =>
        c.hooks!.io({ port, size, in: true, string: false, rep: false, immediate: true }, ctx(c)),
      );
    r.cpu.program[0] = io(0x70, 1);
    r.cpu.program[1] = io(0x8001, 4);
    r.cpu.program[2] = io(0x70, 2);
    expect(r.lp.vmlaunch()).toBe(30);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(2n);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(BigInt((0x70 << 16) | 0x40 | 0x8 | 1));
  });

  it("MSR bitmaps select RDMSR/WRMSR by index; outside the ranges always exits", () => {
    const r = rig({ proc: Proc.HLT | Proc.USE_MSR_BITMAPS });
    const bm = r.mem.allocatePage();
    r.mem.writeU8(bm + 0x800 + (0x10 >> 3), 1 << (0x10 & 7)); // write-low: 0x10
    r.mem.writeU8(bm + 0x400 + (0x80 >> 3), 1 << 0); // read-high: 0xC0000080
    r.lp.vmwrite(F.MSR_BITMAP, bm);
    r.cpu.program[0] = exitIf((c) => c.hooks!.rdmsr(0x10, ctx(c)));
    r.cpu.program[1] = exitIf((c) => c.hooks!.wrmsr(0xc0000081, 0n, ctx(c)));
    r.cpu.program[2] = exitIf((c) => c.hooks!.wrmsr(0x10, 0n, ctx(c)));
    expect(r.lp.vmlaunch()).toBe(32);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(2n);
    r.cpu.program[0] = exitIf((c) => c.hooks!.rdmsr(0xc0000080, ctx(c)));
    r.lp.vmwrite(F.GUEST_RIP, 0);
    expect(r.lp.vmresume()).toBe(31);
    r.cpu.program[0] = exitIf((c) => c.hooks!.rdmsr(0x4000_0000, ctx(c)));
    expect(r.lp.vmresume()).toBe(31);
  });

  it("CR0 guest/host mask: writes that change an owned bit from its shadow exit; reads see the shadow", () => {
    const r = rig();
    r.lp.vmwrite(F.CR0_GUEST_HOST_MASK, 0x20);
    r.lp.vmwrite(F.CR0_READ_SHADOW, 0x80000011);
    r.cpu.program[0] = (c) => {
      expect(c.getControl("cr0") & 0x20n).toBe(0n); // the interpreter sees the shadow's NE
      return undefined;
    };
    r.cpu.program[1] = exitIf((c) =>
      c.hooks!.crAccess({ type: "mov-to", cr: 0, gpr: 0, value: 0x80000011n }, ctx(c)),
    );
    r.cpu.program[2] = exitIf((c) =>
      c.hooks!.crAccess({ type: "mov-to", cr: 0, gpr: 0, value: 0x80000031n }, ctx(c)),
    );
    expect(r.lp.vmlaunch()).toBe(28);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(2n);
    // the host-owned bit keeps its true value in the VMCS
    expect(r.lp.vmread(F.GUEST_CR0) & 0x20n).toBe(0x20n);
  });

  it("CR3-target values suppress CR3-load exits", () => {
    const r = rig({ proc: Proc.HLT | Proc.CR3_LOAD });
    r.lp.vmwrite(F.CR3_TARGET_COUNT, 1);
    r.lp.vmwrite(F.CR3_TARGET_VALUE0, 0x5000n);
    r.cpu.program[0] = exitIf((c) =>
      c.hooks!.crAccess({ type: "mov-to", cr: 3, gpr: 0, value: 0x5000n }, ctx(c)),
    );
    expect(r.lp.vmlaunch()).toBe(12);
  });

  it("LMSW and CLTS against owned bits", () => {
    const r = rig();
    r.lp.vmwrite(F.CR0_GUEST_HOST_MASK, 0x9);
    r.lp.vmwrite(F.CR0_READ_SHADOW, 0x8);
    r.cpu.program[0] = exitIf((c) =>
      c.hooks!.crAccess({ type: "lmsw", source: 0x8, memoryOperand: false }, ctx(c)),
    );
    r.cpu.program[1] = exitIf((c) => c.hooks!.crAccess({ type: "clts" }, ctx(c)));
    expect(r.lp.vmlaunch()).toBe(28);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(1n);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x20n);
  });

  it("triple fault exits with reason 2", () => {
    const r = rig();
    r.cpu.program[0] = exitIf((c) => c.hooks!.tripleFault());
    expect(r.lp.vmlaunch()).toBe(2);
  });
});

describe("interrupts, windows, MTF and the preemption timer", () => {
  it("interrupt-window exiting fires once the guest is interruptible", () => {
    const r = rig({ proc: Proc.HLT | Proc.INTERRUPT_WINDOW });
    r.cpu.program[0] = (c) => {
      c.rflags |= 0x200n; // STI
      c.interruptibility = 1;
      return undefined;
    };
    r.cpu.program[1] = () => undefined;
    expect(r.lp.vmlaunch()).toBe(7);
    // the STI shadow covers the instruction after STI
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(1n);
  });

  it("without interrupt-window exiting the guest runs on", () => {
    const r = rig();
    r.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    expect(r.lp.vmlaunch()).toBe(12);
  });

  it("external-interrupt exiting with acknowledge-on-exit reports the vector", () => {
    const r = rig({ pin: Pin.EXTERNAL_INTERRUPT });
    let pending = true;
    r.lp.interrupts = {
      hasInterrupt: () => pending,
      acknowledge: () => {
        pending = false;
        return 0x30;
      },
    };
    r.lp.vmwrite(F.VM_EXIT_CONTROLS, r.lp.vmread(F.VM_EXIT_CONTROLS) | BigInt(ExitCtl.ACK_INTR_ON_EXIT));
    expect(r.lp.vmlaunch()).toBe(1);
    expect(r.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000030n);
    expect(pending).toBe(false);
  });

  it("NMI exiting on the NMI pin and NMI-window exiting", () => {
    const r = rig({ pin: Pin.NMI_EXITING });
    r.lp.nmiPending = true;
    expect(r.lp.vmlaunch()).toBe(0);
    expect(r.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000202n);
    const w = rig({ pin: Pin.NMI_EXITING | Pin.VIRTUAL_NMIS, proc: Proc.HLT | Proc.NMI_WINDOW });
    w.lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 8);
    w.cpu.program[0] = (c) => {
      c.interruptibility = 0; // IRET unblocks NMIs
      return undefined;
    };
    expect(w.lp.vmlaunch()).toBe(8);
    expect(w.lp.vmread(F.GUEST_RIP)).toBe(1n);
  });

  it("the monitor trap flag exits after one instruction", () => {
    const r = rig({ proc: Proc.HLT | Proc.MONITOR_TRAP_FLAG });
    r.cpu.program[0] = () => undefined;
    expect(r.lp.vmlaunch()).toBe(37);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(1n);
    expect(r.cpu.retired).toBe(1);
  });

  it("the preemption timer counts retired instructions >> the MISC rate and saves the remainder", () => {
    const r = rig({ pin: Pin.PREEMPTION_TIMER });
    for (let i = 0; i < 1000; i++) r.cpu.program[i] = () => undefined;
    r.lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 10);
    r.lp.vmwrite(F.VM_EXIT_CONTROLS, r.lp.vmread(F.VM_EXIT_CONTROLS) | BigInt(ExitCtl.SAVE_PREEMPTION_TIMER));
    expect(r.lp.vmlaunch()).toBe(52);
    expect(r.cpu.retired).toBe(10 * 2 ** PREEMPTION_TIMER_RATE);
    expect(r.lp.vmread(F.VMX_PREEMPTION_TIMER_VALUE)).toBe(0n);
  });

  it("a halted guest (HLT not exiting) is woken by the timer", () => {
    const r = rig({ proc: 0, pin: Pin.PREEMPTION_TIMER });
    r.lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 3);
    r.cpu.program[0] = hltStep;
    expect(r.lp.vmlaunch()).toBe(52);
    expect(r.lp.vmread(F.GUEST_ACTIVITY_STATE)).toBe(1n);
    expect(r.lp.tsc).toBe(3 * 2 ** PREEMPTION_TIMER_RATE);
  });

  it("event injection delivers the entry event, clears the valid bit, and wakes HLT", () => {
    const r = rig();
    r.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
    r.lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000021);
    expect(r.lp.vmlaunch()).toBe(12);
    expect(r.cpu.delivered).toEqual([{ vector: 0x21, type: 0, errorCode: undefined, length: 0 }]);
    expect(r.lp.vmread(F.VM_ENTRY_INTR_INFO_FIELD) >> 31n).toBe(0n);
    const sw = rig();
    sw.lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000b0d); // #GP with error code
    sw.lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, 0x18);
    sw.lp.vmlaunch();
    expect(sw.cpu.delivered[0]).toMatchObject({ vector: 13, type: 3, errorCode: 0x18 });
  });
});

describe("EPT", () => {
  it("translates through 2-MiB and 4-KiB pages and reports violations with permissions", () => {
    const r = rig({ realMode: true });
    const ram = r.mem.allocate(0x400000);
    r.ept.map(0, ram.hpa, 0x200000);
    r.ept.map(0x200000, ram.hpa + 0x200000, 0x1000, 1);
    expect(eptWalk(r.mem, r.ept.eptp, 0x1234, 1)).toMatchObject({ status: EPT_OK, hpa: ram.hpa + 0x1234 });
    expect(eptWalk(r.mem, r.ept.eptp, 0x200010, 1)).toMatchObject({
      status: EPT_OK,
      hpa: ram.hpa + 0x200010,
    });
    expect(eptWalk(r.mem, r.ept.eptp, 0x200010, 2)).toMatchObject({ status: EPT_VIOLATION, permissions: 1 });
    expect(eptWalk(r.mem, r.ept.eptp, 0x300000, 1)).toMatchObject({ status: EPT_VIOLATION, permissions: 0 });
  });

  it("an unmapped data access is an MMIO exit (48) with GPA, linear address and the access for the host", () => {
    const r = rig({ realMode: true });
    r.cpu.program[0] = (c) => {
      const hooks = c.hooks!;
      if (hooks.mapPage(0xfee00000, Access.Write, 0x1000, false) !== MMIO) throw new Error("expected MMIO");
      return hooks.mmio(0xfee00000, 4, true, 0xabcd, 0, 0x1000) === EXIT ? "exit" : undefined;
    };
    expect(r.lp.vmlaunch()).toBe(48);
    expect(r.lp.vmread(F.GUEST_PHYSICAL_ADDRESS)).toBe(0xfee00000n);
    expect(r.lp.vmread(F.GUEST_LINEAR_ADDRESS)).toBe(0x1000n);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(BigInt(2 | (1 << 7) | (1 << 8)));
    expect(r.lp.mmioAccess).toEqual({ gpa: 0xfee00000, size: 4, write: true, lo: 0xabcd, hi: 0 });
    // the host completes it; the re-executed instruction consumes the completion and continues
    r.lp.completeMmio({ gpa: 0xfee00000, size: 4, write: true, value: 0 });
    expect(r.lp.vmresume()).toBe(12);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(1n);
  });

  it("an instruction fetch from unmapped memory exits directly; a malformed entry is a misconfiguration (49)", () => {
    const r = rig({ realMode: true });
    r.cpu.program[0] = (c) =>
      c.hooks!.mapPage(0x5000, Access.Execute, 0x5000, false) === EXIT ? "exit" : undefined;
    expect(r.lp.vmlaunch()).toBe(48);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(BigInt(4 | (1 << 7) | (1 << 8)));
    const m = rig({ realMode: true });
    m.ept.setLeaf(0x5000, 0x7000n | 2n); // write without read
    m.cpu.program[0] = (c) =>
      c.hooks!.mapPage(0x5000, Access.Read, Number.NaN, false) === EXIT ? "exit" : undefined;
    expect(m.lp.vmlaunch()).toBe(49);
    expect(m.lp.vmread(F.GUEST_PHYSICAL_ADDRESS)).toBe(0x5000n);
  });
});
