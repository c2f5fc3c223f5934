// The guest state a VM exit saves stays in the processor's interpreter until something reads it
// (lib/vmx/vmcs.ts): VMREAD, VMCLEAR and the next entry must see exactly what an exit that saved
// everything at once would have left, and an entry must load what VMWRITE changed, only that, and
// still check it.
import { describe, expect, it } from "vitest";
import { fieldByEncoding } from "../../lib/vmx/fields.js";
import { F, Proc } from "../../lib/vmx/index.js";
import { DATA_OFFSET } from "../../lib/vmx/vmcs.js";
import { type FakeCpu, hltStep } from "./fake-cpu.js";
import { rig } from "./setup.js";

const DS = 3;

/** the guest's first instruction sets ZF and loads DS with selector 0x13, then HLT exits */
function guestTouches(cpu: FakeCpu): void {
  cpu.program[0] = (c) => {
    c.rflags |= 0x40n;
    c.segs[DS] = { ...c.segs[DS]!, selector: 0x13 };
    return undefined;
  };
  cpu.program[1] = hltStep;
}

const slotAt = (vmcs: number, encoding: number) => vmcs + DATA_OFFSET + fieldByEncoding(encoding)!.slot * 8;

describe("guest state kept in the interpreter across an exit", () => {
  it("VMREAD after the exit returns what the guest left, and VMCLEAR writes it to the region", () => {
    const r = rig({ proc: Proc.HLT });
    guestTouches(r.cpu);
    expect(r.lp.vmlaunch()).toBe(12);
    expect(r.lp.vmread(F.GUEST_RIP)).toBe(1n);
    expect(r.lp.vmread(F.GUEST_RFLAGS) & 0x40n).toBe(0x40n);
    expect(r.lp.vmread(F.GUEST_DS_SELECTOR)).toBe(0x13n);
    r.lp.vmclear(r.vmcs);
    // nothing read CS or the DS selector's neighbours before VMCLEAR: the flush synced them too
    expect(r.mem.readU32(slotAt(r.vmcs, F.GUEST_DS_SELECTOR))).toBe(0x13);
    expect(r.mem.readU32(slotAt(r.vmcs, F.GUEST_RIP))).toBe(1);
    r.lp.vmptrld(r.vmcs);
    expect(r.lp.vmread(F.GUEST_DS_SELECTOR)).toBe(0x13n);
    expect(r.lp.vmread(F.GUEST_CS_AR_BYTES)).toBe(BigInt(r.cpu.segs[1]!.ar));
  });

  it("the next entry loads what VMWRITE changed and keeps what the guest left", () => {
    const r = rig({ proc: Proc.HLT });
    guestTouches(r.cpu);
    expect(r.lp.vmlaunch()).toBe(12);
    r.lp.vmwrite(F.GUEST_RIP, 0x20);
    let seen: { ds: number; rip: bigint; zf: bigint } | undefined;
    r.cpu.program[0x20] = (c) => {
      seen = { ds: c.segs[DS]!.selector, rip: c.rip, zf: c.rflags & 0x40n };
      return hltStep(c);
    };
    expect(r.lp.vmresume()).toBe(12);
    expect(seen).toEqual({ ds: 0x13, rip: 0x20n, zf: 0x40n });
  });

  it("a field the host wrote is checked with the guest's current state", () => {
    const r = rig({ proc: Proc.HLT });
    r.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    r.cpu.program[0] = (c) => {
      c.rflags &= ~0x200n; // CLI
      return undefined;
    };
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    // blocking by STI with IF=0 (the guest cleared IF; the last entry's checks saw IF=1)
    r.lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 1);
    expect(r.lp.vmresume()).toBe((33 | 0x80000000) >>> 0);
    r.lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 0);
    expect(r.lp.vmresume()).toBe(12);
  });

  it("CR0 is saved with the guest/host mask of the exit, whatever the host writes to the mask after", () => {
    const r = rig({ proc: Proc.HLT });
    r.cpu.program[0] = (c) => {
      c.setControl("cr0", c.getControl("cr0") | 0x8n); // the guest sets TS (a bit it owns)
      return undefined;
    };
    r.cpu.program[1] = hltStep;
    expect(r.lp.vmlaunch()).toBe(12);
    // TS becomes host-owned only now: the value the exit saved still has the guest's TS
    r.lp.vmwrite(F.CR0_GUEST_HOST_MASK, r.lp.vmread(F.CR0_GUEST_HOST_MASK) | 0x8n);
    expect(r.lp.vmread(F.GUEST_CR0) & 0x8n).toBe(0x8n);
  });
});
