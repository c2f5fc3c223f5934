// The virtio-mmio transport (version 2) as a driver sees it, through virtio-rng as the simplest
// device: identification, feature negotiation, queue set-up, reset, the interrupt line, and
// notifications suppressed with NO_INTERRUPT / EVENT_IDX.

import { describe, expect, it } from "vitest";
import { DeviceConfigError } from "../../../lib/devices/errors.js";
import {
  featureBit,
  VirtioMmioReg as R,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_INT_USED_BUFFER,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VirtioMmioDevice,
  VirtioRng,
} from "../../../lib/devices/virtio/index.js";
import { FakeRam, TestDriver } from "./driver.js";

function rng(opts: { queueSize?: number } = {}) {
  const mem = new FakeRam();
  let n = 0;
  const dev = new VirtioRng({
    base: 0xd0000000,
    irq: 5,
    memory: mem.ram,
    source: (b) => {
      for (let i = 0; i < b.length; i++) b[i] = n++ & 0xff;
    },
    ...opts,
  });
  return { mem, dev, drv: new TestDriver(dev, mem) };
}

describe("virtio-mmio transport", () => {
  it("identifies itself: magic 'virt', version 2, device and vendor IDs, a 4 KiB MMIO window", () => {
    const { dev, drv } = rng();
    expect(drv.r(R.MagicValue)).toBe(VIRTIO_MMIO_MAGIC);
    expect(drv.r(R.Version)).toBe(2);
    expect(drv.r(R.DeviceID)).toBe(4);
    expect(drv.r(R.VendorID)).not.toBe(0);
    expect(dev.ranges).toEqual([{ space: "mmio", base: 0xd0000000, length: 0x1000 }]);
    expect(dev.irq).toBe(5);
    expect(dev.name).toBe("virtio-rng@d0000000");
    // only aligned 32-bit register accesses mean anything
    expect(drv.r(R.MagicValue, 2)).toBe(0);
    expect(drv.r(R.MagicValue + 1)).toBe(0);
  });

  it("offers VERSION_1, INDIRECT_DESC and EVENT_IDX in the high and low feature words", () => {
    const { drv } = rng();
    const f = drv.deviceFeatures;
    expect(f & featureBit(VIRTIO_F_VERSION_1)).not.toBe(0n);
    expect(f & featureBit(VIRTIO_F_INDIRECT_DESC)).not.toBe(0n);
    expect(f & featureBit(VIRTIO_F_RING_EVENT_IDX)).not.toBe(0n);
    drv.w(R.DeviceFeaturesSel, 2);
    expect(drv.r(R.DeviceFeatures)).toBe(0);
  });

  it("FEATURES_OK sticks only for offered features that include VERSION_1", () => {
    const { dev, drv } = rng();
    expect(drv.negotiate(featureBit(VIRTIO_F_VERSION_1))).toBe(true);
    expect(dev.negotiatedFeatures).toBe(featureBit(VIRTIO_F_VERSION_1));
    // legacy drivers (no VERSION_1) are refused
    expect(drv.negotiate(0n)).toBe(false);
    expect(dev.negotiatedFeatures).toBe(0n);
    // a bit the device did not offer
    expect(drv.negotiate(featureBit(VIRTIO_F_VERSION_1) | featureBit(3))).toBe(false);
    expect(drv.negotiate(featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_RING_EVENT_IDX))).toBe(true);
    // after FEATURES_OK the driver's features are fixed
    drv.w(R.DriverFeaturesSel, 1);
    drv.w(R.DriverFeatures, 0);
    expect(dev.negotiatedFeatures).toBe(featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_RING_EVENT_IDX));
  });

  it("sets up a queue: QueueNumMax, addresses read back, QueueReady; absent queues read 0", () => {
    const { drv } = rng({ queueSize: 64 });
    drv.negotiate();
    drv.w(R.QueueSel, 0);
    expect(drv.r(R.QueueNumMax)).toBe(64);
    expect(drv.r(R.QueueReady)).toBe(0);
    const q = drv.setupQueue(0, 32);
    drv.w(R.QueueSel, 0);
    expect(drv.r(R.QueueReady)).toBe(1);
    expect(drv.r(R.QueueNum)).toBe(32);
    expect(drv.r(R.QueueDescLow)).toBe(q.desc);
    expect(drv.r(R.QueueDriverLow)).toBe(q.avail);
    expect(drv.r(R.QueueDeviceLow)).toBe(q.used);
    // a live queue's layout cannot change under the device
    drv.w(R.QueueDescLow, 0x8000);
    expect(drv.r(R.QueueDescLow)).toBe(q.desc);
    drv.w(R.QueueSel, 1);
    expect(drv.r(R.QueueNumMax)).toBe(0);
    expect(drv.r(R.QueueReady)).toBe(0);
    drv.w(R.QueueReady, 1);
    expect(drv.r(R.QueueReady)).toBe(0);
  });

  it("serves a request and raises the line; InterruptACK lowers it", () => {
    const { mem, drv } = rng();
    const [q] = drv.start(1);
    const buf = mem.alloc(8);
    const head = q!.add([{ addr: buf, len: 8, write: true }]);
    expect(drv.irq.level).toBe(false);
    drv.notify(0);
    expect(q!.takeUsed()).toEqual([{ id: head, len: 8 }]);
    expect([...mem.get(buf, 8)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(drv.r(R.InterruptStatus)).toBe(VIRTIO_INT_USED_BUFFER);
    expect(drv.irq.level).toBe(true);
    drv.ack();
    expect(drv.r(R.InterruptStatus)).toBe(0);
    expect(drv.irq.level).toBe(false);
  });

  it("a new interrupt while the line is high gets its own edge when the first is acknowledged", () => {
    const { dev, mem, drv } = rng();
    drv.start(1);
    drv.queues[0]!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(drv.irq.rises).toBe(1);
    // the device breaks while bit 0 is pending: bit 1 joins, the line stays high
    drv.queues[0]!.publish(99);
    drv.notify(0);
    expect(dev.broken).toMatch(/head 99/);
    expect(drv.r(R.InterruptStatus)).toBe(3);
    expect(drv.irq.rises).toBe(1);
    drv.ack(VIRTIO_INT_USED_BUFFER);
    expect(drv.irq.level).toBe(true);
    expect(drv.irq.rises).toBe(2);
    drv.ack(2);
    expect(drv.irq.level).toBe(false);
  });

  it("buffers made available before DRIVER_OK are served when DRIVER_OK is set", () => {
    const { mem, drv } = rng();
    drv.negotiate();
    const q = drv.setupQueue(0, 8);
    q.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q.usedIdx).toBe(0);
    drv.driverOk();
    expect(q.usedIdx).toBe(1);
    expect(drv.irq.level).toBe(true);
  });

  it("NO_INTERRUPT suppresses the interrupt (without EVENT_IDX)", () => {
    const { mem, drv } = rng();
    const [q] = drv.start(1);
    q!.availFlags = VIRTQ_AVAIL_F_NO_INTERRUPT;
    q!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q!.usedIdx).toBe(1);
    expect(drv.irq.level).toBe(false);
    expect(drv.r(R.InterruptStatus)).toBe(0);
  });

  it("with EVENT_IDX: interrupts only when used_event is passed, and avail_event follows the device", () => {
    const { mem, drv } = rng();
    const [q] = drv.start(1, 8, featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_RING_EVENT_IDX));
    q!.usedEvent = 2; // interrupt when the third buffer is used
    for (let i = 0; i < 2; i++) q!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q!.usedIdx).toBe(2);
    expect(drv.irq.level).toBe(false);
    expect(q!.availEvent).toBe(2);
    q!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q!.usedIdx).toBe(3);
    expect(drv.irq.level).toBe(true);
    expect(q!.availEvent).toBe(3);
  });

  it("writing 0 to Status resets: queues, features, interrupt and broken state go", () => {
    const { dev, mem, drv } = rng();
    const [q] = drv.start(1);
    q!.publish(200); // a head outside the table
    drv.notify(0);
    expect(dev.broken).toBeDefined();
    expect(drv.r(R.Status) & VIRTIO_STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
    expect(drv.irq.level).toBe(true);
    drv.w(R.Status, 0);
    expect(dev.broken).toBeUndefined();
    expect(drv.r(R.Status)).toBe(0);
    expect(drv.r(R.InterruptStatus)).toBe(0);
    expect(drv.irq.level).toBe(false);
    drv.w(R.QueueSel, 0);
    expect(drv.r(R.QueueReady)).toBe(0);
    expect(dev.negotiatedFeatures).toBe(0n);
    // and the device works again after a fresh set-up
    const [q2] = drv.start(1);
    q2!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q2!.usedIdx).toBe(1);
    expect(dev.live).toBe(true);
  });

  it("the driver cannot set DEVICE_NEEDS_RESET; DRIVER_OK reads back", () => {
    const { drv } = rng();
    drv.start(1);
    drv.w(R.Status, drv.r(R.Status) | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    expect(drv.r(R.Status) & VIRTIO_STATUS_DEVICE_NEEDS_RESET).toBe(0);
    expect(drv.r(R.Status) & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK)).toBe(0x0c);
  });

  it("a notify for a queue that is not ready, or that does not exist, does nothing", () => {
    const { dev, drv } = rng();
    drv.start(0);
    drv.notify(0);
    drv.notify(7);
    expect(dev.broken).toBeUndefined();
    expect(drv.irq.level).toBe(false);
  });

  it("snapshot/restore carries registers, queue layouts and ring positions over to a new device", () => {
    const { dev, mem, drv } = rng();
    const [q] = drv.start(1, 8, featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_RING_EVENT_IDX));
    q!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv.notify(0);
    expect(q!.takeUsed()).toHaveLength(1);
    const state = JSON.parse(JSON.stringify(dev.snapshot()));
    const copy = new VirtioRng({ base: 0xd0000000, irq: 5, memory: mem.ram });
    const drv2 = new TestDriver(copy, mem);
    copy.restore(state);
    expect(drv2.irq.level).toBe(true); // InterruptStatus 1 was not acknowledged
    expect(drv2.r(R.Status)).toBe(drv.r(R.Status));
    expect(copy.negotiatedFeatures).toBe(dev.negotiatedFeatures);
    const head = q!.add([{ addr: mem.alloc(4), len: 4, write: true }]);
    drv2.notify(0);
    // the second chain lands in used slot 1, as it would have on the original device
    expect(q!.takeUsed()).toEqual([{ id: head, len: 4 }]);
    expect(q!.availEvent).toBe(2);
    expect(() => copy.restore({ ...state, queues: [] })).toThrow(DeviceConfigError);
  });

  it("rejects bad construction options with DeviceConfigError", () => {
    const mem = new FakeRam();
    expect(() => new VirtioRng({ base: 0xd0000100, irq: 5, memory: mem.ram })).toThrow(DeviceConfigError);
    expect(() => new VirtioRng({ base: 0xd0000000, irq: -1, memory: mem.ram })).toThrow(DeviceConfigError);
    expect(() => new VirtioRng({ base: 0xd0000000, irq: 5, queueSize: 100, memory: mem.ram })).toThrow(
      /power of 2/,
    );
    expect(() => new VirtioRng({ base: 0xd0000000, irq: 5 } as never)).toThrow(/memory/);
  });

  it("checks a device class's spec as it checks options (found by npm run fuzz)", () => {
    const mem = new FakeRam();
    // the transport is abstract to TypeScript only: from JavaScript it can be constructed directly
    const Transport = VirtioMmioDevice as unknown as new (spec: unknown, opts: unknown) => VirtioMmioDevice;
    const opts = { base: 0xd0000000, irq: 5, memory: mem.ram };
    const good = { kind: "virtio-test", deviceId: 4, features: 0n, queueSizes: [8] };
    expect(new Transport(good, opts).name).toBe("virtio-test@d0000000");
    for (const [spec, field] of [
      [null, /spec: must be an object/],
      [{ ...good, kind: "" }, /spec\.kind/],
      [{ ...good, deviceId: 0 }, /spec\.deviceId/],
      [{ ...good, features: 1 }, /spec\.features/],
      [{ ...good, queueSizes: [] }, /spec\.queueSizes/],
    ] as const) {
      expect(() => new Transport(spec, opts)).toThrow(DeviceConfigError);
      expect(() => new Transport(spec, opts)).toThrow(field);
    }
  });
});
