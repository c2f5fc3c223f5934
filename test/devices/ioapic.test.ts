// The I/O APIC's indirect registers and its redirection logic: edge and level entries, masks,
// Remote IRR and the EOI broadcast, with the messages it sends recorded.

import { describe, expect, it } from "vitest";
import { type ApicMessage, DeviceConfigError, IOAPIC_VERSION, IoApic } from "../../lib/devices/index.js";

function ioapic(accept = true) {
  const sent: ApicMessage[] = [];
  const dev = new IoApic({
    deliver: (m) => {
      sent.push(m);
      return accept;
    },
  });
  const sel = (r: number) => dev.write(0x00, 4, r, 0);
  const rd = (r: number) => {
    sel(r);
    return dev.read(0x10, 4, 0);
  };
  const wr = (r: number, v: number) => {
    sel(r);
    dev.write(0x10, 4, v, 0);
  };
  return { dev, sent, rd, wr, sel };
}

describe("I/O APIC registers", () => {
  it("maps IOREGSEL/IOWIN at 0xFEC00000; ID, version 0x11 with 24 entries, arbitration ID", () => {
    const { dev, rd, wr, sel } = ioapic();
    expect(dev.ranges).toEqual([{ space: "mmio", base: 0xfec00000, length: 0x1000 }]);
    expect(rd(1)).toBe(IOAPIC_VERSION);
    expect(IOAPIC_VERSION).toBe(0x170011);
    expect(rd(0)).toBe(0);
    wr(0, 0xffffffff);
    expect(rd(0)).toBe(0x0f000000);
    expect(rd(2)).toBe(0x0f000000);
    wr(1, 0); // read-only
    expect(rd(1)).toBe(0x170011);
    sel(0x1234);
    expect(dev.read(0x00, 4, 0)).toBe(0x34);
    // unimplemented registers and entries past 23 read as all-ones
    expect(rd(3)).toBe(0xffffffff);
    expect(rd(0x10 + 2 * 24)).toBe(0xffffffff);
    // other offsets read zero; the window repeats every 256 bytes
    expect(dev.read(0x20, 4, 0)).toBe(0);
    sel(1);
    expect(dev.read(0x110, 4, 0)).toBe(0x170011);
    expect(() => new IoApic({ id: 16 })).toThrow(DeviceConfigError);
    expect(() => new IoApic({ base: 1 })).toThrow(DeviceConfigError);
  });

  it("redirection entries reset masked; delivery status and Remote IRR are read-only", () => {
    const { rd, wr } = ioapic();
    for (let pin = 0; pin < 24; pin++) {
      expect(rd(0x10 + 2 * pin)).toBe(0x10000);
      expect(rd(0x11 + 2 * pin)).toBe(0);
    }
    wr(0x10 + 2 * 5, 0xffffffff);
    expect(rd(0x10 + 2 * 5)).toBe(0xffffafff);
    wr(0x11 + 2 * 5, 0x12345678);
    expect(rd(0x11 + 2 * 5)).toBe(0x12345678);
  });
});

describe("I/O APIC redirection", () => {
  it("an edge entry sends on each rising edge; a masked one loses the edge", () => {
    const { dev, sent, wr } = ioapic();
    wr(0x10 + 2 * 4, 0x31);
    wr(0x11 + 2 * 4, 0x03000000);
    dev.setPin(4, true);
    dev.setPin(4, true); // no new edge
    dev.setPin(4, false);
    dev.setPin(4, true);
    expect(sent).toEqual([
      { vector: 0x31, deliveryMode: 0, destination: 3, logical: false, levelTriggered: false },
      { vector: 0x31, deliveryMode: 0, destination: 3, logical: false, levelTriggered: false },
    ]);
    dev.setPin(4, false);
    wr(0x10 + 2 * 4, 0x10931); // masked, logical, lowest priority
    dev.setPin(4, true);
    dev.setPin(4, false);
    wr(0x10 + 2 * 4, 0x0931);
    expect(sent).toHaveLength(2);
    dev.setPin(4, true);
    expect(sent[2]).toEqual({
      vector: 0x31,
      deliveryMode: 1,
      destination: 3,
      logical: true,
      levelTriggered: false,
    });
    expect(dev.delivered).toBe(3);
  });

  it("a level entry sets Remote IRR and sends again only after the EOI of its vector", () => {
    const { dev, sent, rd, wr } = ioapic();
    wr(0x10 + 2 * 9, 0x8000 | 0x2000 | 0x59); // level, active low (kept, not applied)
    dev.setPin(9, true);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.levelTriggered).toBe(true);
    expect(rd(0x10 + 2 * 9) & 0x4000).toBe(0x4000);
    dev.setPin(9, true);
    expect(sent).toHaveLength(1);
    dev.eoi(0x58); // another vector: nothing
    expect(rd(0x10 + 2 * 9) & 0x4000).toBe(0x4000);
    dev.eoi(0x59); // still asserted: sent again
    expect(sent).toHaveLength(2);
    expect(rd(0x10 + 2 * 9) & 0x4000).toBe(0x4000);
    dev.setPin(9, false);
    dev.eoi(0x59);
    expect(sent).toHaveLength(2);
    expect(rd(0x10 + 2 * 9) & 0x4000).toBe(0);
    // Remote IRR survives rewriting the entry, and goes when it becomes edge-triggered
    dev.setPin(9, true);
    wr(0x10 + 2 * 9, 0x8059);
    expect(rd(0x10 + 2 * 9)).toBe(0xc059);
    wr(0x10 + 2 * 9, 0x0059);
    expect(rd(0x10 + 2 * 9)).toBe(0x0059);
  });

  it("unmasking a level entry whose pin is asserted sends it", () => {
    const { dev, sent, wr } = ioapic();
    wr(0x10 + 2 * 10, 0x18000 | 0x60);
    dev.setPin(10, true);
    expect(sent).toHaveLength(0);
    wr(0x10 + 2 * 10, 0x8000 | 0x60);
    expect(sent).toHaveLength(1);
  });

  it("a message no APIC accepts leaves Remote IRR clear; ExtINT entries send no vector", () => {
    const { dev, sent, rd, wr } = ioapic(false);
    wr(0x10 + 2 * 3, 0x8000 | 0x33);
    dev.setPin(3, true);
    expect(sent).toHaveLength(1);
    expect(rd(0x10 + 2 * 3) & 0x4000).toBe(0);
    expect(dev.delivered).toBe(0);
    expect(dev.routesExtInt()).toBe(false);
    wr(0x10, 0x700);
    dev.setPin(0, true);
    expect(sent).toHaveLength(1);
    expect(dev.routesExtInt()).toBe(true);
  });

  it("rejects pins outside 0-23; snapshot and restore keep the table and pin levels", () => {
    const { dev, wr } = ioapic();
    expect(() => dev.setPin(24, true)).toThrow(DeviceConfigError);
    expect(() => dev.setPin(-1, true)).toThrow(/pin -1/);
    wr(0x10 + 2 * 7, 0x8047);
    dev.setPin(7, true);
    const copy = new IoApic();
    copy.restore(JSON.parse(JSON.stringify(dev.snapshot())));
    expect(copy.entry(7)).toEqual([0xc047, 0]);
    expect(copy.pinLevel(7)).toBe(true);
    expect(() => copy.restore({ ...dev.snapshot(), low: [] })).toThrow(DeviceConfigError);
  });
});
