import { describe, expect, it } from "vitest";
import { I8042 } from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

function setup(opts: ConstructorParameters<typeof I8042>[0] = {}) {
  const kbc = new I8042(opts);
  const h = attach(kbc);
  return { kbc, h };
}

/** what a driver does: wait for OBF, read the byte */
function readByte(h: ReturnType<typeof setup>["h"]): number | undefined {
  return h.inb(0x64) & 0x01 ? h.inb(0x60) : undefined;
}

describe("i8042 controller", () => {
  it("starts with an empty output buffer and answers self-test 0xAA with 0x55, setting SYS", () => {
    const { h } = setup();
    expect(h.inb(0x64) & 0x01).toBe(0);
    h.outb(0x64, 0xaa);
    expect(h.inb(0x64) & 0x0d).toBe(0x0d); // OBF, SYS, last write was a command
    expect(h.inb(0x60)).toBe(0x55);
    expect(h.inb(0x64) & 0x01).toBe(0);
  });

  it("reads and writes the command byte (0x20/0x60)", () => {
    const { h, kbc } = setup();
    h.outb(0x64, 0x20);
    expect(readByte(h)).toBe(0x03);
    h.outb(0x64, 0x60);
    h.outb(0x60, 0x65);
    expect(h.inb(0x64) & 0x08).toBe(0); // last write was data
    expect(kbc.commandByte).toBe(0x65);
    h.outb(0x64, 0x20);
    expect(readByte(h)).toBe(0x65);
  });

  it("raises IRQ 1 for keyboard bytes only when the command byte enables it", () => {
    const { h, kbc } = setup();
    kbc.sendScancodes([0x1e, 0x9e]);
    expect(h.irq.level).toBe(true);
    expect(h.inb(0x60)).toBe(0x1e);
    expect(h.irq.level).toBe(true); // next byte moved into the buffer
    expect(h.inb(0x60)).toBe(0x9e);
    expect(h.irq.level).toBe(false);
    h.outb(0x64, 0x60);
    h.outb(0x60, 0x00);
    kbc.sendScancodes([0x1c]);
    expect(h.irq.level).toBe(false);
    expect(readByte(h)).toBe(0x1c);
  });

  it("holds keyboard bytes while the interface is disabled (0xAD/0xAE)", () => {
    const { h, kbc } = setup();
    h.outb(0x64, 0xad);
    kbc.sendScancodes([0x2a]);
    expect(readByte(h)).toBeUndefined();
    h.outb(0x64, 0xae);
    expect(readByte(h)).toBe(0x2a);
  });

  it("pulsing the reset line (0xFE) requests a stop with reason reset", () => {
    const { h } = setup();
    h.outb(0x64, 0xfe);
    expect(h.stops).toEqual([{ reason: "reset" }]);
    h.outb(0x64, 0xff); // pulse nothing
    expect(h.stops).toHaveLength(1);
  });

  it("reads and writes the output port; A20 follows bit 1, bit 0 low resets", () => {
    const a20: boolean[] = [];
    const { h, kbc } = setup({ onA20: (on) => a20.push(on) });
    h.outb(0x64, 0xd0);
    expect(readByte(h)! & 0x03).toBe(0x03);
    h.outb(0x64, 0xd1);
    h.outb(0x60, 0xc1); // A20 off, reset line high
    expect(kbc.a20).toBe(false);
    expect(a20).toEqual([false]);
    h.outb(0x64, 0xdf);
    expect(kbc.a20).toBe(true);
    expect(h.stops).toEqual([]);
    h.outb(0x64, 0xd1);
    h.outb(0x60, 0xc2); // bit 0 low: CPU reset
    expect(h.stops).toEqual([{ reason: "reset" }]);
  });

  it("echoes 0xD2 bytes as keyboard data and answers interface tests", () => {
    const { h } = setup();
    h.outb(0x64, 0xd2);
    h.outb(0x60, 0x42);
    expect(readByte(h)).toBe(0x42);
    h.outb(0x64, 0xab);
    expect(readByte(h)).toBe(0x00);
    h.outb(0x64, 0xa9);
    expect(readByte(h)).toBe(0x02); // no mouse
    h.outb(0x64, 0xd3);
    h.outb(0x60, 0x5a);
    expect(h.inb(0x64) & 0x20).toBe(0); // not on the AUX channel: Linux gives up on AUX
    expect(h.inb(0x60)).toBe(0x5a);
  });

  it("repeats the last byte when the output buffer is empty", () => {
    const { h } = setup();
    h.outb(0x64, 0xaa);
    h.inb(0x60);
    expect(h.inb(0x60)).toBe(0x55);
  });
});

describe("PS/2 keyboard behind the i8042", () => {
  it("acknowledges reset with 0xFA 0xAA and identifies as MF2", () => {
    const { h } = setup();
    h.outb(0x60, 0xff);
    expect([readByte(h), readByte(h), readByte(h)]).toEqual([0xfa, 0xaa, undefined]);
    h.outb(0x60, 0xf2);
    expect([readByte(h), readByte(h), readByte(h)]).toEqual([0xfa, 0xab, 0x83]);
  });

  it("takes parameters for LEDs and scan code set, and reports the set", () => {
    const { h } = setup();
    h.outb(0x60, 0xed);
    expect(readByte(h)).toBe(0xfa);
    h.outb(0x60, 0x07);
    expect(readByte(h)).toBe(0xfa);
    h.outb(0x60, 0xf0);
    h.inb(0x60);
    h.outb(0x60, 0x01);
    h.inb(0x60);
    h.outb(0x60, 0xf0);
    h.inb(0x60);
    h.outb(0x60, 0x00);
    expect([readByte(h), readByte(h)]).toEqual([0xfa, 0x01]);
    h.outb(0x60, 0xee);
    expect(readByte(h)).toBe(0xee);
  });

  it("stops sending scancodes after 0xF5 and resumes after 0xF4", () => {
    const { h, kbc } = setup();
    h.outb(0x60, 0xf5);
    h.inb(0x60);
    expect(kbc.sendScancodes([0x10])).toBe(0);
    h.outb(0x60, 0xf4);
    h.inb(0x60);
    expect(kbc.sendScancodes([0x10])).toBe(1);
    expect(readByte(h)).toBe(0x10);
  });

  it("snapshots queued bytes and controller state", () => {
    const { kbc, h } = setup();
    kbc.sendScancodes([1, 2]);
    h.outb(0x64, 0xd1);
    h.outb(0x60, 0xc1);
    const other = new I8042();
    const h2 = attach(other);
    other.restore(JSON.parse(JSON.stringify(kbc.snapshot())));
    expect(other.a20).toBe(false);
    expect([readByte(h2), readByte(h2), readByte(h2)]).toEqual([1, 2, undefined]);
  });
});
