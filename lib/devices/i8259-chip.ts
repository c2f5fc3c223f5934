// One 8259A: the register file and priority logic. The pair (i8259.ts) wires two of them in
// cascade. Semantics follow the Intel 8259A datasheet as QEMU's hw/intc/i8259.c models it.

import { describeValue } from "../types/describe-value.js";
import { DeviceConfigError } from "./errors.js";

/** {@link PicChip}'s saved state: its registers and mode bits. */
export interface PicChipState {
  /** The input levels at the last update, for edge detection. */
  lastIrr: number;
  /** Interrupt request register: inputs asking for service. */
  irr: number;
  /** Interrupt mask register (OCW1): a set bit masks that input. */
  imr: number;
  /** In-service register: interrupts acknowledged and not yet ended (EOI). */
  isr: number;
  /** Priority rotation: the input with the highest priority is this one. */
  priorityAdd: number;
  /** Vector of input 0 (ICW2, low 3 bits clear). */
  irqBase: number;
  /** What a read of the command port returns: 0 IRR, 1 ISR (OCW3 RR/RIS). */
  readRegSelect: number;
  /** The next command-port read is a poll (OCW3 P). */
  poll: boolean;
  /** Special mask mode (OCW3 SMM). */
  specialMask: boolean;
  /** Initialization step: 0 ready, 1-3 waiting for ICW2-ICW4. */
  initState: number;
  /** Automatic end of interrupt (ICW4 AEOI). */
  autoEoi: boolean;
  /** Rotate priorities on automatic EOI (OCW2). */
  rotateOnAutoEoi: boolean;
  /** Special fully nested mode (ICW4 SFNM). */
  specialFullyNested: boolean;
  /** ICW4 is expected (ICW1 IC4). */
  init4: boolean;
  /** Single mode, no cascade (ICW1 SNGL). */
  singleMode: boolean;
  /** ICW1.LTIM: every input level-sensitive. */
  levelTriggeredAll: boolean;
  /** Edge/level control register (PIIX ELCR): a set bit makes that input level-sensitive. */
  elcr: number;
}

/**
 * One 8259A PIC (Intel datasheet semantics, as QEMU models it): registers and priority logic.
 * {@link I8259Pair} wires two in cascade; its `master` and `slave` are these. Fields are the chip's
 * registers, public to inspect.
 */
export class PicChip {
  /** The input levels at the last update, for edge detection. */
  lastIrr = 0;
  /** Interrupt request register: inputs asking for service. */
  irr = 0;
  /** Interrupt mask register (OCW1): a set bit masks that input. */
  imr = 0;
  /** In-service register: interrupts acknowledged and not yet ended (EOI). */
  isr = 0;
  /** Priority rotation: the input with the highest priority is this one. */
  priorityAdd = 0;
  /** Vector of input 0 (ICW2, low 3 bits clear). */
  irqBase = 0;
  /** What a read of the command port returns: 0 IRR, 1 ISR (OCW3 RR/RIS). */
  readRegSelect = 0;
  /** The next command-port read is a poll (OCW3 P). */
  poll = false;
  /** Special mask mode (OCW3 SMM). */
  specialMask = false;
  /** Initialization step: 0 ready, 1-3 waiting for ICW2-ICW4. */
  initState = 0;
  /** Automatic end of interrupt (ICW4 AEOI). */
  autoEoi = false;
  /** Rotate priorities on automatic EOI (OCW2). */
  rotateOnAutoEoi = false;
  /** Special fully nested mode (ICW4 SFNM). */
  specialFullyNested = false;
  /** ICW4 is expected (ICW1 IC4). */
  init4 = false;
  /** Single mode, no cascade (ICW1 SNGL). */
  singleMode = false;
  /** ICW1.LTIM: every input level-sensitive */
  levelTriggeredAll = false;
  /** edge/level control register (PIIX ELCR): bit set = that input is level-sensitive */
  elcr = 0;

