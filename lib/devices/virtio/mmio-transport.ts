// The virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2), as Firecracker and Cloud
// Hypervisor expose it: a 4 KiB window of 32-bit registers with the device's config space at 0x100,
// and one level interrupt line, high while InterruptStatus is non-zero. The device classes (blk, rng,
// console) extend this and supply their ID, features, config space and queue handling.
//
// Whatever the guest writes, nothing throws out of read()/write(): a malformed ring or chain (or a
// bug in a device's handler) sets DEVICE_NEEDS_RESET with a config-change interrupt, keeps the reason
// in `broken`, and the device's queues stay idle until the driver resets it.

import { describeValue } from "../../types/describe-value.js";
import type { Device, DeviceContext, DeviceRange, IrqLine } from "../device.js";
import { DeviceConfigError } from "../errors.js";
import { DeviceOptionReader } from "../options.js";
import type { GuestRam } from "./guest-ram.js";
import { VIRTQ_MAX_SIZE, Virtqueue, type VirtqueueOptions } from "./queue.js";

export const VIRTIO_MMIO_MAGIC = 0x74726976; // "virt"
export const VIRTIO_MMIO_VERSION = 2;
/** the window each device decodes: registers up to 0xff, config space from 0x100 */
export const VIRTIO_MMIO_WINDOW = 0x1000;
/** VendorID: "NVMM" (Linux shows it in the modalias; drivers match on DeviceID) */
export const VIRTIO_MMIO_VENDOR = 0x4d4d564e;

export const VirtioMmioReg = {
  MagicValue: 0x000,
  Version: 0x004,
  DeviceID: 0x008,
  VendorID: 0x00c,
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  QueueReady: 0x044,
  QueueNotify: 0x050,
  InterruptStatus: 0x060,
  InterruptACK: 0x064,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
  SHMSel: 0x0ac,
  SHMLenLow: 0x0b0,
  SHMLenHigh: 0x0b4,
  SHMBaseLow: 0x0b8,
  SHMBaseHigh: 0x0bc,
  QueueReset: 0x0c0,
  ConfigGeneration: 0x0fc,
  Config: 0x100,
} as const;

export const VIRTIO_STATUS_ACKNOWLEDGE = 0x01;
export const VIRTIO_STATUS_DRIVER = 0x02;
export const VIRTIO_STATUS_DRIVER_OK = 0x04;
export const VIRTIO_STATUS_FEATURES_OK = 0x08;
export const VIRTIO_STATUS_DEVICE_NEEDS_RESET = 0x40;
export const VIRTIO_STATUS_FAILED = 0x80;

/** InterruptStatus bits */
export const VIRTIO_INT_USED_BUFFER = 0x1;
export const VIRTIO_INT_CONFIG_CHANGE = 0x2;

/** transport feature bits (bit numbers) */
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_RING_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

export const featureBit = (n: number): bigint => 1n << BigInt(n);

/** what the transport offers with every device */
const TRANSPORT_FEATURES =
  featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_F_INDIRECT_DESC) | featureBit(VIRTIO_F_RING_EVENT_IDX);
const TWO32 = 2 ** 32;

/** What every virtio-mmio device takes: its 4 KiB MMIO window, its interrupt line and guest RAM. */
export interface VirtioMmioOptions {
  /** guest-physical base of the 4 KiB window (4 KiB aligned) */
  base: number;
  /** the interrupt line (ISA IRQ / GSI) */
  irq: number;
  /** guest RAM the rings and buffers live in */
  memory: GuestRam;
  /** told once each time the guest breaks the device (the message is also in `broken`) */
  onBroken?: (message: string) => void;
}

/** what a device class tells the transport about itself */
export interface VirtioDeviceSpec {
  /** "virtio-blk", ...; the device's name is this plus `@base` */
  kind: string;
  /** virtio device ID (2 block, 3 console, 4 entropy) */
  deviceId: number;
  /** device-specific feature bits offered (the transport adds VERSION_1, INDIRECT_DESC, EVENT_IDX) */
  features: bigint;
  /** QueueNumMax of each queue */
  queueSizes: readonly number[];
}

