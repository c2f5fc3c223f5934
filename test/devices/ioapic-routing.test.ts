// PcInterrupts: lines into the i8259 pair and the I/O APIC at once, the CPU side taking the local
// APIC's vectors or the 8259's through the virtual wire, EOI broadcasts back to the I/O APIC.

import { describe, expect, it } from "vitest";
import { DeviceConfigError, PcInterrupts, LapicReg as R } from "../../lib/devices/index.js";
import { FakeClock } from "./helpers.js";

function router(opts: ConstructorParameters<typeof PcInterrupts>[0] = {}) {
  const r = new PcInterrupts(opts);
  const clock = new FakeClock();
  for (const d of r.devices) d.attach?.({ clock, requestStop: () => {} });
  const pic = (port: number, v: number) => {
    const i = r.i8259.ranges.findIndex((x) => port >= x.base && port < x.base + x.length);
    r.i8259.write(port - r.i8259.ranges[i]!.base, 1, v, i);
  };
  // 8259 at vectors 0x20/0x28, all lines unmasked
  for (const [p, v] of [
    [0x20, 0x11],
    [0x21, 0x20],
    [0x21, 0x04],
    [0x21, 0x01],
    [0xa0, 0x11],
    [0xa1, 0x28],
    [0xa1, 0x02],
    [0xa1, 0x01],
    [0x21, 0x00],
    [0xa1, 0x00],
  ] as const)
    pic(p, v);
  const apic = (reg: number, v: number) => r.lapic.write(reg, 4, v, 0);
  const redir = (pin: number, low: number, high = 0) => {
    r.ioapic.write(0, 4, 0x11 + 2 * pin, 0);
    r.ioapic.write(0x10, 4, high, 0);
    r.ioapic.write(0, 4, 0x10 + 2 * pin, 0);
    r.ioapic.write(0x10, 4, low, 0);
  };
  /** INTA cycles until nothing is pending (EOIing the 8259 and the APIC after each) */
  const takeAll = () => {
    const got: number[] = [];
    while (r.hasInterrupt() && got.length < 10) {
      const v = r.acknowledge();
      got.push(v);
      if (v >= 0x20 && v < 0x30) pic(v >= 0x28 ? 0xa0 : 0x20, 0x20);
      if (v >= 0x28 && v < 0x30) pic(0x20, 0x20);
      if (v >= 0x30) apic(R.EOI, 0);
    }
    return got;
  };
  return { r, clock, pic, apic, redir, takeAll };
}

