// The monitor trap flag and events (SDM Vol. 3C, "Monitor Trap Flag"): an MTF VM exit is pending
// after the delivery of a fault the first instruction raised, and before the first instruction
// when the VM entry injected an event. Without the first, a guest whose every instruction faults
// never exits on MTF.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { F, Pin, Proc } from "../../lib/vmx/index.js";
import { rigWith } from "./setup.js";

/** real mode, code at 0x1000; the preemption timer bounds a run that would never exit on MTF */
function guest(code: number[]) {
  const r = rigWith(new Interpreter(), {
    realMode: true,
    proc: Proc.HLT | Proc.MONITOR_TRAP_FLAG,
    pin: Pin.PREEMPTION_TIMER,
  });
  const ram = r.mem.allocate(1 << 20);
  r.ept.map(0, ram.hpa, 1 << 20);
  ram.bytes.set(code, 0x1000);
  r.lp.vmwrite(F.GUEST_RIP, 0x1000);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  r.lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 100);
  return { ...r, ram: ram.bytes };
}

describe("monitor trap flag and event delivery", () => {
  it("an instruction that faults: the MTF exit comes after the fault's delivery, at the handler", () => {
    // ud2 at 0x1000; #UD's handler (IVT[6] = 0000:2000) is another ud2: no instruction ever retires
    const g = guest([0x0f, 0x0b]);
    g.ram.set([0x00, 0x20, 0, 0], 6 * 4);
    g.ram.set([0x0f, 0x0b], 0x2000);
    expect(g.lp.vmlaunch()).toBe(37);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x2000n);
    expect(g.cpu.retired).toBe(0);
    expect(g.cpu.eventsDelivered).toBe(1);
    // and again after the next delivery
    expect(g.lp.vmresume()).toBe(37);
    expect(g.cpu.eventsDelivered).toBe(2);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x2000n);
  });

  it("an entry that injects an event: the MTF exit comes before the handler's first instruction", () => {
    const g = guest([0x90, 0xf4]);
    g.ram.set([0x00, 0x20, 0, 0], 0x21 * 4);
    g.ram.set([0x90, 0x90, 0xf4], 0x2000);
    g.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    g.lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000021);
    expect(g.lp.vmlaunch()).toBe(37);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x2000n);
    expect(g.cpu.retired).toBe(0);
    // then one instruction at a time again
    expect(g.lp.vmresume()).toBe(37);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x2001n);
  });

  it("without an event, the first instruction retires before the MTF exit (as before)", () => {
    const g = guest([0x90, 0x90, 0xf4]);
    expect(g.lp.vmlaunch()).toBe(37);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1001n);
  });
});