/** a queue as snapshots keep it */
export interface VirtioQueueSnapshot {
  /** QueueNum: the ring size the driver chose. */
  num: number;
  /** QueueReady. */
  ready: boolean;
  /** Guest-physical address of the descriptor table. */
  desc: number;
  /** Guest-physical address of the driver (available) ring. */
  driver: number;
  /** Guest-physical address of the device (used) ring. */
  device: number;
  /** ring positions of a ready queue */
  lastAvail: number;
  /** The device's next used-ring index. */
  used: number;
  /** The used index the driver was last interrupted for (event-index suppression). */
  signalled: number;
}

/** the transport's state as plain JSON-able data (feature words as hex strings) */
export interface VirtioMmioSnapshot {
  /** The device status register (ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK, ...). */
  status: number;
  /** InterruptStatus: used-buffer (bit 0) and config-change (bit 1) interrupts not yet acknowledged. */
  interruptStatus: number;
  /** DeviceFeaturesSel. */
  deviceFeaturesSel: number;
  /** DriverFeaturesSel. */
  driverFeaturesSel: number;
  /** The features the driver accepted, as a hex string. */
  driverFeatures: string;
  /** QueueSel. */
  queueSel: number;
  /** ConfigGeneration. */
  generation: number;
  /** Why the device needs a reset (the guest broke it), or null. */
  broken: string | null;
  /** Each queue's state, by index. */
  queues: VirtioQueueSnapshot[];
}

interface QueueState {
  readonly numMax: number;
  num: number;
  ready: boolean;
  desc: number;
  driver: number;
  device: number;
  vq: Virtqueue | undefined;
}

/** A device class's spec is checked like options: a subclass with a wrong one gets a typed error. */
function checkSpec(spec: unknown): asserts spec is VirtioDeviceSpec {
  const fail = (field: string, what: string): never => {
    throw new DeviceConfigError("virtio-mmio", `spec${field}`, what);
  };
  if (typeof spec !== "object" || spec === null) fail("", `must be an object, got ${describeValue(spec)}`);
  const s = spec as Partial<Record<keyof VirtioDeviceSpec, unknown>>;
  if (typeof s.kind !== "string" || s.kind === "")
    fail(".kind", `must be a non-empty string, got ${describeValue(s.kind)}`);
  if (
    typeof s.deviceId !== "number" ||
    !Number.isInteger(s.deviceId) ||
    s.deviceId < 1 ||
    s.deviceId > 0xffff
  )
    fail(".deviceId", `must be a virtio device ID (1-65535), got ${describeValue(s.deviceId)}`);
  if (typeof s.features !== "bigint" || s.features < 0n || s.features >= 1n << 64n)
    fail(".features", `must be a 64-bit bigint, got ${describeValue(s.features)}`);
  if (!Array.isArray(s.queueSizes) || s.queueSizes.length === 0)
    fail(".queueSizes", `must be a non-empty array, got ${describeValue(s.queueSizes)}`);
}

/**
 * The virtio-mmio transport (virtio 1.x, version 2 registers) that VirtioBlk, VirtioConsole and VirtioRng
 * build on: feature negotiation, queues and interrupts. A device class supplies its config space and a queue
 * handler. A guest that breaks the protocol sets DEVICE_NEEDS_RESET, never a crash.
 */
export abstract class VirtioMmioDevice implements Device {
  /** {@inheritDoc Device.name} */
  readonly name: string;
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** {@inheritDoc Device.irq} */
  readonly irq: number;
  /** The virtio device ID (2 block, 3 console, 4 entropy). */
  readonly deviceId: number;
  /** every feature bit offered, transport bits included */
  readonly offeredFeatures: bigint;
  /** Guest RAM the rings and buffers live in. */
  protected readonly memory: GuestRam;
  readonly #queues: QueueState[];
  readonly #onBroken: ((message: string) => void) | undefined;
  #line: IrqLine | undefined;
  #status = 0;
  #isr = 0;
  #deviceFeaturesSel = 0;
  #driverFeaturesSel = 0;
  #driverFeatures = 0n;
  #queueSel = 0;
  #generation = 0;
  #broken: string | undefined;

