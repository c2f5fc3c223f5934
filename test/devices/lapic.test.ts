// The local APIC's registers, priority and EOI logic, IPIs to itself and the timer, driven through
// its MMIO page as a guest would, with a fake clock.

import { describe, expect, it } from "vitest";
import {
  APIC_BUS_HZ,
  apicTimerDivisor,
  DeviceConfigError,
  LAPIC_VERSION,
  LocalApic,
  LapicReg as R,
} from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

function apic(opts: ConstructorParameters<typeof LocalApic>[0] = {}) {
  const eois: number[] = [];
  const dev = new LocalApic({ ...opts, onEoi: (v) => eois.push(v) });
  const h = attach(dev);
  const rd = (reg: number, size = 4) => dev.read(reg, size, 0);
  const wr = (reg: number, v: number, size = 4) => dev.write(reg, size, v, 0);
  return { dev, h, clock: h.clock, rd, wr, eois };
}

/** software-enabled, spurious vector 0xFF, TPR 0 */
function enabled() {
  const a = apic();
  a.wr(R.SVR, 0x1ff);
  return a;
}

const bitOf = (bank: number, a: ReturnType<typeof apic>, v: number) =>
  (a.rd(bank + ((v >> 5) << 4)) >>> (v & 31)) & 1;

describe("local APIC: registers", () => {
  it("maps one 4 KiB MMIO page at 0xFEE00000 and rejects bad options", () => {
    expect(new LocalApic().ranges).toEqual([{ space: "mmio", base: 0xfee00000, length: 0x1000 }]);
    expect(() => new LocalApic({ id: 256 })).toThrow(DeviceConfigError);
    expect(() => new LocalApic({ base: 0xfee00010 })).toThrow(/4 KiB-aligned/);
    expect(() => new LocalApic({ busHz: 0 })).toThrow(DeviceConfigError);
  });

  it("comes out of reset as the SDM and KVM leave it: software-disabled, LVTs masked, LINT0 ExtINT", () => {
    const { rd } = apic({ id: 0 });
    expect(rd(R.ID)).toBe(0);
    expect(rd(R.VERSION)).toBe(LAPIC_VERSION);
    expect(LAPIC_VERSION & 0xff).toBe(0x14);
    expect((LAPIC_VERSION >> 16) & 0xff).toBe(5);
    expect(rd(R.SVR)).toBe(0xff);
    expect(rd(R.DFR)).toBe(0xffffffff);
    expect(rd(R.TPR)).toBe(0);
    for (const lvt of [R.LVT_TIMER, R.LVT_THERMAL, R.LVT_PERF, R.LVT_LINT1, R.LVT_ERROR]) {
      expect(rd(lvt)).toBe(0x10000);
    }
    expect(rd(R.LVT_LINT0)).toBe(0x700);
    expect(rd(R.TIMER_INITIAL)).toBe(0);
    expect(rd(R.TIMER_CURRENT)).toBe(0);
    // an AP (not the BSP) has no virtual wire
    expect(apic({ id: 1 }).rd(R.LVT_LINT0)).toBe(0x10000);
    expect(apic({ id: 1 }).rd(R.ID)).toBe(0x01000000);
  });

  it("writable bits: ID, TPR, LDR, DFR, SVR, ICR high; read-only registers ignore writes", () => {
    const { rd, wr } = apic();
    wr(R.ID, 0xffffffff);
    expect(rd(R.ID)).toBe(0xff000000);
    wr(R.TPR, 0x1234);
    expect(rd(R.TPR)).toBe(0x34);
    wr(R.LDR, 0x12345678);
    expect(rd(R.LDR)).toBe(0x12000000);
    wr(R.DFR, 0);
    expect(rd(R.DFR)).toBe(0x0fffffff);
    wr(R.SVR, 0xffffffff);
    expect(rd(R.SVR)).toBe(0x3ff);
    wr(R.ICR_HIGH, 0xabcdef12);
    expect(rd(R.ICR_HIGH)).toBe(0xab000000);
    for (const ro of [R.VERSION, R.PPR, R.ISR, R.TMR + 0x10, R.IRR + 0x70, R.TIMER_CURRENT]) {
      const before = rd(ro);
      wr(ro, 0xdeadbeef);
      expect(rd(ro)).toBe(before);
    }
  });

  it("sub-dword reads take bytes of the register; unaligned or narrow writes are dropped", () => {
    const { rd, wr } = apic();
    wr(R.LDR, 0xa5000000);
    expect(rd(R.LDR + 3, 1)).toBe(0xa5);
    expect(rd(R.LDR + 2, 2)).toBe(0xa500);
    expect(rd(R.LDR + 4)).toBe(0);
    wr(R.TPR, 0x40, 1);
    wr(R.TPR + 4, 0x40);
    expect(rd(R.TPR)).toBe(0);
  });

  it("LVT entries keep only their writable bits; software-disabled forces the mask on", () => {
    const { rd, wr } = apic();
    wr(R.LVT_TIMER, 0x300ff);
    expect(rd(R.LVT_TIMER)).toBe(0x300ff); // masked anyway: the APIC is software-disabled
    wr(R.SVR, 0x100);
    wr(R.LVT_TIMER, 0xffffffff);
    expect(rd(R.LVT_TIMER)).toBe(0x700ff); // the mode with TSC-deadline (bit 18), no delivery status
    wr(R.LVT_LINT1, 0xffffffff);
    expect(rd(R.LVT_LINT1)).toBe(0x1a7ff);
    wr(R.LVT_ERROR, 0xa7f3); // no delivery mode, polarity or trigger bits
    expect(rd(R.LVT_ERROR)).toBe(0xf3);
    wr(R.LVT_LINT0, 0x700);
    expect(rd(R.LVT_LINT0)).toBe(0x700);
    // disabling masks every LVT entry
    wr(R.SVR, 0xff);
    for (const lvt of [R.LVT_TIMER, R.LVT_LINT0, R.LVT_LINT1, R.LVT_ERROR])
      expect(rd(lvt) & 0x10000).toBe(0x10000);
  });

  it("ESR: errors become readable at the next ESR write", () => {
    const { rd, wr } = enabled();
    wr(R.ICR_LOW, 0x40005); // self-IPI, vector 5: illegal
    expect(rd(R.ESR)).toBe(0);
    wr(R.ESR, 0);
    expect(rd(R.ESR)).toBe(0x20);
    wr(R.ESR, 0);
    expect(rd(R.ESR)).toBe(0);
  });
});

