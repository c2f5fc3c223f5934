// A test driver for virtio-mmio devices: guest RAM in an ArrayBuffer, the transport's registers
// through read()/write() as the bus would call them, split queues built by hand (descriptors,
// available ring), and the used ring and interrupt line read back. Tests that want malformed
// rings write descriptors and ring entries themselves.

import type { DeviceContext } from "../../../lib/devices/device.js";
import {
  featureBit,
  flatGuestRam,
  type GuestRam,
  VirtioMmioReg as R,
  VIRTIO_F_VERSION_1,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  type VirtioMmioDevice,
} from "../../../lib/devices/virtio/index.js";
import { FakeClock, RecordingIrq } from "../helpers.js";

export const RAM_BYTES = 1 << 20;

/** Guest RAM: a byte array at guest-physical 0 with a bump allocator. */
export class FakeRam {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly ram: GuestRam;
  #next = 0x1000;

  constructor(size = RAM_BYTES) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
    this.ram = flatGuestRam(this.bytes);
  }

  alloc(length: number, align = 16): number {
    const at = Math.ceil(this.#next / align) * align;
    if (at + length > this.bytes.length) throw new Error("FakeRam: out of memory");
    this.#next = at + length;
    return at;
  }

  /** allocates and fills a buffer */
  put(data: Uint8Array | number[], align = 16): number {
    const at = this.alloc(Math.max(1, data.length), align);
    this.bytes.set(data, at);
    return at;
  }

  get(gpa: number, length: number): Uint8Array {
    return this.bytes.slice(gpa, gpa + length);
  }
}

export interface Buf {
  addr: number;
  len: number;
  /** device-writable */
  write?: boolean;
}

export interface RawDesc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/** one queue as the driver keeps it */
export class DriverQueue {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  #nextDesc = 0;
  #availIdx = 0;
  #seenUsed = 0;

  constructor(
    readonly mem: FakeRam,
    readonly index: number,
    readonly size: number,
  ) {
    this.desc = mem.alloc(16 * size, 16);
    this.avail = mem.alloc(6 + 2 * size, 2);
    this.used = mem.alloc(6 + 8 * size, 4);
  }

  writeDesc(i: number, d: RawDesc, table = this.desc): void {
    const v = this.mem.view;
    const at = table + 16 * i;
    v.setUint32(at, d.addr % 2 ** 32, true);
    v.setUint32(at + 4, Math.floor(d.addr / 2 ** 32), true);
    v.setUint32(at + 8, d.len, true);
    v.setUint16(at + 12, d.flags, true);
    v.setUint16(at + 14, d.next, true);
  }

