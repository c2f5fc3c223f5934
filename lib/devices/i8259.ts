// The PC's i8259 pair: master at 0x20/0x21, slave at 0xA0/0xA1 cascaded on the master's IRQ2,
// plus the PIIX edge/level control registers at 0x4d0/0x4d1. It is the soft backend's interrupt
// controller: it has the shape of lib/vmm's InterruptController (setIrq/hasInterrupt/acknowledge)
// without importing it. KVM uses its in-kernel PIC instead.

import type { Device, DeviceRange } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { PicChip, type PicChipState } from "./i8259-chip.js";
import { DeviceOptionReader } from "./options.js";

/** Options of {@link I8259Pair}. */
export interface I8259Options {
  /** called whenever the INTR output to the CPU changes level */
  onIntrChange?: (asserted: boolean) => void;
  /** default true: map ports 0x4d0/0x4d1 */
  elcr?: boolean;
}

/** {@link I8259Pair}'s saved state: each chip's. */
export interface I8259State {
  /** The master chip's state. */
  master: PicChipState;
  /** The slave chip's state. */
  slave: PicChipState;
}

const RANGE_SLAVE = 1;
const RANGE_ELCR = 2;

/**
 * The PC's two cascaded i8259 PICs: master at 0x20/0x21, slave at 0xA0/0xA1 on the master's IRQ 2, and the
 * edge/level control registers at 0x4D0/0x4D1. The soft backend's legacy interrupt controller; KVM uses its
 * in-kernel PIC instead.
 */
export class I8259Pair implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "i8259";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  // PIIX: IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge
  /** The master chip (IRQs 0-7). */
  readonly master = new PicChip(true, 0xf8);
  /** The slave chip (IRQs 8-15), cascaded on the master's IRQ 2. */
  readonly slave = new PicChip(false, 0xde);
  #onIntr: ((asserted: boolean) => void) | undefined;
  #intr = false;
  /** count of acknowledges that found nothing to deliver (spurious IRQ 7/15) */
  spuriousCount = 0;

  constructor(opts?: I8259Options) {
    const o = new DeviceOptionReader(this.name, opts);
    this.#onIntr = o.callback("onIntrChange");
    const ranges: DeviceRange[] = [
      { space: "io", base: 0x20, length: 2 },
      { space: "io", base: 0xa0, length: 2 },
    ];
    if (o.boolean("elcr", true)) ranges.push({ space: "io", base: 0x4d0, length: 2 });
    this.ranges = ranges;
  }

  // ---- InterruptController shape ----

  /**
   * Drives ISA line 0-15. Line 2 is the cascade input on the master; as on the AT bus, a device
   * wired to IRQ2 arrives at IRQ9.
   */
  setIrq(line: number, level: boolean): void {
    if (!Number.isInteger(line) || line < 0 || line > 15) {
      throw new DeviceConfigError(this.name, "setIrq", `line ${String(line)} is not an ISA IRQ 0-15`);
    }
    const l = line === 2 ? 9 : line;
    if (l < 8) this.master.setIrq(l, level);
    else this.slave.setIrq(l - 8, level);
    this.#update();
  }

  /** INTR is asserted towards the CPU */
  hasInterrupt(): boolean {
    return this.#intr;
  }

  /**
   * The INTA cycle: returns the vector and moves the request to in-service. With nothing left to
   * deliver (the request went away since INTR rose) the chip answers with IRQ 7 of the master, or
   * IRQ 15 for a vanished slave request: the spurious interrupts guests must tolerate.
   */
  acknowledge(): number {
    const m = this.master;
    const s = this.slave;
    let vector: number;
    const irq = m.pendingIrq();
    if (irq >= 0) {
      if (irq === 2) {
        const irq2 = s.pendingIrq();
        if (irq2 >= 0) {
          s.intack(irq2);
          vector = s.irqBase + irq2;
        } else {
          this.spuriousCount++;
          vector = s.irqBase + 7;
        }
      } else {
        vector = m.irqBase + irq;
      }
      m.intack(irq);
    } else {
      this.spuriousCount++;
      vector = m.irqBase + 7;
    }
    this.#update();
    return vector;
  }

  // ---- inspection ----

  /** 16-bit views, slave in the high byte */
  get irr(): number {
    return this.master.irr | (this.slave.irr << 8);
  }
  /** In-service register, 16 bits (slave in the high byte). */
  get isr(): number {
    return this.master.isr | (this.slave.isr << 8);
  }
  /** Interrupt mask register, 16 bits (slave in the high byte); a set bit masks that IRQ. */
  get imr(): number {
    return this.master.imr | (this.slave.imr << 8);
  }
  /** Edge/level control, 16 bits (slave in the high byte); a set bit makes that IRQ level-triggered. */
  get elcr(): number {
    return this.master.elcr | (this.slave.elcr << 8);
  }

  // ---- port I/O ----

  /** {@inheritDoc Device.read} */
  read(offset: number, _size: number, rangeIndex: number): number {
    if (rangeIndex === RANGE_ELCR) return offset === 0 ? this.master.elcr : this.slave.elcr;
    const chip = rangeIndex === RANGE_SLAVE ? this.slave : this.master;
    if (chip.poll) return this.#pollRead(chip);
    return offset === 0 ? chip.readCommand() : chip.imr;
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, _size: number, value: number, rangeIndex: number): void {
    const v = value & 0xff;
    if (rangeIndex === RANGE_ELCR) {
      const chip = offset === 0 ? this.master : this.slave;
      chip.elcr = v & chip.elcrMask;
    } else {
      const chip = rangeIndex === RANGE_SLAVE ? this.slave : this.master;
      if (offset === 0) chip.writeCommand(v);
      else chip.writeData(v);
    }
    this.#update();
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.master.hardReset();
    this.slave.hardReset();
    this.spuriousCount = 0;
    this.#update();
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): I8259State {
    return { master: this.master.snapshot(), slave: this.slave.snapshot() };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: I8259State): void {
    this.master.restore(s.master);
    this.slave.restore(s.slave);
    this.#update();
  }

  /** OCW3 poll mode: the read is the acknowledge; bit 7 says whether there was an interrupt */
  #pollRead(chip: PicChip): number {
    chip.poll = false;
    const irq = chip.pendingIrq();
    let ret = 0;
    if (irq >= 0) {
      chip.intack(irq);
      ret = 0x80 | irq;
    }
    this.#update();
    return ret;
  }

  #update(): void {
    // the slave's INT output drives the master's IR2
    const slaveOut = this.slave.pendingIrq() >= 0;
    this.master.setIrq(2, slaveOut);
    const intr = this.master.pendingIrq() >= 0;
    if (intr !== this.#intr) {
      this.#intr = intr;
      this.#onIntr?.(intr);
    }
  }
}
