// The I/O APIC (82093AA, version 0x11) at 0xFEC00000: IOREGSEL at offset 0x00 and IOWIN at 0x10
// select and access the ID, version and arbitration registers and 24 redirection entries. Each
// entry turns its pin into a message to the local APIC (vector, delivery mode, destination,
// trigger mode); level-triggered entries hold Remote IRR until the local APIC broadcasts the EOI
// of their vector. Register semantics follow KVM's in-kernel IOAPIC (arch/x86/kvm/ioapic.c), the
// reference the KVM backend gives.

import { describeValue } from "../types/describe-value.js";
import type { Device, DeviceRange } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { DeviceOptionReader } from "./options.js";

export const IOAPIC_BASE = 0xfec00000;
export const IOAPIC_PINS = 24;
/** version 0x11, maximum redirection entry 23 */
export const IOAPIC_VERSION = ((IOAPIC_PINS - 1) << 16) | 0x11;

const ENTRY_MASKED = 1 << 16;
const ENTRY_LEVEL = 1 << 15;
const ENTRY_REMOTE_IRR = 1 << 14;
const ENTRY_DELIVERY_STATUS = 1 << 12;
const MODE_EXTINT = 7;

/** what the I/O APIC sends to the local APICs for one pin */
export interface ApicMessage {
  /** The interrupt vector. */
  vector: number;
  /** 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT */
  deliveryMode: number;
  /** APIC ID (physical) or message destination address (logical) */
  destination: number;
  /** Logical (true) or physical destination mode. */
  logical: boolean;
  /** Level-triggered (true) or edge. */
  levelTriggered: boolean;
}

/** delivers a message; true when a local APIC accepted it */
export type ApicMessageSink = (msg: ApicMessage) => boolean;

/** Options of {@link IoApic}. */
export interface IoApicOptions {
  /** default 0xFEC00000 */
  base?: number;
  /** I/O APIC ID (bits 27:24 of register 0); default 0, as KVM's */
  id?: number;
  /** Where interrupt messages go (the local APICs); PcInterrupts sets this. */
  deliver?: ApicMessageSink;
}

/** {@link IoApic}'s saved state (snapshot()/restore()). */
export interface IoApicState {
  /** I/O APIC ID (bits 27:24 of register 0). */
  id: number;
  /** IOREGSEL: the register IOWIN accesses. */
  regsel: number;
  /** Each redirection entry's low 32 bits. */
  low: number[];
  /** Each redirection entry's high 32 bits. */
  high: number[];
  /** Input pin levels, one bit per pin. */
  pins: number;
}

/**
 * The I/O APIC (82093AA, version 0x11) at 0xFEC00000: 24 redirection entries that turn interrupt pins into
 * messages to the local APICs. Semantics follow KVM's in-kernel IOAPIC.
 */
