// The other half of "each exit control on and off": with the control clear, the same situation
// does not exit and the guest runs on to its HLT (at RIP 1, or after the scripted instructions).
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { F, Pin } from "../../lib/vmx/index.js";
import { ctx, type FakeCpu, hltStep, type Step } from "./fake-cpu.js";
import { rig, rigWith } from "./setup.js";

const nop: Step = () => undefined;
const exitIf =
  (asks: (c: FakeCpu) => boolean): Step =>
  (c) =>
    asks(c) ? "exit" : undefined;

describe("exit controls off", () => {
  it("external-interrupt exiting off: a pending interrupt is left to the guest (IF=0 here), no exit 1", () => {
    const r = rig();
    let acknowledged = false;
    r.lp.interrupts = {
      hasInterrupt: () => true,
      acknowledge: () => {
        acknowledged = true;
        return 0x30;
      },
    };
    r.cpu.program[0] = nop;
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    expect(acknowledged).toBe(false);
  });

  it("NMI-window exiting off: unblocking NMIs does not exit", () => {
    const r = rig({ pin: Pin.NMI_EXITING | Pin.VIRTUAL_NMIS });
    r.lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 8);
    r.cpu.program[0] = (c) => {
      c.interruptibility = 0;
      return undefined;
    };
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(1n);
  });

  it("monitor trap flag off: no exit after the first instruction", () => {
    const r = rig();
    r.cpu.program[0] = nop;
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    expect(r.cpu.retired).toBe(1);
  });

  it("preemption timer off: a timer value in the VMCS has no effect", () => {
    const r = rig();
    for (let i = 0; i < 1000; i++) r.cpu.program[i] = nop;
    r.cpu.program[1000] = hltStep;
    r.lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 1);
    expect(r.lp.vmlaunch()).toBe(12);
    expect(r.cpu.retired).toBe(1000);
  });

  it("interrupt-window exiting off with an interruptible guest: no exit 7", () => {
    const r = rig();
    r.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    r.cpu.program[0] = nop;
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
  });

  it("CR4 guest/host mask: a write that changes an owned bit exits with the CR4 qualification; unowned bits do not", () => {
    const on = rig();
    on.lp.vmwrite(F.CR4_GUEST_HOST_MASK, 0x2000); // VMXE owned
    on.lp.vmwrite(F.CR4_READ_SHADOW, 0);
    on.cpu.program[0] = exitIf((c) =>
      c.hooks!.crAccess({ type: "mov-to", cr: 4, gpr: 3, value: 0x20n }, ctx(c)),
    );
    on.cpu.program[1] = exitIf((c) =>
      c.hooks!.crAccess({ type: "mov-to", cr: 4, gpr: 3, value: 0x2020n }, ctx(c)),
    );
    expect(on.lp.vmlaunch()).toBe(28);
    expect(on.lp.vmread(F.GUEST_RIP)).toBe(1n);
    expect(on.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x304n);
    const off = rig();
    off.lp.vmwrite(F.CR4_GUEST_HOST_MASK, 0);
    off.cpu.program[0] = exitIf((c) =>
      c.hooks!.crAccess({ type: "mov-to", cr: 4, gpr: 3, value: 0x2020n }, ctx(c)),
    );
    off.cpu.program[1] = hltStep;
    expect(off.lp.vmlaunch()).toBe(12);
  });
});

describe("NMI exiting off", () => {
  it("an NMI on the pin is delivered through the guest's IVT and blocks further NMIs", () => {
    const r = rigWith(new Interpreter(), { realMode: true });
    const ram = r.mem.allocate(1 << 20);
    r.ept.map(0, ram.hpa, 1 << 20);
    ram.bytes.set([0x90, 0x90, 0xf4], 0x1000); // nop; nop; hlt
    ram.bytes.set([0xf4], 0x2000); // the NMI handler: hlt
    ram.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4); // IVT[2] = 0000:2000
    r.lp.vmwrite(F.GUEST_RIP, 0x1000);
    r.lp.vmwrite(F.GUEST_RSP, 0x8000);
    r.lp.nmiPending = true;
    expect(r.lp.vmlaunch()).toBe(12);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(0x2000n);
    expect(r.lp.nmiPending).toBe(false);
    expect(r.lp.vmread(F.GUEST_INTERRUPTIBILITY_INFO) & 8n).toBe(8n);
    // the return frame on the stack points at the interrupted instruction
    expect(ram.bytes[0x8000 - 6]! | (ram.bytes[0x8000 - 5]! << 8)).toBe(0x1000);
  });
});
