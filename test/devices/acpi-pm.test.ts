// ACPI PM1a event/control blocks and the PM timer, through the ports the FADT names.
import { describe, expect, it } from "vitest";
import {
  AcpiPm,
  DeviceConfigError,
  PM_TIMER_HZ,
  PM1_CNT_SCI_EN,
  PM1_CNT_SLP_EN,
  PM1_PWRBTN,
  PM1_TMR,
  PM1_WAK_STS,
  pmTimerTicks,
} from "../../lib/devices/index.js";
import { attach, FakeClock } from "./helpers.js";

const STS = 0xb000;
const EN = 0xb002;
const CNT = 0xb004;
const TMR = 0xb008;
const slp = (typ: number) => (typ << 10) | PM1_CNT_SLP_EN;

describe("ACPI PM1 control", () => {
  it("SCI_EN reads as set (always in ACPI mode); SLP_TYP is kept, SLP_EN reads 0", () => {
    const h = attach(new AcpiPm());
    expect(h.inw(CNT)).toBe(PM1_CNT_SCI_EN);
    h.outw(CNT, 3 << 10);
    expect(h.inw(CNT)).toBe((3 << 10) | PM1_CNT_SCI_EN);
    expect(h.stops).toEqual([]);
  });

  it("SLP_TYP=5 with SLP_EN powers off, as a word or as the high byte alone", () => {
    const h = attach(new AcpiPm());
    h.outw(CNT, 5 << 10); // ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN
    expect(h.stops).toEqual([]);
    h.outw(CNT, slp(5) | PM1_CNT_SCI_EN);
    expect(h.stops).toEqual([{ reason: "poweroff" }]);
    const h2 = attach(new AcpiPm());
    h2.outb(CNT + 1, slp(5) >> 8);
    expect(h2.stops).toEqual([{ reason: "poweroff" }]);
  });

  it("another sleep type wakes at once (WAK_STS) instead of powering off; s5SlpTyp is configurable", () => {
    const h = attach(new AcpiPm());
    h.outw(CNT, slp(1));
    expect(h.stops).toEqual([]);
    expect(h.inw(STS) & PM1_WAK_STS).toBe(PM1_WAK_STS);
    h.outw(STS, PM1_WAK_STS); // write 1 to clear
    expect(h.inw(STS) & PM1_WAK_STS).toBe(0);
    const ich9 = attach(new AcpiPm({ base: 0x600, s5SlpTyp: 0 }));
    ich9.outw(0x604, slp(0));
    expect(ich9.stops).toEqual([{ reason: "poweroff" }]);
  });

  it("rejects a bad base, IRQ or SLP_TYP", () => {
    expect(() => new AcpiPm({ base: 0xfffa })).toThrow(DeviceConfigError);
    expect(() => new AcpiPm({ irq: -1 })).toThrow(DeviceConfigError);
    expect(() => new AcpiPm({ s5SlpTyp: 8 })).toThrow(DeviceConfigError);
  });

  it("declares three ranges: base + 6 and + 7 are not decoded", () => {
    const pm = new AcpiPm();
    expect(pm.ranges.map((r) => [r.base, r.length])).toEqual([
      [0xb000, 4],
      [0xb004, 2],
      [0xb008, 4],
    ]);
  });
});