describe("local APIC: priority, acknowledge and EOI", () => {
  it("the highest IRR vector above the PPR is delivered; ISR then blocks its class and below", () => {
    const a = enabled();
    const { dev, rd } = a;
    dev.acceptInterrupt(0x31, false);
    dev.acceptInterrupt(0x52, false);
    dev.acceptInterrupt(0x55, false);
    expect(bitOf(R.IRR, a, 0x52)).toBe(1);
    expect(dev.pendingVector()).toBe(0x55);
    expect(dev.acknowledge()).toBe(0x55);
    expect(bitOf(R.ISR, a, 0x55)).toBe(1);
    expect(bitOf(R.IRR, a, 0x55)).toBe(0);
    expect(rd(R.PPR)).toBe(0x50);
    // 0x52 is in the same priority class as the in-service 0x55: held
    expect(dev.pendingVector()).toBe(-1);
    a.wr(R.EOI, 0);
    expect(bitOf(R.ISR, a, 0x55)).toBe(0);
    expect(rd(R.PPR)).toBe(0);
    expect(dev.acknowledge()).toBe(0x52);
    // a higher class nests over the in-service one
    dev.acceptInterrupt(0x61, false);
    expect(dev.acknowledge()).toBe(0x61);
    expect(rd(R.PPR)).toBe(0x60);
    // EOI clears the highest in-service bit first
    a.wr(R.EOI, 0);
    expect(bitOf(R.ISR, a, 0x61)).toBe(0);
    expect(bitOf(R.ISR, a, 0x52)).toBe(1);
    a.wr(R.EOI, 0);
    expect(dev.acknowledge()).toBe(0x31);
  });

  it("TPR holds back classes at or below it; PPR is the TPR when it is higher than the ISR class", () => {
    const { dev, rd, wr } = enabled();
    dev.acceptInterrupt(0x45, false);
    wr(R.TPR, 0x4f);
    expect(rd(R.PPR)).toBe(0x4f);
    expect(dev.pendingVector()).toBe(-1);
    // acknowledging with nothing deliverable gives the spurious vector and sets no ISR bit
    expect(dev.acknowledge()).toBe(0xff);
    expect(dev.isr.every((w) => w === 0)).toBe(true);
    wr(R.TPR, 0x30);
    expect(dev.pendingVector()).toBe(0x45);
  });

  it("a software-disabled APIC accepts nothing new; vectors below 16 are illegal", () => {
    const { dev, rd, wr } = apic();
    expect(dev.acceptInterrupt(0x40, false)).toBe(false);
    expect(dev.pendingVector()).toBe(-1);
    wr(R.SVR, 0x1ff);
    expect(dev.acceptInterrupt(0x0f, false)).toBe(false);
    wr(R.ESR, 0);
    expect(rd(R.ESR)).toBe(0x40);
  });

  it("EOI of a level-triggered vector (TMR set) is broadcast; of an edge one it is not", () => {
    const a = enabled();
    a.dev.acceptInterrupt(0x70, true);
    a.dev.acceptInterrupt(0x60, false);
    expect(bitOf(R.TMR, a, 0x70)).toBe(1);
    expect(bitOf(R.TMR, a, 0x60)).toBe(0);
    expect(a.dev.acknowledge()).toBe(0x70);
    a.wr(R.EOI, 0);
    expect(a.dev.acknowledge()).toBe(0x60);
    a.wr(R.EOI, 0);
    a.wr(R.EOI, 0); // nothing in service: no effect
    expect(a.eois).toEqual([0x70]);
  });

  it("globally disabled (IA32_APIC_BASE.EN clear): off the bus, holds its vectors, LINT0 a plain INTR pin", () => {
    let en = true;
    const { dev, rd, wr } = apic({ hardwareEnabled: () => en });
    wr(R.SVR, 0x1ff);
    wr(R.LVT_LINT0, 0x10700);
    dev.acceptInterrupt(0x80, false);
    expect(dev.acceptsExtInt()).toBe(false);
    en = false;
    expect(rd(R.SVR)).toBe(0xffffffff);
    expect(rd(R.SVR, 1)).toBe(0xff);
    wr(R.TPR, 0x20);
    expect(dev.pendingVector()).toBe(-1);
    expect(dev.acceptInterrupt(0x90, false)).toBe(false);
    expect(dev.acceptsExtInt()).toBe(true);
    en = true;
    expect(rd(R.TPR)).toBe(0);
    expect(dev.pendingVector()).toBe(0x80);
  });

  it("the error LVT raises its vector when an error is latched", () => {
    const { dev, wr } = enabled();
    wr(R.LVT_ERROR, 0xe0);
    wr(R.ICR_LOW, 0x40001);
    expect(dev.pendingVector()).toBe(0xe0);
  });
});