  constructor(spec: VirtioDeviceSpec, opts: VirtioMmioOptions) {
    checkSpec(spec);
    const kind = spec.kind;
    if (opts === undefined) throw new DeviceConfigError(kind, "options", "an object is required");
    const o = new DeviceOptionReader<VirtioMmioOptions>(kind, opts);
    const base = o.raw("base");
    if (
      typeof base !== "number" ||
      !Number.isSafeInteger(base) ||
      base < 0 ||
      base % VIRTIO_MMIO_WINDOW !== 0
    ) {
      throw new DeviceConfigError(
        kind,
        "base",
        `${describeValue(base)} is not a 4 KiB-aligned guest-physical address`,
      );
    }
    const memory = o.raw("memory") as Partial<GuestRam> | null | undefined;
    if (typeof memory !== "object" || memory === null || typeof memory.view !== "function") {
      throw new DeviceConfigError(kind, "memory", "guest RAM ({ view(gpa, length) }) is required");
    }
    for (const n of spec.queueSizes) {
      if (!Number.isInteger(n) || n < 1 || n > VIRTQ_MAX_SIZE || (n & (n - 1)) !== 0) {
        throw new DeviceConfigError(
          kind,
          "queueSize",
          `${describeValue(n)} is not a power of 2 in 1-${VIRTQ_MAX_SIZE}`,
        );
      }
    }
    if (o.raw("irq") === undefined) throw new DeviceConfigError(kind, "irq", "an interrupt line is required");
    this.irq = o.irq("irq", 0);
    this.#onBroken = o.callback("onBroken");
    this.name = `${kind}@${base.toString(16)}`;
    this.ranges = [{ space: "mmio", base, length: VIRTIO_MMIO_WINDOW }];
    this.deviceId = spec.deviceId;
    this.offeredFeatures = spec.features | TRANSPORT_FEATURES;
    this.memory = memory as GuestRam;
    this.#queues = spec.queueSizes.map((numMax) => ({
      numMax,
      num: numMax,
      ready: false,
      desc: 0,
      driver: 0,
      device: 0,
      vq: undefined,
    }));
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#line = ctx.irq;
  }

  // ---- what the host sees ---------------------------------------------------------------------

  /** why the device stopped (DEVICE_NEEDS_RESET), or undefined while it works */
  get broken(): string | undefined {
    return this.#broken;
  }

  /** the Status register as the driver reads it */
  get status(): number {
    return this.#status | (this.#broken === undefined ? 0 : VIRTIO_STATUS_DEVICE_NEEDS_RESET);
  }

  /** InterruptStatus: bit 0 used buffer, bit 1 config change, until the driver acknowledges them. */
  get interruptStatus(): number {
    return this.#isr;
  }

  /** How many queues the device has (the QueueNotify values that name one: 0 to queueCount - 1). */
  get queueCount(): number {
    return this.#queues.length;
  }

  /**
   * Runs queue `index` as a write of `index` to QueueNotify does: for notifications that reach the
   * host another way than through this window (a KVM ioeventfd the guest's write signalled).
   */
  notify(index: number): void {
    this.service(index);
  }

  /** the features in force: what the driver accepted once FEATURES_OK stuck, else 0 */
  get negotiatedFeatures(): bigint {
    return this.#status & VIRTIO_STATUS_FEATURES_OK ? this.#driverFeatures : 0n;
  }

  /** the driver set DRIVER_OK and the device is not broken: queues are live */
  get live(): boolean {
    return (this.#status & VIRTIO_STATUS_DRIVER_OK) !== 0 && this.#broken === undefined;
  }

  // ---- what device classes supply --------------------------------------------------------------

  /** the device's configuration space as it reads now (little-endian fields) */
  protected abstract configSpace(): Uint8Array;
  /** the driver wrote config space (most devices ignore it) */
  protected writeConfig(_offset: number, _size: number, _value: number): void {}
  /** takes the available chains of queue `index` and pushes them used; may throw (the device breaks) */
  protected abstract handleQueue(index: number, queue: Virtqueue): void;
  /** per-queue limits (chain/descriptor sizes) */
  protected queueLimits(_index: number): Pick<VirtqueueOptions, "maxChainBytes" | "maxDescriptorBytes"> {
    return {};
  }
  /** the device was reset (by the driver writing 0 to Status, or by the machine) */
  protected onReset(): void {}

  /** whether feature bit `n` was negotiated */
  protected negotiated(n: number): boolean {
    return (this.negotiatedFeatures & featureBit(n)) !== 0n;
  }

  /** Runs queue `index` now (a notify, or host-side input for it); interrupts as the driver asked. */
  protected service(index: number): void {
    if (!this.live) return;
    const q = this.#queues[index]?.vq;
    if (!q) return;
    try {
      this.handleQueue(index, q);
    } catch (e) {
      this.markBroken(`queue ${index}: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (q.takeInterrupt()) this.#raise(VIRTIO_INT_USED_BUFFER);
  }

  /** DEVICE_NEEDS_RESET with a config-change interrupt; the first reason is kept */
  protected markBroken(message: string): void {
    if (this.#broken !== undefined) return;
    this.#broken = message;
    this.#raise(VIRTIO_INT_CONFIG_CHANGE);
    this.#onBroken?.(message);
  }

  /** the device changed its config space: new generation and a config-change interrupt */
  protected configChanged(): void {
    this.#generation = (this.#generation + 1) >>> 0;
    if (this.#status & VIRTIO_STATUS_DRIVER_OK) this.#raise(VIRTIO_INT_CONFIG_CHANGE);
  }

  // ---- registers ----------------------------------------------------------------------------------

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number): number {
    if (offset >= VirtioMmioReg.Config) return this.#readConfig(offset - VirtioMmioReg.Config, size);
    // the registers are 32 bits wide and the spec allows only aligned 32-bit accesses to them
    if (size !== 4 || offset % 4 !== 0) return 0;
    const q = this.#queues[this.#queueSel];
    switch (offset) {
      case VirtioMmioReg.MagicValue:
        return VIRTIO_MMIO_MAGIC;
      case VirtioMmioReg.Version:
        return VIRTIO_MMIO_VERSION;
      case VirtioMmioReg.DeviceID:
        return this.deviceId;
      case VirtioMmioReg.VendorID:
        return VIRTIO_MMIO_VENDOR;
      case VirtioMmioReg.DeviceFeatures:
        return word(this.offeredFeatures, this.#deviceFeaturesSel);
      case VirtioMmioReg.QueueNumMax:
        return q ? q.numMax : 0;
      case VirtioMmioReg.QueueNum:
        return q ? q.num : 0;
      case VirtioMmioReg.QueueReady:
        return q?.ready ? 1 : 0;
      case VirtioMmioReg.InterruptStatus:
        return this.#isr;
      case VirtioMmioReg.Status:
        return this.status;
      case VirtioMmioReg.QueueDescLow:
        return q ? q.desc % TWO32 : 0;
      case VirtioMmioReg.QueueDescHigh:
        return q ? Math.floor(q.desc / TWO32) : 0;
      case VirtioMmioReg.QueueDriverLow:
        return q ? q.driver % TWO32 : 0;
      case VirtioMmioReg.QueueDriverHigh:
        return q ? Math.floor(q.driver / TWO32) : 0;
      case VirtioMmioReg.QueueDeviceLow:
        return q ? q.device % TWO32 : 0;
      case VirtioMmioReg.QueueDeviceHigh:
        return q ? Math.floor(q.device / TWO32) : 0;
      // no shared memory regions: a length of -1 says "no such region"
      case VirtioMmioReg.SHMLenLow:
      case VirtioMmioReg.SHMLenHigh:
      case VirtioMmioReg.SHMBaseLow:
      case VirtioMmioReg.SHMBaseHigh:
        return 0xffffffff;
      case VirtioMmioReg.ConfigGeneration:
        return this.#generation;
      default:
        return 0;
    }
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, size: number, value: number): void {
    if (offset >= VirtioMmioReg.Config) {
      this.writeConfig(offset - VirtioMmioReg.Config, size, value);
      return;
    }
    if (size !== 4 || offset % 4 !== 0) return;
    const v = value >>> 0;
    const q = this.#queues[this.#queueSel];
    switch (offset) {
      case VirtioMmioReg.DeviceFeaturesSel:
        this.#deviceFeaturesSel = v;
        return;
      case VirtioMmioReg.DriverFeatures:
        this.#writeDriverFeatures(v);
        return;
      case VirtioMmioReg.DriverFeaturesSel:
        this.#driverFeaturesSel = v;
        return;
      case VirtioMmioReg.QueueSel:
        this.#queueSel = v;
        return;
      case VirtioMmioReg.QueueNum:
        if (q && !q.ready) q.num = v;
        return;
      case VirtioMmioReg.QueueReady:
        if (q) this.#setReady(this.#queueSel, q, (v & 1) === 1);
        return;
      case VirtioMmioReg.QueueNotify:
        // without VIRTIO_F_NOTIFICATION_DATA the value is just the queue index
        this.notify(v & 0xffff);
        return;
      case VirtioMmioReg.InterruptACK:
        this.#ack(v);
        return;
      case VirtioMmioReg.Status:
        this.#writeStatus(v);
        return;
      case VirtioMmioReg.QueueDescLow:
      case VirtioMmioReg.QueueDescHigh:
      case VirtioMmioReg.QueueDriverLow:
      case VirtioMmioReg.QueueDriverHigh:
      case VirtioMmioReg.QueueDeviceLow:
      case VirtioMmioReg.QueueDeviceHigh:
        if (q && !q.ready) setAddress(q, offset, v);
        return;
      default:
        return;
    }
  }

  /** Device reset: as the driver writing 0 to Status (queues forgotten, line low, not broken). */
  reset(): void {
    this.#status = 0;
    this.#deviceFeaturesSel = 0;
    this.#driverFeaturesSel = 0;
    this.#driverFeatures = 0n;
    this.#queueSel = 0;
    this.#broken = undefined;
    for (const q of this.#queues) {
      q.num = q.numMax;
      q.ready = false;
      q.desc = 0;
      q.driver = 0;
      q.device = 0;
      q.vq = undefined;
    }
    if (this.#isr !== 0) {
      this.#isr = 0;
      this.#line?.set(false);
    }
    this.onReset();
  }

  /** The transport's state (registers, queue layouts and ring positions); device classes add theirs. */
  snapshot(): VirtioMmioSnapshot {
    return {
      status: this.#status,
      interruptStatus: this.#isr,
      deviceFeaturesSel: this.#deviceFeaturesSel,
      driverFeaturesSel: this.#driverFeaturesSel,
      driverFeatures: this.#driverFeatures.toString(16),
      queueSel: this.#queueSel,
      generation: this.#generation,
      broken: this.#broken ?? null,
      queues: this.#queues.map((q) => ({
        num: q.num,
        ready: q.ready,
        desc: q.desc,
        driver: q.driver,
        device: q.device,
        lastAvail: q.vq?.lastAvailIdx ?? 0,
        used: q.vq?.usedIdx ?? 0,
        signalled: q.vq?.signalledUsedIdx ?? 0,
      })),
    };
  }

  /**
   * Puts a snapshot back (same device kind and queue count). Ready queues are rebuilt over this
   * device's guest RAM; one that no longer fits it marks the device broken, as a guest's bad layout.
   */
  restore(s: VirtioMmioSnapshot): void {
    if (!s || !Array.isArray(s.queues) || s.queues.length !== this.#queues.length) {
      throw new DeviceConfigError(
        this.name,
        "restore",
        `the snapshot does not have ${this.#queues.length} queues`,
      );
    }
    this.#status = s.status & 0xff & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    this.#deviceFeaturesSel = s.deviceFeaturesSel >>> 0;
    this.#driverFeaturesSel = s.driverFeaturesSel >>> 0;
    this.#driverFeatures = BigInt(`0x${s.driverFeatures || "0"}`) & 0xffffffffffffffffn;
    this.#queueSel = s.queueSel >>> 0;
    this.#generation = s.generation >>> 0;
    this.#broken = s.broken ?? undefined;
    s.queues.forEach((qs, i) => {
      const q = this.#queues[i]!;
      q.num = qs.num >>> 0;
      q.desc = qs.desc;
      q.driver = qs.driver;
      q.device = qs.device;
      q.ready = false;
      q.vq = undefined;
      if (qs.ready) {
        this.#setReady(i, q, true);
        (q.vq as Virtqueue | undefined)?.setIndexes(qs.lastAvail, qs.used, qs.signalled);
      }
    });
    this.#isr = s.interruptStatus & (VIRTIO_INT_USED_BUFFER | VIRTIO_INT_CONFIG_CHANGE);
    if (this.#broken !== undefined) this.#isr |= VIRTIO_INT_CONFIG_CHANGE;
    this.#line?.set(this.#isr !== 0);
  }

  #readConfig(offset: number, size: number): number {
    const cfg = this.configSpace();
    let v = 0;
    for (let i = 0; i < size; i++) v += (cfg[offset + i] ?? 0) * 2 ** (8 * i);
    return v;
  }

  #writeDriverFeatures(v: number): void {
    // features are fixed once FEATURES_OK is set
    if (this.#status & VIRTIO_STATUS_FEATURES_OK) return;
    if (this.#driverFeaturesSel > 1) return;
    const shift = BigInt(32 * this.#driverFeaturesSel);
    this.#driverFeatures = (this.#driverFeatures & ~(0xffffffffn << shift)) | (BigInt(v) << shift);
  }

  #writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    let next = v & 0xff & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    const before = this.#status;
    if (next & VIRTIO_STATUS_FEATURES_OK && !(before & VIRTIO_STATUS_FEATURES_OK)) {
      // FEATURES_OK sticks only for a subset of what was offered that includes VERSION_1
      const f = this.#driverFeatures;
      const ok = (f & ~this.offeredFeatures) === 0n && (f & featureBit(VIRTIO_F_VERSION_1)) !== 0n;
      if (!ok) next &= ~VIRTIO_STATUS_FEATURES_OK;
    }
    this.#status = next;
    if (next & VIRTIO_STATUS_DRIVER_OK && !(before & VIRTIO_STATUS_DRIVER_OK)) {
      // buffers made available before DRIVER_OK wait until now
      for (let i = 0; i < this.#queues.length; i++) this.service(i);
    }
  }

  #setReady(index: number, q: QueueState, ready: boolean): void {
    if (!ready) {
      q.ready = false;
      q.vq = undefined;
      return;
    }
    if (q.ready) return;
    q.ready = true;
    if (q.num > q.numMax) {
      this.markBroken(`queue ${index}: size ${q.num} is more than QueueNumMax ${q.numMax}`);
      return;
    }
    try {
      q.vq = new Virtqueue(
        this.memory,
        { size: q.num, desc: q.desc, driver: q.driver, device: q.device },
        {
          eventIdx: this.negotiated(VIRTIO_F_RING_EVENT_IDX),
          indirect: this.negotiated(VIRTIO_F_INDIRECT_DESC),
          ...this.queueLimits(index),
        },
      );
    } catch (e) {
      this.markBroken(`queue ${index}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  #raise(bits: number): void {
    const before = this.#isr;
    this.#isr |= bits;
    if (before === 0) this.#line?.set(true);
  }

  #ack(bits: number): void {
    const before = this.#isr;
    this.#isr &= ~bits;
    if (this.#isr === before) return;
    this.#line?.set(false);
    // an interrupt that arrived while the line was already high gets an edge of its own, so an
    // edge-triggered PIC/IOAPIC pin does not lose it
    if (this.#isr !== 0) this.#line?.set(true);
  }
}

function word(features: bigint, sel: number): number {
  if (sel > 1) return 0;
  return Number((features >> BigInt(32 * sel)) & 0xffffffffn);
}

function setAddress(q: QueueState, offset: number, v: number): void {
  const key =
    offset < VirtioMmioReg.QueueDriverLow
      ? "desc"
      : offset < VirtioMmioReg.QueueDeviceLow
        ? "driver"
        : "device";
  const high = (offset & 4) !== 0;
  const cur = q[key];
  q[key] = high ? (cur % TWO32) + v * TWO32 : Math.floor(cur / TWO32) * TWO32 + v;
}