export class IoApic implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "ioapic";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  readonly #low = new Uint32Array(IOAPIC_PINS);
  readonly #high = new Uint32Array(IOAPIC_PINS);
  readonly #initialId: number;
  /** input levels, one bit a pin */
  #pins = 0;
  /** I/O APIC ID (bits 27:24 of register 0). */
  id = 0;
  /** IOREGSEL: the register IOWIN accesses. */
  regsel = 0;
  /** Where interrupt messages go (the local APICs); PcInterrupts sets it. */
  deliver: ApicMessageSink | undefined;
  /** messages accepted by a local APIC (inspection) */
  delivered = 0;

  constructor(opts?: IoApicOptions) {
    const o: DeviceOptionReader<IoApicOptions> = new DeviceOptionReader(this.name, opts);
    const base = o.page("base", IOAPIC_BASE);
    const id = o.get("id", 0);
    // the ID register holds 4 bits (27:24)
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 15) {
      o.fail("id", `${describeValue(id)} is not an I/O APIC ID 0-15`);
    }
    this.#initialId = id;
    this.deliver = o.callback<ApicMessageSink>("deliver");
    this.ranges = [{ space: "mmio", base, length: 0x1000 }];
    this.reset();
  }

  /** the 64-bit redirection entry of a pin as [low, high] dwords */
  entry(pin: number): [number, number] {
    this.#checkPin(pin, "entry");
    return [this.#low[pin]!, this.#high[pin]!];
  }

  /** the input level of a pin */
  pinLevel(pin: number): boolean {
    return ((this.#pins >>> pin) & 1) !== 0;
  }

  /**
   * Drives input `pin` (asserted = true; the board's polarity inverters are outside the chip, so
   * the polarity bit is kept for the guest but does not flip the level, as in KVM and QEMU). An
   * edge-triggered entry sends on the rising edge; a level-triggered one while asserted and its
   * Remote IRR is clear. Masked entries send nothing: a masked edge is lost.
   */
  setPin(pin: number, level: boolean): void {
    this.#checkPin(pin, "setPin");
    const bit = 1 << pin;
    const was = (this.#pins & bit) !== 0;
    this.#pins = level ? this.#pins | bit : this.#pins & ~bit;
    if (!level) return;
    const low = this.#low[pin]!;
    if (low & ENTRY_LEVEL) this.#service(pin);
    else if (!was) this.#service(pin);
  }

  /**
   * The local APIC's EOI broadcast: level entries with this vector drop Remote IRR, and send again
   * while their pin is still asserted.
   */
  eoi(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const low = this.#low[pin]!;
      if ((low & 0xff) !== (vector & 0xff) || !(low & ENTRY_REMOTE_IRR)) continue;
      this.#low[pin] = low & ~ENTRY_REMOTE_IRR;
      if (low & ENTRY_LEVEL && this.pinLevel(pin)) this.#service(pin);
    }
  }

  /** pin 0 is programmed ExtINT and unmasked: the 8259's INTR goes to the CPU through it (virtual wire) */
  routesExtInt(): boolean {
    const low = this.#low[0]!;
    return (low & ENTRY_MASKED) === 0 && ((low >> 8) & 7) === MODE_EXTINT;
  }

  #service(pin: number): void {
    const low = this.#low[pin]!;
    if (low & ENTRY_MASKED) return;
    const level = (low & ENTRY_LEVEL) !== 0;
    if (level && low & ENTRY_REMOTE_IRR) return;
    const mode = (low >> 8) & 7;
    // ExtINT entries carry no vector: the CPU takes the 8259's (routesExtInt)
    if (mode === MODE_EXTINT) return;
    const accepted =
      this.deliver?.({
        vector: low & 0xff,
        deliveryMode: mode,
        destination: this.#high[pin]! >>> 24,
        logical: (low & (1 << 11)) !== 0,
        levelTriggered: level,
      }) ?? false;
    if (!accepted) return;
    this.delivered++;
    if (level) this.#low[pin] = this.#low[pin]! | ENTRY_REMOTE_IRR;
  }

  // ---- MMIO ----

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number, _rangeIndex: number): number {
    let v: number;
    switch (offset & 0xff) {
      case 0x00:
        v = this.regsel;
        break;
      case 0x10:
        v = this.#readIndirect();
        break;
      default:
        v = 0;
    }
    return size >= 4 ? v >>> 0 : v & (size === 1 ? 0xff : 0xffff);
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, _size: number, value: number, _rangeIndex: number): void {
    switch (offset & 0xff) {
      case 0x00:
        this.regsel = value & 0xff;
        break;
      case 0x10:
        this.#writeIndirect(value >>> 0);
        break;
    }
  }

  #readIndirect(): number {
    const r = this.regsel;
    if (r === 0 || r === 2) return (this.id & 0xf) << 24;
    if (r === 1) return IOAPIC_VERSION;
    const pin = (r - 0x10) >> 1;
    // unimplemented registers and entries past the last read as all-ones (as KVM's)
    if (r < 0x10 || pin >= IOAPIC_PINS) return 0xffffffff;
    return r & 1 ? this.#high[pin]! : this.#low[pin]!;
  }

  #writeIndirect(v: number): void {
    const r = this.regsel;
    if (r === 0) {
      this.id = (v >>> 24) & 0xf;
      return;
    }
    const pin = (r - 0x10) >> 1;
    if (r < 0x10 || pin >= IOAPIC_PINS) return;
    if (r & 1) {
      this.#high[pin] = v;
      return;
    }
    const old = this.#low[pin]!;
    // delivery status and Remote IRR are the chip's; an edge entry has no Remote IRR
    let low = (v & ~(ENTRY_DELIVERY_STATUS | ENTRY_REMOTE_IRR)) | (old & ENTRY_REMOTE_IRR);
    if (!(low & ENTRY_LEVEL)) low &= ~ENTRY_REMOTE_IRR;
    this.#low[pin] = low >>> 0;
    // unmasking a level entry whose pin is asserted sends it now
    if (low & ENTRY_LEVEL && this.pinLevel(pin)) this.#service(pin);
  }

  #checkPin(pin: number, what: string): void {
    if (!Number.isInteger(pin) || pin < 0 || pin >= IOAPIC_PINS) {
      const shown = typeof pin === "number" ? String(pin) : describeValue(pin);
      throw new DeviceConfigError(this.name, what, `pin ${shown} is not 0-${IOAPIC_PINS - 1}`);
    }
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.id = this.#initialId;
    this.regsel = 0;
    this.#low.fill(ENTRY_MASKED);
    this.#high.fill(0);
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): IoApicState {
    return { id: this.id, regsel: this.regsel, low: [...this.#low], high: [...this.#high], pins: this.#pins };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: IoApicState): void {
    if (
      !Array.isArray(s.low) ||
      s.low.length !== IOAPIC_PINS ||
      !Array.isArray(s.high) ||
      s.high.length !== IOAPIC_PINS
    ) {
      throw new DeviceConfigError(this.name, "restore", `state must hold ${IOAPIC_PINS} redirection entries`);
    }
    this.id = s.id & 0xf;
    this.regsel = s.regsel & 0xff;
    this.#low.set(s.low);
    this.#high.set(s.high);
    this.#pins = s.pins >>> 0;
  }
}
