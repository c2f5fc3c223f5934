// Reset through 0xCF9 (the FADT's RESET_REG) and port 0x92 bit 0.
import { describe, expect, it } from "vitest";
import { DeviceConfigError, ResetControl, SystemControlPortA } from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

describe("reset control register (0xCF9)", () => {
  it("the FADT's value 6 (SYS_RST | RST_CPU) resets", () => {
    const h = attach(new ResetControl());
    h.outb(0xcf9, 6);
    expect(h.stops).toEqual([{ reason: "reset" }]);
  });

  it("Linux's reboot=pci sequence: 2 selects a hard reset (no reset yet), then 6 resets", () => {
    const dev = new ResetControl();
    const h = attach(dev);
    h.outb(0xcf9, 2);
    expect(h.stops).toEqual([]);
    expect(h.inb(0xcf9)).toBe(2);
    h.outb(0xcf9, 6);
    expect(h.stops).toEqual([{ reason: "reset" }]);
  });

  it("RST_CPU alone (soft reset) resets; other bits do not; RST_CPU reads back 0", () => {
    const h = attach(new ResetControl());
    h.outb(0xcf9, 0x08);
    h.outb(0xcf9, 0x01);
    expect(h.stops).toEqual([]);
    expect(h.inb(0xcf9)).toBe(0);
    h.outb(0xcf9, 0x04);
    expect(h.stops).toEqual([{ reason: "reset" }]);
    expect(h.inb(0xcf9) & 4).toBe(0);
  });

  it("rejects a port outside the I/O space", () => {
    expect(() => new ResetControl({ port: 0x10000 })).toThrow(DeviceConfigError);
  });
});

describe("system control port A (0x92)", () => {
  it("bit 0 going from 0 to 1 resets; staying at 1 does not reset again", () => {
    const h = attach(new SystemControlPortA());
    h.outb(0x92, 0x03);
    expect(h.stops).toEqual([{ reason: "reset" }]);
    h.outb(0x92, 0x03);
    expect(h.stops).toHaveLength(1);
    h.outb(0x92, 0x02);
    h.outb(0x92, 0x03);
    expect(h.stops).toHaveLength(2);
  });

  it("bit 1 is the A20 gate: on at reset, reported on read, changes told to onA20", () => {
    const seen: boolean[] = [];
    const dev = new SystemControlPortA({ onA20: (on) => seen.push(on) });
    const h = attach(dev);
    expect(h.inb(0x92)).toBe(0x02);
    expect(dev.a20).toBe(true);
    h.outb(0x92, 0x00);
    expect([dev.a20, h.inb(0x92)]).toEqual([false, 0]);
    h.outb(0x92, 0x02);
    expect(seen).toEqual([false, true]);
    expect(h.stops).toEqual([]);
    const off = attach(new SystemControlPortA({ a20: false }));
    expect(off.inb(0x92)).toBe(0);
  });

  it("reset() puts the A20 gate back and clears bit 0", () => {
    const dev = new SystemControlPortA();
    const h = attach(dev);
    h.outb(0x92, 0x01);
    dev.reset();
    expect(h.inb(0x92)).toBe(0x02);
  });
});
