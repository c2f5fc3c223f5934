// Notifications that do not come through the device's window (a KVM ioeventfd signalled by the
// guest's QueueNotify write): notify(index) runs the queue as the write does, and running a queue
// nobody notified, or one that does not exist, is harmless (the machine runs every queue per
// eventfd wake-up). The ring words both sides race on go through Atomics where the view allows.

import { describe, expect, it } from "vitest";
import { VirtioMmioReg as R, VirtioConsole, VirtioRng } from "../../../lib/devices/virtio/index.js";
import { RingWord } from "../../../lib/devices/virtio/ring-word.js";
import { FakeRam, TestDriver } from "./driver.js";

describe("virtio notify() from outside the window", () => {
  it("runs the queue as a QueueNotify write does; other queues and idle ones stay untouched", () => {
    const mem = new FakeRam();
    const dev = new VirtioRng({ base: 0xd0000000, irq: 5, memory: mem.ram, source: (b) => b.fill(7) });
    const drv = new TestDriver(dev, mem);
    expect(dev.queueCount).toBe(1);
    const [q] = drv.start(1);
    const at = mem.alloc(8);
    const head = q!.add([{ addr: at, len: 8, write: true }]);
    dev.notify(0);
    expect(q!.takeUsed()).toEqual([{ id: head, len: 8 }]);
    expect(drv.irq.level).toBe(true);
    drv.w(R.InterruptACK, 1);
    // nothing available, no such queue: no used entry, no interrupt
    dev.notify(0);
    dev.notify(5);
    expect(q!.takeUsed()).toEqual([]);
    expect(drv.irq.level).toBe(false);
    expect(dev.broken).toBeUndefined();
  });

  it("queueCount is the number of queues a device has", () => {
    const mem = new FakeRam();
    expect(new VirtioConsole({ base: 0xd0000000, irq: 5, memory: mem.ram }).queueCount).toBe(2);
  });
});

describe("RingWord", () => {
  it("reads and writes little-endian 16-bit words, aligned (Atomics) or not (DataView)", () => {
    for (const buf of [new ArrayBuffer(8), new SharedArrayBuffer(8)]) {
      const bytes = new Uint8Array(buf);
      for (const base of [0, 1]) {
        bytes.fill(0);
        const view = new DataView(buf, base, 6);
        const w = new RingWord(view, 2);
        w.store(0x1234);
        expect([bytes[base + 2], bytes[base + 3]]).toEqual([0x34, 0x12]);
        bytes[base + 2] = 0xcd;
        expect(w.load()).toBe(0x12cd);
      }
    }
  });
});
