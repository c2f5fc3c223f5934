import { describe, expect, it } from "vitest";
import { DeviceConfigError, I8259Pair } from "../../lib/devices/index.js";
import { attach, type Harness } from "./helpers.js";

/** the init sequence Linux and most BIOSes use: vectors 0x20/0x28, cascade on IRQ2, 8086 mode */
function init(h: Harness, icw4 = 0x01): void {
  h.outb(0x20, 0x11);
  h.outb(0x21, 0x20);
  h.outb(0x21, 0x04);
  h.outb(0x21, icw4);
  h.outb(0xa0, 0x11);
  h.outb(0xa1, 0x28);
  h.outb(0xa1, 0x02);
  h.outb(0xa1, icw4);
  h.outb(0x21, 0x00);
  h.outb(0xa1, 0x00);
}

function setup(icw4?: number) {
  const intr: boolean[] = [];
  const pic = new I8259Pair({ onIntrChange: (a) => intr.push(a) });
  const h = attach(pic);
  init(h, icw4);
  return { pic, h, intr };
}

describe("i8259 pair", () => {
  it("delivers an edge on IRQ 1 at the ICW2 base, moving it from IRR to ISR", () => {
    const { pic, h, intr } = setup();
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(intr).toEqual([true]);
    h.outb(0x20, 0x0a); // OCW3: read IRR
    expect(h.inb(0x20)).toBe(0x02);
    expect(pic.acknowledge()).toBe(0x21);
    expect(pic.hasInterrupt()).toBe(false);
    h.outb(0x20, 0x0b); // OCW3: read ISR
    expect(h.inb(0x20)).toBe(0x02);
    h.outb(0x20, 0x20); // non-specific EOI
    expect(h.inb(0x20)).toBe(0);
  });

  it("latches edges only on a rising edge: a held line does not re-trigger", () => {
    const { pic } = setup();
    pic.setIrq(4, true);
    expect(pic.acknowledge()).toBe(0x24);
    pic.write(0, 1, 0x20, 0);
    pic.setIrq(4, true);
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(4, false);
    pic.setIrq(4, true);
    expect(pic.hasInterrupt()).toBe(true);
  });

  it("keeps a level-triggered (ELCR) line requested until it drops", () => {
    const { pic, h } = setup();
    h.outb(0x4d1, 0x08); // IRQ 11 level
    expect(h.inb(0x4d1)).toBe(0x08);
    h.outb(0x4d0, 0xff);
    expect(h.inb(0x4d0)).toBe(0xf8); // IRQ 0-2 cannot be level on PIIX
    pic.setIrq(11, true);
    expect(pic.acknowledge()).toBe(0x2b);
    h.outb(0xa0, 0x20);
    h.outb(0x20, 0x20);
    expect(pic.hasInterrupt()).toBe(true); // still high: requested again
    expect(pic.acknowledge()).toBe(0x2b);
    pic.setIrq(11, false);
    h.outb(0xa0, 0x20);
    h.outb(0x20, 0x20);
    expect(pic.hasInterrupt()).toBe(false);
  });

  it("keeps a latched edge when the line drops before INTA, as KVM's and QEMU's PICs do", () => {
    const { pic } = setup();
    pic.setIrq(3, true);
    pic.setIrq(3, false); // IrqLine.pulse(): must not be lost
    expect(pic.acknowledge()).toBe(0x23);
  });

  it("cascades the slave through IRQ 2 and needs EOI on both chips", () => {
    const { pic, h } = setup();
    pic.setIrq(12, true);
    expect(pic.acknowledge()).toBe(0x2c);
    expect(pic.isr).toBe((1 << 12) | (1 << 2));
    pic.setIrq(3, true); // lower priority than IRQ2 (in service): blocked
    expect(pic.hasInterrupt()).toBe(false);
    h.outb(0xa0, 0x20);
    expect(pic.hasInterrupt()).toBe(false);
    h.outb(0x20, 0x20);
    expect(pic.acknowledge()).toBe(0x23);
  });

  it("maps IRQ 2 from a device to IRQ 9 as the AT bus does", () => {
    const { pic } = setup();
    pic.setIrq(2, true);
    expect(pic.acknowledge()).toBe(0x29);
  });

  it("orders by priority: a higher one nests over a lower in service, a lower waits", () => {
    const { pic, h } = setup();
    pic.setIrq(5, true);
    expect(pic.acknowledge()).toBe(0x25);
    pic.setIrq(6, true);
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(0, true);
    expect(pic.acknowledge()).toBe(0x20);
    h.outb(0x20, 0x20); // EOIs the highest in service: IRQ 0
    expect(pic.isr).toBe(1 << 5);
    h.outb(0x20, 0x60 | 5); // specific EOI for 5
    expect(pic.acknowledge()).toBe(0x26);
  });

  it("masks with OCW1 and reads IMR back", () => {
    const { pic, h } = setup();
    h.outb(0x21, 0x02);
    expect(h.inb(0x21)).toBe(0x02);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(false);
    h.outb(0x21, 0x00);
    expect(pic.acknowledge()).toBe(0x21);
    expect(pic.imr).toBe(0);
  });

  it("answers a vanished request with spurious IRQ 7, and IRQ 15 for the slave", () => {
    const { pic, h } = setup();
    expect(pic.acknowledge()).toBe(0x27);
    expect(pic.isr).toBe(0); // a spurious IRQ is not put in service
    h.outb(0x4d1, 0x08);
    pic.setIrq(11, true);
    expect(pic.hasInterrupt()).toBe(true);
    pic.setIrq(11, false); // level line dropped before INTA
    // the master latched the cascade edge; the slave has nothing left: spurious 15
    expect(pic.acknowledge()).toBe(0x2f);
    expect(pic.spuriousCount).toBe(2);
    expect(pic.isr).toBe(1 << 2); // the master's cascade is in service and needs its EOI
    h.outb(0x20, 0x20);
    expect(pic.isr).toBe(0);
  });

  it("gives slave spurious 15 when the master already committed to IRQ 2", () => {
    const { pic } = setup();
    pic.setIrq(10, true);
    // the master latched IR2's edge; the slave's request is masked before INTA
    pic.slave.imr = 0x04;
    expect(pic.acknowledge()).toBe(0x2f);
  });

  it("auto-EOI leaves nothing in service", () => {
    const { pic } = setup(0x03);
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x23);
    expect(pic.isr).toBe(0);
  });

  it("rotates priorities on non-specific EOI (OCW2 0xA0) and by set-priority (0xC0)", () => {
    const { pic, h } = setup();
    pic.setIrq(0, true);
    pic.acknowledge();
    h.outb(0x20, 0xa0); // rotate: IRQ0 becomes lowest, IRQ1 highest
    pic.setIrq(7, true);
    pic.setIrq(0, false);
    pic.setIrq(0, true);
    expect(pic.acknowledge()).toBe(0x27); // 7 outranks 0 now
    h.outb(0x20, 0x20);
    h.outb(0x20, 0xc0 | 6); // IRQ 6 lowest: IRQ 7 highest
    pic.setIrq(3, true);
    expect(pic.acknowledge()).toBe(0x20); // 0 (priority 1) beats 3 (priority 4)
  });

  it("special mask mode lets lower priorities through while masked ones are in service", () => {
    const { pic, h } = setup();
    pic.setIrq(1, true);
    pic.acknowledge();
    pic.setIrq(4, true);
    expect(pic.hasInterrupt()).toBe(false);
    h.outb(0x21, 0x02); // mask IRQ1 (in service)
    h.outb(0x20, 0x68); // OCW3: set special mask
    expect(pic.acknowledge()).toBe(0x24);
  });

  it("poll mode returns 0x80|irq and acknowledges", () => {
    const { pic, h } = setup();
    pic.setIrq(6, true);
    h.outb(0x20, 0x0c); // OCW3 poll
    expect(h.inb(0x20)).toBe(0x86);
    expect(pic.isr).toBe(1 << 6);
    h.outb(0x20, 0x0c);
    expect(h.inb(0x20)).toBe(0);
  });

  it("ICW1 clears masks and in-service state", () => {
    const { pic, h } = setup();
    pic.setIrq(1, true);
    pic.acknowledge();
    h.outb(0x21, 0xff);
    init(h);
    expect(pic.isr).toBe(0);
    expect(pic.imr).toBe(0);
  });

  it("rejects lines outside 0-15 with a typed error", () => {
    const { pic } = setup();
    expect(() => pic.setIrq(16, true)).toThrow(DeviceConfigError);
  });

  it("snapshots and restores both chips", () => {
    const { pic } = setup();
    pic.setIrq(12, true);
    const s = JSON.parse(JSON.stringify(pic.snapshot()));
    const other = new I8259Pair();
    other.restore(s);
    expect(other.hasInterrupt()).toBe(true);
    expect(other.acknowledge()).toBe(0x2c);
  });
});
