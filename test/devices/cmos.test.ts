import { describe, expect, it } from "vitest";
import { CmosRtc, DeviceConfigError } from "../../lib/devices/index.js";
import { attach, type Harness } from "./helpers.js";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function reg(h: Harness, i: number): number {
  h.outb(0x70, i);
  return h.inb(0x71);
}
function setReg(h: Harness, i: number, v: number): void {
  h.outb(0x70, i);
  h.outb(0x71, v);
}
function word(h: Harness, lo: number): number {
  return reg(h, lo) | (reg(h, lo + 1) << 8);
}

/** 2024-02-29 23:59:58 UTC, a Thursday */
const LEAP_EVE = new Date(Date.UTC(2024, 1, 29, 23, 59, 58));

function setup(opts: ConstructorParameters<typeof CmosRtc>[0] = {}) {
  const rtc = new CmosRtc({ timeSource: "clock", startTime: LEAP_EVE, ...opts });
  const h = attach(rtc);
  return { rtc, h };
}

describe("CMOS memory size bytes (as QEMU's pc)", () => {
  it("encodes 128 MiB", () => {
    const { h } = setup({ memoryBytes: 128 * MiB });
    expect(word(h, 0x15)).toBe(640);
    expect(word(h, 0x17)).toBe(0xffff); // 127 MiB in KiB, capped
    expect(word(h, 0x30)).toBe(0xffff);
    expect(word(h, 0x34)).toBe((112 * MiB) / 65536);
    expect(reg(h, 0x5b) | reg(h, 0x5c) | reg(h, 0x5d)).toBe(0);
  });
  it("encodes 32 MiB without capping", () => {
    const { h } = setup({ memoryBytes: 32 * MiB });
    expect(word(h, 0x17)).toBe(31 * 1024);
    expect(word(h, 0x34)).toBe(256);
  });
  it("splits 4 GiB at 3 GiB and stores the rest above 4 GiB in 64 KiB units", () => {
    const { h } = setup({ memoryBytes: 4 * GiB, cpus: 4 });
    expect(word(h, 0x34)).toBe((3 * GiB - 16 * MiB) / 65536);
    expect(reg(h, 0x5b) | (reg(h, 0x5c) << 8) | (reg(h, 0x5d) << 16)).toBe(GiB / 65536);
    expect(reg(h, 0x5f)).toBe(3);
  });
  it("rejects impossible sizes", () => {
    expect(() => new CmosRtc({ memoryBytes: -1 })).toThrow(DeviceConfigError);
    expect(() => new CmosRtc({ memoryBytes: MiB, belowFourGiB: 2 * MiB })).toThrow(/belowFourGiB/);
    expect(() => new CmosRtc({ nvram: { 200: 1 } })).toThrow(/nvram/);
  });
});