describe("PC interrupt routing", () => {
  it("after reset the 8259 reaches the CPU through LINT0 (virtual wire), as before the APICs", () => {
    const { r, takeAll } = router();
    expect(r.lapic.softwareEnabled).toBe(false);
    r.setIrq(4, true);
    r.setIrq(4, false);
    r.setIrq(12, true);
    expect(takeAll()).toEqual([0x2c, 0x24]);
    expect(r.hasInterrupt()).toBe(false);
  });

  it("an ISA IRQ routed by the I/O APIC arrives at the LAPIC's vector; LINT0 masked shuts the 8259 out", () => {
    const { r, apic, redir, pic, takeAll } = router();
    apic(R.SVR, 0x1ff);
    apic(R.LVT_LINT0, 0x10700);
    redir(4, 0x44);
    r.setIrq(4, true);
    expect(r.i8259.irr & 0x10).toBe(0x10); // the 8259 saw it too
    expect(takeAll()).toEqual([0x44]);
    // the 8259 still holds IRQ 4 requested, but nothing passes LINT0
    expect(r.i8259.hasInterrupt()).toBe(true);
    pic(0x21, 0xff);
    expect(r.hasInterrupt()).toBe(false);
  });

  it("with both pending, the 8259's ExtINT is taken before the APIC's vector (KVM's order)", () => {
    const { r, apic, redir, takeAll } = router();
    apic(R.SVR, 0x1ff);
    apic(R.LVT_LINT0, 0x700);
    redir(5, 0x90);
    r.setIrq(5, true);
    expect(takeAll()).toEqual([0x25, 0x90]);
  });

  it("ISA IRQ 0 drives pin 2, IRQ 2 no pin, GSIs 16-23 only the I/O APIC; the override is configurable", () => {
    const { r, apic, redir, takeAll, pic } = router();
    pic(0x21, 0xff);
    pic(0xa1, 0xff);
    apic(R.SVR, 0x1ff);
    redir(0, 0x50);
    redir(2, 0x52);
    redir(20, 0x74);
    r.setIrq(0, true);
    expect(r.ioapic.pinLevel(2)).toBe(true);
    expect(r.ioapic.pinLevel(0)).toBe(false);
    r.setIrq(2, true);
    r.setIrq(20, true);
    expect(takeAll()).toEqual([0x74, 0x52]);
    expect(r.ioapicPin(2)).toBe(-1);
    expect(() => r.setIrq(24, true)).toThrow(DeviceConfigError);
    expect(() => r.setIrq(1.5, true)).toThrow(/line 1.5/);
    const identity = new PcInterrupts({ irq0Pin: 0 });
    expect([identity.ioapicPin(0), identity.ioapicPin(2)]).toEqual([0, 2]);
    expect(() => new PcInterrupts({ irq0Pin: 24 })).toThrow(DeviceConfigError);
  });

  it("a level-triggered pin is delivered again after the LAPIC's EOI while the line stays high", () => {
    const { r, apic, redir, pic } = router();
    pic(0x21, 0xff);
    apic(R.SVR, 0x1ff);
    redir(11, 0x8000 | 0x61);
    r.setIrq(11, true);
    expect(r.acknowledge()).toBe(0x61);
    expect(r.ioapic.entry(11)[0] & 0x4000).toBe(0x4000);
    expect(r.hasInterrupt()).toBe(false);
    apic(R.EOI, 0);
    expect(r.acknowledge()).toBe(0x61);
    r.setIrq(11, false);
    apic(R.EOI, 0);
    expect(r.ioapic.entry(11)[0] & 0x4000).toBe(0);
    expect(r.hasInterrupt()).toBe(false);
  });

  it("messages for another APIC ID, or while the APIC is software-disabled, are not accepted", () => {
    const { r, apic, redir, pic } = router();
    pic(0x21, 0xff);
    redir(3, 0x8000 | 0x63);
    r.setIrq(3, true); // APIC software-disabled: dropped, Remote IRR stays clear
    expect(r.ioapic.entry(3)[0] & 0x4000).toBe(0);
    r.setIrq(3, false);
    apic(R.SVR, 0x1ff);
    redir(3, 0x63, 0x01000000);
    r.setIrq(3, true);
    expect(r.hasInterrupt()).toBe(false);
    redir(3, 0x63, 0xff000000); // broadcast
    r.setIrq(3, false);
    r.setIrq(3, true);
    expect(r.acknowledge()).toBe(0x63);
  });

  it("an I/O APIC pin 0 entry in ExtINT mode is a virtual wire for the 8259 when LINT0 is masked", () => {
    const { r, apic, redir } = router();
    apic(R.SVR, 0x1ff);
    apic(R.LVT_LINT0, 0x10700);
    r.setIrq(6, true);
    expect(r.hasInterrupt()).toBe(false);
    redir(0, 0x700);
    expect(r.acknowledge()).toBe(0x26);
  });

  it("the LAPIC timer reaches the CPU through the router", () => {
    const { r, apic, clock } = router();
    apic(R.SVR, 0x1ff);
    apic(R.TIMER_DIVIDE, 0xb);
    apic(R.LVT_TIMER, 0x20000 | 0xec);
    apic(R.TIMER_INITIAL, 1000);
    clock.advance(1000);
    r.lapic.poll(clock.ns);
    expect(r.hasInterrupt()).toBe(true);
    expect(r.acknowledge()).toBe(0xec);
  });
});
