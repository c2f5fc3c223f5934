// The devices as the soft backend wires them: device lines into the i8259 pair, the loop polling
// timers by their deadlines, and the CPU side acknowledging vectors.

import { describe, expect, it } from "vitest";
import {
  type Device,
  type DeviceContext,
  I8254,
  I8259Pair,
  type StopRequest,
  Uart16550,
} from "../../lib/devices/index.js";
import { FakeClock } from "./helpers.js";

function machine() {
  const clock = new FakeClock();
  const pic = new I8259Pair();
  const stops: StopRequest[] = [];
  const devices: Device[] = [pic];
  const add = <D extends Device>(d: D): D => {
    const ctx: DeviceContext = { clock, requestStop: (r) => stops.push(r) };
    if (d.irq !== undefined) {
      const line = d.irq;
      ctx.irq = {
        set: (l) => pic.setIrq(line, l),
        pulse: () => {
          pic.setIrq(line, true);
          pic.setIrq(line, false);
        },
      };
    }
    d.attach?.(ctx);
    devices.push(d);
    return d;
  };
  const port = (p: number) => {
    for (const d of devices) {
      const i = d.ranges.findIndex((r) => p >= r.base && p < r.base + r.length);
      if (i >= 0) return { d, i, off: p - d.ranges[i]!.base };
    }
    throw new Error(`no device at 0x${p.toString(16)}`);
  };
  const outb = (p: number, v: number) => {
    const { d, i, off } = port(p);
    d.write(off, 1, v, i);
  };
  const inb = (p: number) => {
    const { d, i, off } = port(p);
    return d.read(off, 1, i);
  };
  // Linux's PIC init: vectors 0x30 (as Linux does on x86-64) and 0x38
  for (const [p, v] of [
    [0x20, 0x11],
    [0x21, 0x30],
    [0x21, 0x04],
    [0x21, 0x01],
    [0xa0, 0x11],
    [0xa1, 0x38],
    [0xa1, 0x02],
    [0xa1, 0x01],
    [0x21, 0x00],
    [0xa1, 0x00],
  ] as const)
    outb(p, v);
  return { clock, pic, add, outb, inb, stops };
}

describe("devices wired to the i8259 pair", () => {
  it("the PIT at 1 kHz delivers vector 0x30 once per period while the guest EOIs", () => {
    const m = machine();
    const pit = m.add(new I8254());
    m.outb(0x43, 0x34);
    m.outb(0x40, 1193 & 0xff);
    m.outb(0x40, 1193 >> 8);
    let delivered = 0;
    let next = pit.poll(m.clock.ns)!;
    for (let i = 0; i < 10; i++) {
      m.clock.advance(next);
      next = pit.poll(m.clock.ns)!;
      while (m.pic.hasInterrupt()) {
        expect(m.pic.acknowledge()).toBe(0x30);
        delivered++;
        m.outb(0x20, 0x20);
      }
    }
    expect(delivered).toBe(10);
    expect(m.clock.ns).toBeGreaterThanOrEqual(10 * 1_000_000 - 10_000);
  });

  it("a masked timer is not delivered, and unmasking delivers the latched edge once", () => {
    const m = machine();
    const pit = m.add(new I8254());
    m.outb(0x21, 0x01);
    m.outb(0x43, 0x34);
    m.outb(0x40, 100);
    m.outb(0x40, 0);
    for (let i = 0; i < 5; i++) {
      m.clock.advance(pit.poll(m.clock.ns)!);
      pit.poll(m.clock.ns);
    }
    expect(m.pic.hasInterrupt()).toBe(false);
    m.outb(0x21, 0x00);
    expect(m.pic.acknowledge()).toBe(0x30);
    m.outb(0x20, 0x20);
    expect(m.pic.hasInterrupt()).toBe(false);
  });

  it("COM1 received data arrives as vector 0x34, and the handler loop drains it", () => {
    const m = machine();
    const uart = m.add(new Uart16550());
    m.outb(0x3f9, 0x01); // RDA
    m.outb(0x3fc, 0x0b); // DTR RTS OUT2
    uart.receive([0x61]);
    expect(m.pic.acknowledge()).toBe(0x34);
    // the driver reads IIR until "no interrupt", then EOIs
    const got: number[] = [];
    while ((m.inb(0x3fa) & 1) === 0) got.push(m.inb(0x3f8));
    m.outb(0x20, 0x20);
    expect(got).toEqual([0x61]);
    uart.receive([0x62]);
    expect(m.pic.acknowledge()).toBe(0x34);
  });
});