  constructor(
    /** Whether this is the master chip (IRQs 0-7) rather than the slave. */
    readonly isMaster: boolean,
    /** the ELCR bits this chip's inputs may set (PIIX: 0xf8 master, 0xde slave) */
    readonly elcrMask: number,
  ) {
    if (typeof isMaster !== "boolean") {
      throw new DeviceConfigError(
        "i8259",
        "isMaster",
        `must be true or false, got ${describeValue(isMaster)}`,
      );
    }
    if (typeof elcrMask !== "number" || !Number.isInteger(elcrMask) || elcrMask < 0 || elcrMask > 0xff) {
      throw new DeviceConfigError(
        "i8259",
        "elcrMask",
        `must be a byte mask 0-0xff, got ${describeValue(elcrMask)}`,
      );
    }
  }

  #isLevel(irq: number): boolean {
    return this.levelTriggeredAll || (this.elcr & (1 << irq)) !== 0;
  }

  /**
   * Drives input `irq` (0-7) to `level`: a rising edge requests service (or the level does, for
   * level-sensitive inputs).
   */
  setIrq(irq: number, level: boolean): void {
    const mask = 1 << irq;
    if (this.#isLevel(irq)) {
      if (level) {
        this.irr |= mask;
        this.lastIrr |= mask;
      } else {
        this.irr &= ~mask;
        this.lastIrr &= ~mask;
      }
    } else if (level) {
      if ((this.lastIrr & mask) === 0) this.irr |= mask;
      this.lastIrr |= mask;
    } else {
      this.lastIrr &= ~mask;
    }
  }

  /** priority (0 = highest) of the highest bit of mask under the current rotation; 8 when none */
  #priority(mask: number): number {
    if ((mask & 0xff) === 0) return 8;
    let p = 0;
    while ((mask & (1 << ((p + this.priorityAdd) & 7))) === 0) p++;
    return p;
  }

  /** the input that would be delivered now, or -1 */
  pendingIrq(): number {
    const p = this.#priority(this.irr & ~this.imr);
    if (p === 8) return -1;
    let inService = this.isr;
    // special mask mode: masked in-service levels do not block lower priorities
    if (this.specialMask) inService &= ~this.imr;
    // special fully nested: the slave may interrupt again while its cascade line is in service
    if (this.specialFullyNested && this.isMaster) inService &= ~(1 << 2);
    const cur = this.#priority(inService);
    return p < cur ? (p + this.priorityAdd) & 7 : -1;
  }

  /** INTA for irq: moves it to in-service (or EOIs at once in auto-EOI mode) */
  intack(irq: number): void {
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= 1 << irq;
    }
    // a level-sensitive input stays requested while the line is high
    if (!this.#isLevel(irq)) this.irr &= ~(1 << irq);
  }

  /** reset by ICW1: keeps level-sensitive requests and the ELCR */
  initReset(): void {
    this.lastIrr = 0;
    this.irr &= this.elcr;
    this.imr = 0;
    this.isr = 0;
    this.priorityAdd = 0;
    this.irqBase = 0;
    this.readRegSelect = 0;
    this.poll = false;
    this.specialMask = false;
    this.initState = 0;
    this.autoEoi = false;
    this.rotateOnAutoEoi = false;
    this.specialFullyNested = false;
    this.init4 = false;
    this.singleMode = false;
    this.levelTriggeredAll = false;
  }

  /** Power-on reset: every register and mode cleared. */
  hardReset(): void {
    this.initReset();
    this.irr = 0;
    this.elcr = 0;
  }

  /** A write to the command port (0x20/0xA0): ICW1, OCW2 or OCW3. */
  writeCommand(val: number): void {
    if (val & 0x10) {
      // ICW1
      this.initReset();
      this.initState = 1;
      this.init4 = (val & 1) !== 0;
      this.singleMode = (val & 2) !== 0;
      this.levelTriggeredAll = (val & 8) !== 0;
    } else if (val & 0x08) {
      // OCW3
      if (val & 0x04) this.poll = true;
      if (val & 0x02) this.readRegSelect = val & 1;
      if (val & 0x40) this.specialMask = ((val >> 5) & 1) !== 0;
    } else {
      // OCW2
      const cmd = val >> 5;
      switch (cmd) {
        case 0: // rotate in auto-EOI mode: clear
        case 4: // rotate in auto-EOI mode: set
          this.rotateOnAutoEoi = cmd === 4;
          break;
        case 1: // non-specific EOI
        case 5: {
          // rotate on non-specific EOI
          const p = this.#priority(this.isr);
          if (p !== 8) {
            const irq = (p + this.priorityAdd) & 7;
            this.isr &= ~(1 << irq);
            if (cmd === 5) this.priorityAdd = (irq + 1) & 7;
          }
          break;
        }
        case 3: // specific EOI
          this.isr &= ~(1 << (val & 7));
          break;
        case 6: // set priority: val&7 becomes the lowest
          this.priorityAdd = (val + 1) & 7;
          break;
        case 7: {
          // rotate on specific EOI
          const irq = val & 7;
          this.isr &= ~(1 << irq);
          this.priorityAdd = (irq + 1) & 7;
          break;
        }
        default: // 2: no operation
          break;
      }
    }
  }

  /** A write to the data port (0x21/0xA1): the mask (OCW1) or, during initialization, ICW2-ICW4. */
  writeData(val: number): void {
    switch (this.initState) {
      case 0: // OCW1
        this.imr = val;
        break;
      case 1: // ICW2
        this.irqBase = val & 0xf8;
        this.initState = this.singleMode ? (this.init4 ? 3 : 0) : 2;
        break;
      case 2: // ICW3 (cascade wiring: fixed on a PC, accepted and ignored)
        this.initState = this.init4 ? 3 : 0;
        break;
      case 3: // ICW4
        this.specialFullyNested = ((val >> 4) & 1) !== 0;
        this.autoEoi = ((val >> 1) & 1) !== 0;
        this.initState = 0;
        break;
    }
  }

  /** A read of the command port: IRR or ISR, as OCW3 selected. */
  readCommand(): number {
    return this.readRegSelect ? this.isr : this.irr;
  }

  /** The chip's state as plain data. */
  snapshot(): PicChipState {
    return {
      lastIrr: this.lastIrr,
      irr: this.irr,
      imr: this.imr,
      isr: this.isr,
      priorityAdd: this.priorityAdd,
      irqBase: this.irqBase,
      readRegSelect: this.readRegSelect,
      poll: this.poll,
      specialMask: this.specialMask,
      initState: this.initState,
      autoEoi: this.autoEoi,
      rotateOnAutoEoi: this.rotateOnAutoEoi,
      specialFullyNested: this.specialFullyNested,
      init4: this.init4,
      singleMode: this.singleMode,
      levelTriggeredAll: this.levelTriggeredAll,
      elcr: this.elcr,
    };
  }

  /** Puts back a state snapshot() returned (values are masked to the registers' widths). */
  restore(s: PicChipState): void {
    this.lastIrr = s.lastIrr & 0xff;
    this.irr = s.irr & 0xff;
    this.imr = s.imr & 0xff;
    this.isr = s.isr & 0xff;
    this.priorityAdd = s.priorityAdd & 7;
    this.irqBase = s.irqBase & 0xf8;
    this.readRegSelect = s.readRegSelect & 1;
    this.poll = s.poll;
    this.specialMask = s.specialMask;
    this.initState = s.initState & 3;
    this.autoEoi = s.autoEoi;
    this.rotateOnAutoEoi = s.rotateOnAutoEoi;
    this.specialFullyNested = s.specialFullyNested;
    this.init4 = s.init4;
    this.singleMode = s.singleMode;
    this.levelTriggeredAll = s.levelTriggeredAll;
    this.elcr = s.elcr & this.elcrMask;
  }
}