describe("ACPI PM timer", () => {
  it("counts 3.579545 MHz ticks of the machine clock, 24 bits wide", () => {
    const clock = new FakeClock();
    const h = attach(new AcpiPm(), clock);
    expect(h.inl(TMR)).toBe(0);
    clock.ns = 1e9;
    expect(h.inl(TMR)).toBe(PM_TIMER_HZ & 0xffffff);
    clock.ns = 1e6; // 1 ms
    expect(h.inl(TMR)).toBe(3579);
    clock.ns = (2 ** 24 / PM_TIMER_HZ) * 1e9 + 1000; // just past the wrap
    expect(h.inl(TMR)).toBeLessThan(10);
    // byte reads give the parts of the same counter
    clock.ns = 1e9;
    expect(h.inb(TMR) | (h.inb(TMR + 1) << 8) | (h.inb(TMR + 2) << 16)).toBe(PM_TIMER_HZ & 0xffffff);
    expect(h.inb(TMR + 3)).toBe(0);
  });

  it("stays exact far from boot (no 2^53 rounding) and never goes backwards", () => {
    const day = 86_400e9;
    expect(pmTimerTicks(day)).toBe(86_400 * PM_TIMER_HZ);
    let last = -1;
    for (let ns = day; ns < day + 5000; ns += 37) {
      const t = pmTimerTicks(ns);
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
  });

  it("writes are ignored", () => {
    const clock = new FakeClock();
    const h = attach(new AcpiPm(), clock);
    clock.ns = 5e6;
    const before = h.inl(TMR);
    h.outl(TMR, 0);
    expect(h.inl(TMR)).toBe(before);
  });
});

describe("ACPI PM1 events and the SCI", () => {
  it("TMR_STS when timer bit 23 flips; with TMR_EN the SCI rises, and clears with the status", () => {
    const clock = new FakeClock();
    const pm = new AcpiPm();
    const h = attach(pm, clock);
    expect(h.inw(STS) & PM1_TMR).toBe(0);
    h.outw(EN, PM1_TMR);
    expect(h.inw(EN)).toBe(PM1_TMR);
    expect(h.pollRequests).toBeGreaterThan(0);
    const halfNs = (2 ** 23 / PM_TIMER_HZ) * 1e9;
    // poll asks to be called back when bit 23 next changes
    const wait = pm.poll(clock.ns)!;
    expect(wait).toBeGreaterThan(halfNs - 1000);
    expect(wait).toBeLessThan(halfNs + 1000);
    clock.ns = wait;
    pm.poll(clock.ns);
    expect(h.irq.level).toBe(true);
    expect(h.inw(STS) & PM1_TMR).toBe(PM1_TMR);
    h.outw(STS, PM1_TMR);
    expect(h.inw(STS) & PM1_TMR).toBe(0);
    expect(h.irq.level).toBe(false);
    // without TMR_EN the status still latches but the line stays low and poll has no deadline
    h.outw(EN, 0);
    expect(pm.poll(clock.ns)).toBeUndefined();
    clock.ns += halfNs;
    expect(h.inw(STS) & PM1_TMR).toBe(PM1_TMR);
    expect(h.irq.level).toBe(false);
  });

  it("the power button raises the SCI only when the OS enabled PWRBTN_EN; GBL_EN and RTC_EN stick but never fire", () => {
    const pm = new AcpiPm();
    const h = attach(pm);
    expect(pm.pressPowerButton()).toBe(false);
    expect(h.irq.level).toBe(false);
    expect(h.inw(STS) & PM1_PWRBTN).toBe(PM1_PWRBTN);
    h.outw(EN, PM1_PWRBTN | (1 << 5) | (1 << 10) | (1 << 12));
    // GBL_EN and RTC_EN read back as ACPICA expects; bit 12 is reserved
    expect(h.inw(EN)).toBe(PM1_PWRBTN | (1 << 5) | (1 << 10));
    expect(h.irq.level).toBe(true);
    h.outw(STS, 0xffff); // ACPICA clears all fixed status bits like this
    expect(h.irq.level).toBe(false);
    expect(pm.pressPowerButton()).toBe(true);
    expect(h.irq.rises).toBe(2);
  });

  it("a 4-byte access to PM1_EVT covers status and enable", () => {
    const pm = new AcpiPm();
    const h = attach(pm);
    pm.pressPowerButton();
    h.outl(STS, (PM1_PWRBTN << 16) | PM1_PWRBTN); // clear status, set enable
    expect(h.inl(STS)).toBe(PM1_PWRBTN << 16);
  });

  it("snapshot and restore keep status, enable and control", () => {
    const a = new AcpiPm();
    const ha = attach(a);
    ha.outw(EN, PM1_PWRBTN);
    ha.outw(CNT, 2 << 10);
    a.pressPowerButton();
    const b = new AcpiPm();
    const hb = attach(b);
    b.restore(JSON.parse(JSON.stringify(a.snapshot())));
    expect([hb.inw(STS), hb.inw(EN), hb.inw(CNT)]).toEqual([ha.inw(STS), ha.inw(EN), ha.inw(CNT)]);
    expect(hb.irq.level).toBe(true);
    b.reset();
    expect([hb.inw(STS), hb.inw(EN), hb.inw(CNT)]).toEqual([0, 0, PM1_CNT_SCI_EN]);
    expect(hb.irq.level).toBe(false);
  });
});