  /** Writes a chain into free descriptors (wrapping round the table) and makes it available. */
  add(bufs: Buf[]): number {
    const idx = bufs.map(() => {
      const i = this.#nextDesc;
      this.#nextDesc = (this.#nextDesc + 1) % this.size;
      return i;
    });
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(idx[k]!, {
        addr: b.addr,
        len: b.len,
        flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        next: last ? 0 : idx[k + 1]!,
      });
    });
    this.publish(idx[0]!);
    return idx[0]!;
  }

  /** Puts a head in the available ring and moves avail.idx. */
  publish(head: number): void {
    this.mem.view.setUint16(this.avail + 4 + 2 * (this.#availIdx % this.size), head, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    this.mem.view.setUint16(this.avail + 2, this.#availIdx, true);
  }

  setAvailIdx(idx: number): void {
    this.#availIdx = idx & 0xffff;
    this.mem.view.setUint16(this.avail + 2, this.#availIdx, true);
  }

  set availFlags(f: number) {
    this.mem.view.setUint16(this.avail, f, true);
  }

  /** used_event (EVENT_IDX): the used index the driver wants an interrupt for */
  set usedEvent(i: number) {
    this.mem.view.setUint16(this.avail + 4 + 2 * this.size, i, true);
  }

  /** avail_event (EVENT_IDX), as the device wrote it */
  get availEvent(): number {
    return this.mem.view.getUint16(this.used + 4 + 8 * this.size, true);
  }

  get usedIdx(): number {
    return this.mem.view.getUint16(this.used + 2, true);
  }

  /** used elements the driver has not taken yet, in order */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const now = this.usedIdx;
    while (this.#seenUsed !== now) {
      const at = this.used + 4 + 8 * (this.#seenUsed % this.size);
      out.push({ id: this.mem.view.getUint32(at, true), len: this.mem.view.getUint32(at + 4, true) });
      this.#seenUsed = (this.#seenUsed + 1) & 0xffff;
    }
    return out;
  }
}

export class TestDriver {
  readonly irq = new RecordingIrq();
  readonly queues: DriverQueue[] = [];

  constructor(
    readonly dev: VirtioMmioDevice,
    readonly mem: FakeRam,
  ) {
    const ctx: DeviceContext = { irq: this.irq, clock: new FakeClock(), requestStop() {} };
    dev.attach?.(ctx);
  }

  r(off: number, size = 4): number {
    return this.dev.read(off, size);
  }
  w(off: number, value: number, size = 4): void {
    this.dev.write(off, size, value);
  }

  get deviceFeatures(): bigint {
    this.w(R.DeviceFeaturesSel, 0);
    const lo = BigInt(this.r(R.DeviceFeatures));
    this.w(R.DeviceFeaturesSel, 1);
    return lo | (BigInt(this.r(R.DeviceFeatures)) << 32n);
  }

  /** reset, ACKNOWLEDGE, DRIVER, write `features` (default: all offered), FEATURES_OK; returns whether it stuck */
  negotiate(features?: bigint): boolean {
    this.w(R.Status, 0);
    this.w(R.Status, VIRTIO_STATUS_ACKNOWLEDGE);
    this.w(R.Status, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    const f = features ?? this.deviceFeatures;
    this.w(R.DriverFeaturesSel, 0);
    this.w(R.DriverFeatures, Number(f & 0xffffffffn));
    this.w(R.DriverFeaturesSel, 1);
    this.w(R.DriverFeatures, Number((f >> 32n) & 0xffffffffn));
    this.w(R.Status, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    return (this.r(R.Status) & VIRTIO_STATUS_FEATURES_OK) !== 0;
  }

  /** Sets up queue `index` of `size` entries in fresh RAM and marks it ready. */
  setupQueue(index: number, size: number): DriverQueue {
    const q = new DriverQueue(this.mem, index, size);
    this.w(R.QueueSel, index);
    this.w(R.QueueNum, size);
    this.w(R.QueueDescLow, q.desc);
    this.w(R.QueueDescHigh, 0);
    this.w(R.QueueDriverLow, q.avail);
    this.w(R.QueueDriverHigh, 0);
    this.w(R.QueueDeviceLow, q.used);
    this.w(R.QueueDeviceHigh, 0);
    this.w(R.QueueReady, 1);
    this.queues[index] = q;
    return q;
  }

  driverOk(): void {
    this.w(R.Status, this.r(R.Status) | VIRTIO_STATUS_DRIVER_OK);
  }

  notify(index: number): void {
    this.w(R.QueueNotify, index);
  }

  ack(bits = this.r(R.InterruptStatus)): void {
    this.w(R.InterruptACK, bits);
  }

  /** negotiate (VERSION_1 and whatever else given), set up queues of `size`, DRIVER_OK */
  start(queueCount: number, size = 16, features?: bigint): DriverQueue[] {
    if (!this.negotiate(features ?? featureBit(VIRTIO_F_VERSION_1)))
      throw new Error("FEATURES_OK did not stick");
    const qs: DriverQueue[] = [];
    for (let i = 0; i < queueCount; i++) qs.push(this.setupQueue(i, size));
    this.driverOk();
    return qs;
  }
}
