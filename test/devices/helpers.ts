// Test harness: a fake clock, an interrupt line that records edges, and port access by absolute
// port number through the device's declared ranges (as the machine's bus would do it).

import type { Clock, Device, DeviceContext, IrqLine, StopRequest } from "../../lib/devices/index.js";

export class FakeClock implements Clock {
  ns = 0;
  nowNs(): number {
    return this.ns;
  }
  advance(ns: number): void {
    this.ns += ns;
  }
}

export class RecordingIrq implements IrqLine {
  level = false;
  /** low-to-high transitions: what an edge-triggered PIC latches */
  rises = 0;
  set(level: boolean): void {
    if (level && !this.level) this.rises++;
    this.level = level;
  }
  pulse(): void {
    this.set(true);
    this.set(false);
  }
}

export interface Harness {
  clock: FakeClock;
  irq: RecordingIrq;
  stops: StopRequest[];
  pollRequests: number;
  inb(port: number): number;
  inw(port: number): number;
  inl(port: number): number;
  outb(port: number, v: number): void;
  outw(port: number, v: number): void;
  outl(port: number, v: number): void;
}

export function attach(dev: Device, clock = new FakeClock()): Harness {
  const irq = new RecordingIrq();
  const h: Harness = {
    clock,
    irq,
    stops: [],
    pollRequests: 0,
    inb: (p) => access(p, 1, undefined),
    inw: (p) => access(p, 2, undefined),
    inl: (p) => access(p, 4, undefined),
    outb: (p, v) => void access(p, 1, v),
    outw: (p, v) => void access(p, 2, v),
    outl: (p, v) => void access(p, 4, v),
  };
  function access(port: number, size: number, value: number | undefined): number {
    const i = dev.ranges.findIndex((r) => r.space === "io" && port >= r.base && port < r.base + r.length);
    if (i < 0) throw new Error(`port 0x${port.toString(16)} is not decoded by ${dev.name}`);
    const off = port - dev.ranges[i]!.base;
    if (value === undefined) return dev.read(off, size, i);
    dev.write(off, size, value, i);
    return 0;
  }
  const ctx: DeviceContext = {
    irq,
    clock,
    requestStop: (r) => h.stops.push(r),
    requestPoll: () => {
      h.pollRequests++;
    },
  };
  dev.attach?.(ctx);
  return h;
}
