import { describe, expect, it } from "vitest";
import { I8254, nsToTicks, PIT_HZ, ticksToNs } from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

function setup() {
  const pit = new I8254();
  const h = attach(pit);
  return { pit, h };
}

function readCounter(h: ReturnType<typeof setup>["h"], port: number): number {
  const lo = h.inb(port);
  return lo | (h.inb(port) << 8);
}

describe("i8254 time arithmetic", () => {
  it("converts ns and ticks exactly over long spans without overflow", () => {
    expect(nsToTicks(1e9)).toBe(PIT_HZ);
    expect(nsToTicks(3600e9 + 1e9 / 2)).toBe(3600 * PIT_HZ + 596591);
    for (const t of [1, 1193, 65536, 123456789, 3600 * PIT_HZ + 7]) {
      expect(nsToTicks(ticksToNs(t))).toBe(t);
      expect(nsToTicks(ticksToNs(t) - 1)).toBe(t - 1);
    }
  });
});

describe("i8254 channel 0 and IRQ 0", () => {
  it("mode 2 raises an edge each period and poll says when the next one is due", () => {
    const { pit, h } = setup();
    h.outb(0x43, 0x34); // ch0, lo/hi, mode 2
    h.outb(0x40, 1193 & 0xff);
    h.outb(0x40, 1193 >> 8);
    expect(h.pollRequests).toBeGreaterThan(0);
    const wait = pit.poll(h.clock.ns)!;
    expect(wait).toBe(ticksToNs(1193));
    const rises = h.irq.rises;
    h.clock.advance(wait - 1);
    pit.poll(h.clock.ns);
    expect(h.irq.rises).toBe(rises);
    h.clock.advance(1);
    expect(pit.poll(h.clock.ns)).toBe(ticksToNs(2 * 1193) - ticksToNs(1193));
    expect(h.irq.rises).toBe(rises + 1);
    expect(h.irq.level).toBe(true);
  });

  it("coalesces periods missed by a late poll into one interrupt", () => {
    const { pit, h } = setup();
    h.outb(0x43, 0x34);
    h.outb(0x40, 100);
    h.outb(0x40, 0);
    pit.poll(h.clock.ns);
    const before = pit.irqCount;
    h.clock.advance(ticksToNs(1000) + 5);
    pit.poll(h.clock.ns);
    expect(pit.irqCount).toBe(before + 1);
    // and the next poll is scheduled for the next period boundary, not in the past
    const wait = pit.poll(h.clock.ns)!;
    expect(nsToTicks(h.clock.ns + wait)).toBe(1100);
  });

  it("mode 0 interrupts once at terminal count, and a control word holds OUT low until loaded", () => {
    const { pit, h } = setup();
    h.outb(0x43, 0x30); // ch0 mode 0
    expect(pit.output(0)).toBe(false);
    expect(pit.poll(h.clock.ns)).toBeUndefined(); // not counting yet
    h.outb(0x40, 50);
    h.outb(0x40, 0);
    h.clock.advance(ticksToNs(49));
    pit.poll(h.clock.ns);
    expect(pit.output(0)).toBe(false);
    const rises = h.irq.rises;
    h.clock.advance(ticksToNs(50) - ticksToNs(49));
    expect(pit.poll(h.clock.ns)).toBeUndefined(); // one-shot: nothing more to do
    expect(h.irq.rises).toBe(rises + 1);
    expect(pit.output(0)).toBe(true);
  });

  it("counter latch freezes the value until both bytes are read", () => {
    const { h } = setup();
    h.outb(0x43, 0x34);
    h.outb(0x40, 1000 & 0xff);
    h.outb(0x40, 1000 >> 8);
    h.clock.advance(ticksToNs(100));
    h.outb(0x43, 0x00); // latch ch0
    h.clock.advance(ticksToNs(300));
    expect(readCounter(h, 0x40)).toBe(900);
    expect(readCounter(h, 0x40)).toBe(600); // unlatched: live value
  });

  it("read-back reports status (OUT, access, mode, BCD) and latches counts", () => {
    const { h } = setup();
    h.outb(0x43, 0x34);
    h.outb(0x40, 0x00);
    h.outb(0x40, 0x10);
    h.outb(0x43, 0xc2); // read-back ch0: status and count
    expect(h.inb(0x40)).toBe(0x80 | 0x30 | 0x04);
    expect(readCounter(h, 0x40)).toBe(0x1000);
    h.outb(0x43, 0x34); // control word: null count until loaded
    h.outb(0x43, 0xe2);
    expect(h.inb(0x40) & 0x40).toBe(0x40);
  });

  it("LSB-only and MSB-only access modes", () => {
    const { h } = setup();
    h.outb(0x43, 0x10); // ch0 LSB only, mode 0
    h.outb(0x40, 0x50);
    expect(h.inb(0x40)).toBe(0x50);
    h.outb(0x43, 0x20); // MSB only
    h.outb(0x40, 0x02);
    h.clock.advance(ticksToNs(1));
    expect(h.inb(0x40)).toBe(0x01); // 0x200 - 1 = 0x1ff
  });

  it("BCD counting loads and reads decimal digits", () => {
    const { h } = setup();
    h.outb(0x43, 0x31); // ch0 lo/hi mode 0 BCD
    h.outb(0x40, 0x00);
    h.outb(0x40, 0x10); // 1000 decimal
    h.clock.advance(ticksToNs(1));
    expect(readCounter(h, 0x40)).toBe(0x0999);
  });
});