describe("local APIC: ICR", () => {
  it("self-IPIs: shorthand self, all-including-self, and a fixed IPI to its own ID land in the IRR", () => {
    const { dev, rd, wr } = enabled();
    wr(R.ICR_LOW, 0x40041); // self
    expect(dev.acknowledge()).toBe(0x41);
    wr(R.EOI, 0);
    wr(R.ICR_LOW, 0x80042); // all including self
    expect(dev.acknowledge()).toBe(0x42);
    wr(R.EOI, 0);
    wr(R.ICR_HIGH, 0);
    wr(R.ICR_LOW, 0x43); // physical destination 0 = this APIC
    expect(dev.acknowledge()).toBe(0x43);
    wr(R.EOI, 0);
    expect(rd(R.ICR_LOW) & 0x1000).toBe(0); // delivery status idle
    wr(R.ICR_LOW, 0xc0044); // all excluding self
    wr(R.ICR_HIGH, 0x05000000);
    wr(R.ICR_LOW, 0x45); // another APIC's ID
    wr(R.ICR_HIGH, 0);
    wr(R.ICR_LOW, 0x4500); // INIT: not for a fixed vector
    expect(dev.pendingVector()).toBe(-1);
  });

  it("logical destinations: flat and cluster models; 0xFF is a broadcast", () => {
    const { dev, wr } = enabled();
    wr(R.LDR, 0x04000000);
    expect(dev.matchesDestination(0x04, true)).toBe(true);
    expect(dev.matchesDestination(0x06, true)).toBe(true);
    expect(dev.matchesDestination(0x08, true)).toBe(false);
    expect(dev.matchesDestination(0xff, true)).toBe(true);
    wr(R.DFR, 0x0fffffff); // cluster: high nibble cluster, low nibble members
    wr(R.LDR, 0x21000000);
    expect(dev.matchesDestination(0x21, true)).toBe(true);
    expect(dev.matchesDestination(0x31, true)).toBe(false);
    expect(dev.matchesDestination(0x22, true)).toBe(false);
    expect(dev.matchesDestination(0x00, false)).toBe(true);
    expect(dev.matchesDestination(0x01, false)).toBe(false);
    wr(R.ICR_HIGH, 0x21000000);
    wr(R.ICR_LOW, 0x850); // logical, fixed, vector 0x50
    expect(dev.pendingVector()).toBe(0x50);
  });
});