describe("RTC time", () => {
  it("reads BCD 24-hour time from the clock and rolls over a leap day", () => {
    const { h } = setup();
    expect(reg(h, 0x0a)).toBe(0x26);
    expect(reg(h, 0x0b)).toBe(0x02);
    expect(reg(h, 0x0d)).toBe(0x80);
    expect([0, 2, 4, 6, 7, 8, 9, 0x32].map((i) => reg(h, i))).toEqual([
      0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20,
    ]);
    h.clock.advance(2e9);
    expect([0, 2, 4, 6, 7, 8, 9].map((i) => reg(h, i))).toEqual([0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24]);
  });

  it("honours binary and 12-hour modes of status B", () => {
    const { h } = setup();
    setReg(h, 0x0b, 0x04); // binary, 12-hour
    expect(reg(h, 0x04)).toBe(0x80 | 11); // 23h = 11 PM
    expect(reg(h, 0x00)).toBe(58);
    setReg(h, 0x0b, 0x00); // BCD, 12-hour
    expect(reg(h, 0x04)).toBe(0x91);
  });

  it("lets the guest set the time under SET and keeps it running afterwards", () => {
    const { h, rtc } = setup();
    setReg(h, 0x0b, 0x82); // SET, 24h BCD
    setReg(h, 0x00, 0x30);
    setReg(h, 0x02, 0x15);
    setReg(h, 0x04, 0x10);
    setReg(h, 0x07, 0x01);
    setReg(h, 0x08, 0x07);
    setReg(h, 0x09, 0x99);
    setReg(h, 0x32, 0x19);
    h.clock.advance(5e9);
    expect(reg(h, 0x00)).toBe(0x30); // frozen while SET
    setReg(h, 0x0b, 0x02);
    expect(rtc.now().toISOString()).toBe("1999-07-01T10:15:30.000Z");
    h.clock.advance(3e9);
    expect(reg(h, 0x00)).toBe(0x33);
  });

  it("shows update-in-progress in the last 244 us of each second", () => {
    const { h } = setup();
    h.clock.advance(1e9 - 100_000);
    expect(reg(h, 0x0a) & 0x80).toBe(0x80);
    h.clock.advance(200_000);
    expect(reg(h, 0x0a) & 0x80).toBe(0);
  });

  it("keeps the NMI mask from bit 7 of the index port", () => {
    const { h, rtc } = setup();
    h.outb(0x70, 0x8f);
    expect(rtc.nmiMasked).toBe(true);
    h.outb(0x71, 0x0a);
    expect(rtc.peek(0x0f)).toBe(0x0a); // index 0x0f, not 0x8f
    h.outb(0x70, 0x0f);
    expect(rtc.nmiMasked).toBe(false);
  });

  it("follows host time by default", () => {
    const rtc = new CmosRtc();
    attach(rtc);
    expect(Math.abs(rtc.now().getTime() - Date.now())).toBeLessThan(60_000);
  });
});

describe("RTC interrupts on IRQ 8", () => {
  it("periodic interrupt at the status A rate, acknowledged by reading C", () => {
    const { h, rtc } = setup();
    setReg(h, 0x0b, 0x42); // PIE
    const wait = rtc.poll(h.clock.ns)!;
    expect(wait).toBeLessThanOrEqual(976563); // 1024 Hz
    h.clock.advance(wait);
    rtc.poll(h.clock.ns);
    expect(h.irq.level).toBe(true);
    expect(reg(h, 0x0c)).toBe(0xc0);
    expect(h.irq.level).toBe(false);
    expect(reg(h, 0x0c)).toBe(0);
  });

  it("sets PF without PIE but does not interrupt", () => {
    const { h, rtc } = setup();
    rtc.poll(h.clock.ns);
    h.clock.advance(2e6);
    expect(rtc.poll(h.clock.ns)).toBeUndefined(); // nothing enabled: no timer needed
    expect(h.irq.level).toBe(false);
    expect(reg(h, 0x0c)).toBe(0x40);
  });

  it("flags events that happen before the first poll, and follows a rate change", () => {
    const { h, rtc } = setup();
    h.clock.advance(1.5e9);
    expect(reg(h, 0x0c)).toBe(0x50); // PF and UF, no enables: no IRQF
    setReg(h, 0x0a, 0x2f); // 2 Hz
    setReg(h, 0x0b, 0x42);
    const wait = rtc.poll(h.clock.ns)!;
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(5e8);
    h.clock.advance(wait - 1);
    rtc.poll(h.clock.ns);
    expect(h.irq.level).toBe(false);
    h.clock.advance(1);
    rtc.poll(h.clock.ns);
    expect(h.irq.level).toBe(true);
  });

  it("update-ended and alarm interrupts", () => {
    const { h, rtc } = setup();
    setReg(h, 0x01, 0x00);
    setReg(h, 0x03, 0x00);
    setReg(h, 0x05, 0xc0); // any hour, minute 0, second 0
    setReg(h, 0x0b, 0x32); // AIE | UIE
    const wait = rtc.poll(h.clock.ns)!;
    expect(wait).toBe(1e9);
    h.clock.advance(wait);
    rtc.poll(h.clock.ns);
    expect(reg(h, 0x0c) & ~0x40).toBe(0x90); // 23:59:59: update only (PF runs regardless)
    h.clock.advance(1e9);
    rtc.poll(h.clock.ns);
    expect(h.irq.level).toBe(true);
    expect(reg(h, 0x0c) & ~0x40).toBe(0xb0); // 00:00:00: alarm too
  });
});