describe("i8254 channel 2 and port 0x61", () => {
  it("gates channel 2 and shows OUT in bit 5 (Linux's TSC calibration loop)", () => {
    const { h } = setup();
    h.outb(0x61, (h.inb(0x61) & ~0x02) | 0x01);
    h.outb(0x43, 0xb0); // ch2, lo/hi, mode 0
    h.outb(0x42, 0xff);
    h.outb(0x42, 0xff);
    expect(h.inb(0x61) & 0x20).toBe(0);
    h.clock.advance(ticksToNs(0xffff));
    expect(h.inb(0x61) & 0x20).toBe(0x20);
    expect(h.inb(0x61) & 0x01).toBe(0x01);
  });

  it("toggles the refresh bit on every read", () => {
    const { h } = setup();
    const a = h.inb(0x61) & 0x10;
    const b = h.inb(0x61) & 0x10;
    expect(a ^ b).toBe(0x10);
  });

  it("mode 3 makes a square wave: high for the first half of each period", () => {
    const { pit, h } = setup();
    h.outb(0x61, 0x01);
    h.outb(0x43, 0xb6); // ch2 lo/hi mode 3
    h.outb(0x42, 4);
    h.outb(0x42, 0);
    const seen: boolean[] = [];
    for (let t = 0; t < 8; t++) {
      h.clock.ns = ticksToNs(t);
      seen.push(pit.output(2));
    }
    expect(seen).toEqual([true, true, false, false, true, true, false, false]);
  });

  it("mode 1 waits for a gate rising edge, then goes low for the count", () => {
    const { pit, h } = setup();
    h.outb(0x43, 0xb2); // ch2 lo/hi mode 1
    h.outb(0x42, 10);
    h.outb(0x42, 0);
    h.clock.advance(ticksToNs(20));
    expect(pit.output(2)).toBe(true); // not triggered: gate still low
    h.outb(0x61, 0x01);
    expect(pit.output(2)).toBe(false);
    h.clock.advance(ticksToNs(10));
    expect(pit.output(2)).toBe(true);
  });

  it("mode 4 strobes OUT low for one clock at terminal count", () => {
    const { pit, h } = setup();
    h.outb(0x61, 0x01);
    h.outb(0x43, 0xb8); // ch2 lo/hi mode 4
    h.outb(0x42, 5);
    h.outb(0x42, 0);
    const start = h.clock.ns;
    const at = (t: number) => {
      h.clock.ns = start + ticksToNs(t);
      return pit.output(2);
    };
    expect([at(4), at(5), at(6)]).toEqual([true, false, true]);
  });
});

describe("i8254 snapshot", () => {
  it("restores channel programming", () => {
    const { pit, h } = setup();
    h.outb(0x43, 0x34);
    h.outb(0x40, 0x34);
    h.outb(0x40, 0x12);
    const other = new I8254();
    const h2 = attach(other, h.clock);
    other.restore(JSON.parse(JSON.stringify(pit.snapshot())));
    expect(readCounter(h2, 0x40)).toBe(0x1234);
    expect(() => other.restore({ ...pit.snapshot(), channels: [] })).toThrow(/three/);
  });
});