describe("local APIC: timer", () => {
  it("divide configuration encodes 1, 2, ... 128", () => {
    expect([0, 1, 2, 3, 8, 9, 0xa, 0xb].map(apicTimerDivisor)).toEqual([2, 4, 8, 16, 32, 64, 128, 1]);
    expect(APIC_BUS_HZ).toBe(1e9);
  });

  it("one-shot: counts down at bus/divider, raises its vector once at zero, then reads 0", () => {
    const { dev, h, clock, rd, wr } = enabled();
    wr(R.TIMER_DIVIDE, 0x3); // by 16: 16 ns a tick
    expect(rd(R.TIMER_DIVIDE)).toBe(3);
    wr(R.LVT_TIMER, 0x40);
    const polls = h.pollRequests;
    wr(R.TIMER_INITIAL, 1000);
    expect(h.pollRequests).toBeGreaterThan(polls);
    expect(rd(R.TIMER_INITIAL)).toBe(1000);
    expect(rd(R.TIMER_CURRENT)).toBe(1000);
    expect(dev.poll(clock.ns)).toBe(16000);
    clock.advance(1600);
    expect(rd(R.TIMER_CURRENT)).toBe(900);
    expect(dev.poll(clock.ns)).toBe(14400);
    expect(dev.pendingVector()).toBe(-1);
    clock.advance(14400);
    expect(rd(R.TIMER_CURRENT)).toBe(0);
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(dev.acknowledge()).toBe(0x40);
    wr(R.EOI, 0);
    clock.advance(1e6);
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(dev.pendingVector()).toBe(-1);
  });

  it("periodic: reloads from the initial count; late polls coalesce periods into one interrupt", () => {
    const { dev, clock, rd, wr } = enabled();
    wr(R.TIMER_DIVIDE, 0xb); // by 1
    wr(R.LVT_TIMER, 0x20000 | 0x50);
    wr(R.TIMER_INITIAL, 100);
    let count = 0;
    for (let i = 0; i < 10; i++) {
      const next = dev.poll(clock.ns)!;
      expect(next).toBe(100);
      clock.advance(next);
      dev.poll(clock.ns);
      if (dev.pendingVector() === 0x50) {
        dev.acknowledge();
        wr(R.EOI, 0);
        count++;
      }
    }
    expect(count).toBe(10);
    clock.advance(30);
    expect(rd(R.TIMER_CURRENT)).toBe(70);
    clock.advance(470); // five periods pass unpolled
    expect(dev.poll(clock.ns)).toBe(100);
    expect(dev.acknowledge()).toBe(0x50);
    expect(dev.pendingVector()).toBe(-1);
    // initial count 0 stops the timer
    wr(R.TIMER_INITIAL, 0);
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(rd(R.TIMER_CURRENT)).toBe(0);
  });

  it("a masked timer counts but raises nothing; changing the divider keeps the current count", () => {
    const { dev, clock, rd, wr } = enabled();
    wr(R.TIMER_DIVIDE, 0xb);
    wr(R.LVT_TIMER, 0x10000 | 0x20000 | 0x50);
    wr(R.TIMER_INITIAL, 1000);
    clock.advance(2500);
    expect(dev.poll(clock.ns)).toBe(500);
    expect(dev.pendingVector()).toBe(-1);
    expect(rd(R.TIMER_CURRENT)).toBe(500);
    wr(R.TIMER_DIVIDE, 0x0); // by 2
    expect(rd(R.TIMER_CURRENT)).toBe(500);
    expect(dev.poll(clock.ns)).toBe(1000);
    clock.advance(200);
    expect(rd(R.TIMER_CURRENT)).toBe(400);
  });

  it("switching periodic to one-shot does not restart the count", () => {
    const { dev, clock, rd, wr } = enabled();
    wr(R.TIMER_DIVIDE, 0xb);
    wr(R.LVT_TIMER, 0x20000 | 0x50);
    wr(R.TIMER_INITIAL, 100);
    clock.advance(250);
    dev.poll(clock.ns);
    dev.acknowledge();
    wr(R.EOI, 0);
    wr(R.LVT_TIMER, 0x50);
    expect(rd(R.TIMER_CURRENT)).toBe(50);
    expect(dev.poll(clock.ns)).toBe(50);
    clock.advance(50);
    dev.poll(clock.ns);
    expect(dev.acknowledge()).toBe(0x50);
    expect(rd(R.TIMER_CURRENT)).toBe(0);
    expect(dev.poll(clock.ns)).toBeUndefined();
  });

  it("snapshot and restore keep registers, bitmaps and the running timer", () => {
    const a = enabled();
    a.wr(R.TIMER_DIVIDE, 0xb);
    a.wr(R.LVT_TIMER, 0x20000 | 0x50);
    a.wr(R.TIMER_INITIAL, 100);
    a.dev.acceptInterrupt(0x66, true);
    a.dev.acknowledge();
    a.clock.advance(30);
    const b = apic();
    b.clock.ns = a.clock.ns;
    b.dev.restore(JSON.parse(JSON.stringify(a.dev.snapshot())));
    expect(b.rd(R.TIMER_CURRENT)).toBe(70);
    expect(b.rd(R.ISR + 0x30) >>> 6).toBe(1);
    expect(b.rd(R.PPR)).toBe(0x60);
    b.wr(R.EOI, 0);
    expect(b.eois).toEqual([0x66]);
    expect(() => b.dev.restore({ ...a.dev.snapshot(), irr: [1] })).toThrow(DeviceConfigError);
  });
});
