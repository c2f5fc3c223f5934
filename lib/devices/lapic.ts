// The local APIC (Intel SDM vol. 3 ch. 10): in xAPIC mode its 4 KiB register page at 0xFEE00000,
// in x2APIC mode (IA32_APIC_BASE.EXTD, 10.12) the same registers as MSRs 0x800-0x8FF
// (lapic-x2apic.ts says which exist), with a 32-bit APIC ID, a derived logical ID, a 64-bit ICR
// and SELF IPI, while the page answers as a disabled APIC's. The IRR/ISR/TMR priority logic, EOI
// (broadcast to the I/O APIC for level-triggered vectors), IPIs through the ICR, the LVT entries and
// the timer: one-shot, periodic, and TSC-deadline (IA32_TSC_DEADLINE against the owning CPU's TSC,
// 10.5.4.1). Reset values are KVM's (kvm_lapic_reset): the SDM's (LVTs masked, SVR 0xFF,
// software-disabled), except that the BSP's LINT0 is ExtINT unmasked (KVM_X86_QUIRK_LINT0_REENABLED,
// the BSP only, at RESET and INIT alike), so the 8259's interrupts reach the CPU through the virtual
// wire as they do on KVM. On its own the APIC delivers only the IPIs it sends itself; on an APIC
// bus (apic-bus.ts, which PcInterrupts wires) every IPI goes to the bus.

import { describeValue } from "../types/describe-value.js";
import type { Device, DeviceContext, DeviceRange } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import type { ApicMessage } from "./ioapic.js";
import {
  APIC_BUS_HZ,
  ApicTimer,
  type ApicTimerState,
  apicTimerDivisor,
  TscDeadline,
  type TscDeadlineState,
  type TscSource,
  tscDeadlineStateProblem,
} from "./lapic-timer.js";
import {
  TSC_DEADLINE_MSR,
  X2APIC_ICR_LOW_BITS,
  X2APIC_ICR_MSR,
  X2APIC_SELF_IPI,
  x2apicLogicalId,
  x2apicReadable,
  x2apicRegister,
  x2apicWritable,
} from "./lapic-x2apic.js";
import { DeviceOptionReader } from "./options.js";

export const LAPIC_BASE = 0xfee00000;

/** register offsets in the APIC page */
export const LapicReg = {
  ID: 0x20,
  VERSION: 0x30,
  TPR: 0x80,
  APR: 0x90,
  PPR: 0xa0,
  EOI: 0xb0,
  RRD: 0xc0,
  LDR: 0xd0,
  DFR: 0xe0,
  SVR: 0xf0,
  ISR: 0x100,
  TMR: 0x180,
  IRR: 0x200,
  ESR: 0x280,
  ICR_LOW: 0x300,
  ICR_HIGH: 0x310,
  LVT_TIMER: 0x320,
  LVT_THERMAL: 0x330,
  LVT_PERF: 0x340,
  LVT_LINT0: 0x350,
  LVT_LINT1: 0x360,
  LVT_ERROR: 0x370,
  TIMER_INITIAL: 0x380,
  TIMER_CURRENT: 0x390,
  TIMER_DIVIDE: 0x3e0,
} as const;

/** version 0x14 (integrated APIC), six LVT entries (max LVT index 5), as KVM reports */
export const LAPIC_VERSION = 0x00050014;

const LVT_MASKED = 1 << 16;
/** LVT timer bits 18:17: 00 one-shot, 01 periodic, 10 TSC-deadline (11 reserved: counts as one-shot) */
const TIMER_MODE_SHIFT = 17;
const TIMER_PERIODIC = 1;
const TIMER_TSC_DEADLINE = 2;
const SVR_ENABLE = 1 << 8;
const MODE_FIXED = 0;
const MODE_LOWEST = 1;
const MODE_EXTINT = 7;
// ESR bits
const ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6;

// the bits software may write in each LVT entry, in register order (0x320 timer ... 0x370 error)
const LVT_WRITABLE = [
  0x700ff, // timer: vector, mask, mode (one-shot, periodic, TSC-deadline)
  0x107ff, // thermal: vector, delivery mode, mask
  0x107ff, // performance counters
  0x1a7ff, // LINT0: vector, delivery mode, polarity, trigger mode, mask
  0x1a7ff, // LINT1
  0x100ff, // error: vector, mask
] as const;
const TIMER = 0;
const LINT0 = 3;
const ERROR = 5;

/** the ICR's destination shorthand: 0 the destination field, 1 self, 2 all including self, 3 all excluding self */
export type IpiShorthand = 0 | 1 | 2 | 3;

/** an IPI as the ICR describes it, handed to the APIC bus */
export interface Ipi extends ApicMessage {
  /** ICR destination shorthand: 0 none, 1 self, 2 all including self, 3 all excluding self. */
  shorthand: IpiShorthand;
  /** ICR bit 14, level: assert (true) or de-assert; INIT with level trigger and de-assert is a no-op */
  assert: boolean;
  /** the sending APIC */
  source: LocalApic;
}

/** Options of {@link LocalApic}. */
export interface LocalApicOptions {
  /** APIC ID (the vCPU index); default 0 */
  id?: number;
  /** default 0xFEE00000 */
  base?: number;
  /** timer input clock before the divider; default 1 GHz as KVM's */
  busHz?: number;
  /**
   * EOI of a level-triggered vector (its TMR bit set): the I/O APIC clears Remote IRR of the
   * entries with that vector
   */
  onEoi?: (vector: number) => void;
  /** IA32_APIC_BASE bit 11 (global enable) as the vCPU has it; default: always enabled */
  hardwareEnabled?: () => boolean;
}

/** {@link LocalApic}'s saved state (snapshot()/restore()). */
export interface LocalApicState {
  /** APIC ID register value (xAPIC: the ID in bits 31:24). */
  id: number;
  /** Task-priority register. */
  tpr: number;
  /** Logical destination register. */
  ldr: number;
  /** Destination format register (flat or cluster model). */
  dfr: number;
  /** Spurious-interrupt vector register (bit 8: APIC software enable). */
  svr: number;
  /** In-service register, eight 32-bit words. */
  isr: number[];
  /** Trigger mode register, eight 32-bit words. */
  tmr: number[];
  /** Interrupt request register, eight 32-bit words. */
  irr: number[];
  /** Error status register as the guest last read it. */
  esr: number;
  /** Errors collected since, shown at the next ESR write. */
  esrPending: number;
  /** Interrupt command register, low half (vector, delivery mode, shorthand...). */
  icrLow: number;
  /** Interrupt command register, high half (destination). */
  icrHigh: number;
  /** The local vector table entries: timer, thermal, performance counters, LINT0, LINT1, error. */
  lvt: number[];
  /** Timer divide configuration register. */
  tdcr: number;
  /** The APIC timer's count state. */
  timer: ApicTimerState;
  /** IA32_APIC_BASE.EXTD (absent in snapshots from before x2APIC: xAPIC mode) */
  x2apic?: boolean;
  /** the armed TSC deadline (absent: disarmed) */
  tscDeadline?: TscDeadlineState;
}

/** index of the highest set bit of a 256-bit register held as 8 words, or -1 */
function highest(bits: Uint32Array): number {
  for (let w = 7; w >= 0; w--) {
    const v = bits[w]!;
    if (v !== 0) return w * 32 + 31 - Math.clz32(v);
  }
  return -1;
}

function setBit(bits: Uint32Array, vector: number, on: boolean): void {
  const w = vector >> 5;
  const m = 1 << (vector & 31);
  bits[w] = on ? bits[w]! | m : bits[w]! & ~m;
}

function testBit(bits: Uint32Array, vector: number): boolean {
  return (bits[vector >> 5]! & (1 << (vector & 31))) !== 0;
}

/**
 * A local APIC (Intel SDM vol. 3 ch. 10) for the soft backend: the xAPIC register page at 0xFEE00000 or
 * x2APIC MSRs, IRR/ISR/TMR priority logic, EOI, IPIs, LVT entries and the timer (one-shot, periodic,
 * TSC-deadline). Reset values are KVM's.
 */
export class LocalApic implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "lapic";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** the 256-bit IRR, ISR and TMR as 8 words each, to inspect (they change through the APIC's methods) */
  readonly irr = new Uint32Array(8);
  /** In-service register: 256 bits as eight 32-bit words (vector v is bit v % 32 of word v / 32). */
  readonly isr = new Uint32Array(8);
  /** Trigger mode register, eight words as the ISR; a set bit marks a level-triggered vector. */
  readonly tmr = new Uint32Array(8);
  /**
   * The local vector table, raw: timer, thermal, performance counters, LINT0, LINT1, error (registers
   * 0x320-0x370).
   */
  readonly lvt = new Uint32Array(6);
  readonly #timer: ApicTimer;
  readonly #deadline = new TscDeadline();
  readonly #initialId: number;
  /**
   * The time-stamp counter of the CPU that owns this APIC, which TSC-deadline mode compares
   * against; the CPU sets it. Unset, IA32_TSC_DEADLINE cannot be armed.
   */
  tsc: TscSource | undefined;
  /**
   * IA32_APIC_BASE.EXTD as the CPU has it (setX2apic): registers are MSRs, the page is dark, the
   * APIC ID is the 32-bit x2APIC ID and the logical ID is derived from it.
   */
  #x2apic = false;
  /** Called at the EOI of a level-triggered vector (the I/O APIC clears Remote IRR); PcInterrupts sets it. */
  onEoi: ((vector: number) => void) | undefined;
  /**
   * Applies what the owning CPU did but this APIC has not seen yet (EOIs a vCPU thread posted);
   * the APIC bus calls it before an INIT resets the APIC, so that they come first as they did on
   * the CPU. The soft backend's vCPU threads set it.
   */
  settle: (() => void) | undefined;
  /**
   * The APIC bus: every IPI written to the ICR (after the sender's own checks) goes to it. Unset,
   * the APIC is alone and delivers only fixed/lowest-priority IPIs that address itself.
   */
  sendIpi: ((ipi: Ipi) => void) | undefined;
  /**
   * IA32_APIC_BASE bit 11. Cleared, the APIC is off the bus (its page reads all-ones), holds its
   * vectors back, and LINT0 is the CPU's plain INTR pin: the 8259 reaches the CPU directly.
   */
  hardwareEnabled: () => boolean;
  #ctx: DeviceContext | undefined;
  /** APIC ID register value (xAPIC: the ID in bits 31:24). */
  id = 0;
  /** Task-priority register. */
  tpr = 0;
  /** Logical destination register. */
  ldr = 0;
  /** Destination format register (flat or cluster model). */
  dfr = 0xffffffff;
  /** Spurious-interrupt vector register (bit 8: APIC software enable). */
  svr = 0xff;
  /** errors seen since the last ESR write; the write makes them readable */
  #esrPending = 0;
  /** Error status register as the guest last read it. */
  esr = 0;
  /** Interrupt command register, low half (vector, delivery mode, shorthand...). */
  icrLow = 0;
  /** Interrupt command register, high half (destination). */
  icrHigh = 0;
  /** Timer divide configuration register. */
  tdcr = 0;
  /** cached highest IRR / ISR vector (-1: none), kept in step with the bitmaps */
  #irrTop = -1;
  #isrTop = -1;

  constructor(opts?: LocalApicOptions) {
    const o: DeviceOptionReader<LocalApicOptions> = new DeviceOptionReader(this.name, opts);
    const id = o.get("id", 0);
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 0xff) {
      o.fail("id", `${describeValue(id)} is not an xAPIC ID 0-255`);
    }
    const base = o.page("base", LAPIC_BASE);
    const busHz = o.positive("busHz", APIC_BUS_HZ);
    this.#initialId = id;
    this.#timer = new ApicTimer(busHz);
    this.onEoi = o.callback<(vector: number) => void>("onEoi");
    this.hardwareEnabled = o.callback<() => boolean>("hardwareEnabled") ?? (() => true);
    this.ranges = [{ space: "mmio", base, length: 0x1000 }];
    this.reset();
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
  }

  #now(): number {
    return this.#ctx?.clock.nowNs() ?? 0;
  }

  /** the bootstrap processor's APIC (vCPU 0, KVM's bsp_vcpu_id): its LINT0 comes out of reset as ExtINT */
  get isBsp(): boolean {
    return this.#initialId === 0;
  }

  /** Whether the spurious-vector register's APIC-enable bit (bit 8) is set. */
  get softwareEnabled(): boolean {
    return (this.svr & SVR_ENABLE) !== 0;
  }

  /** the processor priority: the TPR, or the class of the highest in-service vector if higher */
  get ppr(): number {
    const isrClass = this.#isrTop < 0 ? 0 : this.#isrTop & 0xf0;
    return (this.tpr & 0xf0) >= isrClass ? this.tpr & 0xff : isrClass;
  }

  /** the vector the APIC would present to the CPU now (highest IRR above the PPR), or -1 */
  pendingVector(): number {
    const v = this.#irrTop;
    if (v < 0 || (v & 0xf0) <= (this.ppr & 0xf0) || !this.hardwareEnabled()) return -1;
    return v;
  }

  /**
   * The CPU takes the interrupt: its IRR bit moves to the ISR. With nothing above the PPR any more
   * the APIC answers with the spurious vector, which sets no ISR bit.
   */
  acknowledge(): number {
    const v = this.pendingVector();
    if (v < 0) return this.svr & 0xff;
    setBit(this.irr, v, false);
    setBit(this.isr, v, true);
    this.#irrTop = highest(this.irr);
    if (v > this.#isrTop) this.#isrTop = v;
    return v;
  }

  /**
   * The CPU took `vector`, which pendingVector() offered it a moment ago (a vCPU in another thread
   * takes it without asking again): its IRR bit moves to the ISR. A vector no longer requested (an
   * INIT cleared the IRR meanwhile) is left alone. True when it moved.
   */
  acknowledgeVector(vector: number): boolean {
    const v = vector & 0xff;
    if (!testBit(this.irr, v)) return false;
    setBit(this.irr, v, false);
    setBit(this.isr, v, true);
    this.#irrTop = highest(this.irr);
    if (v > this.#isrTop) this.#isrTop = v;
    return true;
  }

  /** LINT0 passes the 8259's INTR (ExtINT, unmasked, or the APIC globally disabled) */
  acceptsExtInt(): boolean {
    const lint0 = this.lvt[LINT0]!;
    if ((lint0 & LVT_MASKED) === 0 && ((lint0 >> 8) & 7) === MODE_EXTINT) return true;
    return !this.hardwareEnabled();
  }

  /** attached to a machine (its clock polls the timer): what the CPU's MSR interface needs */
  get attached(): boolean {
    return this.#ctx !== undefined;
  }

  /** x2APIC mode (IA32_APIC_BASE.EXTD) */
  get x2apic(): boolean {
    return this.#x2apic;
  }

  /** the x2APIC ID: the initial APIC ID, which software cannot change */
  get x2apicId(): number {
    return this.#initialId;
  }

  /**
   * Whether a message for `destination` (physical ID, or logical MDA) is for this APIC. `wide`: a
   * 32-bit x2APIC destination (an IPI from an APIC in x2APIC mode); otherwise 8 bits, as the I/O
   * APIC and xAPIC senders address, whose 0xFF is the broadcast in x2APIC mode too (KVM's
   * kvm_apic_mda). Logical x2APIC destinations are cluster (31:16) and a mask of 16 (15:0).
   */
  matchesDestination(destination: number, logical: boolean, wide = false): boolean {
    if (this.#x2apic) {
      const d = wide ? destination >>> 0 : destination & 0xff;
      const mda = !wide && d === 0xff ? 0xffffffff : d;
      if (mda === 0xffffffff) return true;
      if (!logical) return mda === this.#initialId;
      return this.ldr >>> 16 === mda >>> 16 && (this.ldr & mda & 0xffff) !== 0;
    }
    if (wide) {
      // an x2APIC sender addressing an APIC still in xAPIC mode (mixed modes are not architectural)
      if (destination >>> 0 === 0xffffffff) return true;
      if (destination >>> 0 >= 0xff) return false;
    }
    const mda = destination & 0xff;
    if (mda === 0xff) return true;
    if (!logical) return mda === this.id >>> 24;
    const ldr = this.ldr >>> 24;
    if (((this.dfr >>> 28) & 0xf) === 0xf) return (ldr & mda) !== 0; // flat model
    return ldr >> 4 === mda >> 4 && (ldr & mda & 0xf) !== 0; // cluster model
  }

  /**
   * A fixed or lowest-priority interrupt arrives (from the I/O APIC, an IPI or a local source):
   * it is latched in the IRR, with its TMR bit saying how it is triggered. False when the APIC
   * does not take it (software-disabled, illegal vector).
   */
  acceptInterrupt(vector: number, levelTriggered: boolean): boolean {
    const v = vector & 0xff;
    if (!this.softwareEnabled || !this.hardwareEnabled()) return false;
    if (v < 16) {
      this.#error(ESR_RECEIVE_ILLEGAL_VECTOR);
      return false;
    }
    setBit(this.irr, v, true);
    setBit(this.tmr, v, levelTriggered);
    if (v > this.#irrTop) this.#irrTop = v;
    return true;
  }

  // ---- MMIO ----

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number, _rangeIndex: number): number {
    // in x2APIC mode the page behaves as a globally disabled APIC's (SDM 10.12.2)
    if (this.#x2apic || !this.hardwareEnabled()) return size >= 4 ? 0xffffffff : size === 1 ? 0xff : 0xffff;
    // sub-dword reads take bytes of the 32-bit register; bytes 4-15 of a register read as zero
    if ((offset & 0xc) !== 0) return 0;
    const v = this.#readReg(offset & 0xff0) >>> 0;
    if (size >= 4) return v;
    return (v >>> ((offset & 3) * 8)) & (size === 1 ? 0xff : 0xffff);
  }

  /**
   * Register `reg` (a page offset, 16-byte aligned) as a read in xAPIC mode returns it, without the
   * page's mode and enable checks and without side effects: what a vCPU thread's copy of the
   * registers holds (the soft backend's threads.ts)
   */
  peekRegister(reg: number): number {
    return this.#readReg(reg & 0xff0) >>> 0;
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, size: number, value: number, _rangeIndex: number): void {
    // the registers are written as aligned dwords; other writes are dropped, as KVM drops them
    if (size < 4 || (offset & 0xf) !== 0 || this.#x2apic || !this.hardwareEnabled()) return;
    this.#writeReg(offset & 0xff0, value >>> 0);
  }

  #readReg(reg: number): number {
    switch (reg) {
      case LapicReg.ID:
        return this.#x2apic ? this.#initialId : this.id;
      case LapicReg.VERSION:
        return LAPIC_VERSION;
      case LapicReg.TPR:
        return this.tpr;
      case LapicReg.PPR:
        return this.ppr;
      case LapicReg.LDR:
        return this.ldr;
      case LapicReg.DFR:
        return this.dfr;
      case LapicReg.SVR:
        return this.svr;
      case LapicReg.ESR:
        return this.esr;
      case LapicReg.ICR_LOW:
        return this.icrLow;
      case LapicReg.ICR_HIGH:
        return this.icrHigh;
      case LapicReg.TIMER_INITIAL:
        return this.#timer.initial;
      case LapicReg.TIMER_CURRENT:
        return this.#timer.current(this.#now());
      case LapicReg.TIMER_DIVIDE:
        return this.tdcr;
    }
    if (reg >= LapicReg.ISR && reg < LapicReg.ESR) {
      const bank = reg < LapicReg.TMR ? this.isr : reg < LapicReg.IRR ? this.tmr : this.irr;
      return bank[(reg >> 4) & 7]!;
    }
    if (reg >= LapicReg.LVT_TIMER && reg <= LapicReg.LVT_ERROR)
      return this.lvt[(reg - LapicReg.LVT_TIMER) >> 4]!;
    // APR, RRD, EOI and the reserved offsets read as zero
    return 0;
  }

  #writeReg(reg: number, v: number): void {
    const now = this.#now();
    switch (reg) {
      case LapicReg.ID:
        this.id = v & 0xff000000;
        return;
      case LapicReg.TPR:
        this.tpr = v & 0xff;
        return;
      case LapicReg.EOI:
        this.#eoi();
        return;
      case LapicReg.LDR:
        this.ldr = v & 0xff000000;
        return;
      case LapicReg.DFR:
        this.dfr = (v | 0x0fffffff) >>> 0;
        return;
      case LapicReg.SVR:
        this.svr = v & 0x3ff;
        // software disable masks every LVT entry (SDM 10.4.7.2)
        if (!this.softwareEnabled) for (let i = 0; i < 6; i++) this.lvt[i] = this.lvt[i]! | LVT_MASKED;
        return;
      case LapicReg.ESR:
        this.esr = this.#esrPending;
        this.#esrPending = 0;
        return;
      case LapicReg.ICR_LOW:
        this.icrLow = v & ~(1 << 12); // delivery status: sent at once
        this.#sendIpi(this.icrLow, this.icrHigh >>> 24);
        return;
      case LapicReg.ICR_HIGH:
        this.icrHigh = v & 0xff000000;
        return;
      case LapicReg.TIMER_INITIAL:
        // TSC-deadline mode has no count: writes are ignored (10.5.4.1)
        if (this.#timerMode() === TIMER_TSC_DEADLINE) return;
        this.#timer.load(v, now);
        this.#ctx?.requestPoll?.();
        return;
      case LapicReg.TIMER_DIVIDE:
        this.tdcr = v & 0xb;
        this.#timer.setDivisor(apicTimerDivisor(this.tdcr), now);
        this.#ctx?.requestPoll?.();
        return;
    }
    if (reg >= LapicReg.LVT_TIMER && reg <= LapicReg.LVT_ERROR) {
      const i = (reg - LapicReg.LVT_TIMER) >> 4;
      let val = v & LVT_WRITABLE[i]!;
      if (!this.softwareEnabled) val |= LVT_MASKED;
      // read-only delivery status / remote IRR bits are not modelled: they read as zero
      const before = this.#timerMode();
      this.lvt[i] = val;
      if (i === TIMER) {
        const mode = this.#timerMode();
        // entering or leaving TSC-deadline mode disarms the timer, whichever kind it was (10.5.4.1)
        if ((before === TIMER_TSC_DEADLINE) !== (mode === TIMER_TSC_DEADLINE)) {
          this.#timer.load(0, now);
          this.#deadline.disarm();
        }
        this.#timer.setPeriodic(mode === TIMER_PERIODIC, now);
        this.#ctx?.requestPoll?.();
      }
    }
    // read-only registers (version, PPR, ISR/TMR/IRR, current count) ignore writes
  }

  /**
   * An EOI as the CPU's write of the EOI register makes it (the xAPIC page or the x2APIC MSR), for
   * a CPU that posts its EOIs from another thread (the soft backend's vCPU threads)
   */
  eoi(): void {
    this.#eoi();
  }

  /** EOI: the highest in-service vector is done; a level-triggered one is broadcast to the I/O APIC */
  #eoi(): void {
    const v = this.#isrTop;
    if (v < 0) return;
    setBit(this.isr, v, false);
    this.#isrTop = highest(this.isr);
    if (testBit(this.tmr, v)) this.onEoi?.(v);
  }

  #timerMode(): number {
    return (this.lvt[TIMER]! >>> TIMER_MODE_SHIFT) & 3;
  }

  /**
   * An IPI as ICR bits 31:0 `icr` and `destination` (8 bits in xAPIC mode, 32 in x2APIC mode)
   * describe it goes to the bus; a fixed or lowest-priority one with a vector below 16 is not sent
   * and sets the sender's "send illegal vector" error (SDM 10.5.3).
   */
  #sendIpi(icr: number, destination: number): void {
    const vector = icr & 0xff;
    const mode = (icr >> 8) & 7;
    const shorthand = ((icr >> 18) & 3) as IpiShorthand;
    const logical = (icr & (1 << 11)) !== 0;
    const levelTriggered = (icr & (1 << 15)) !== 0;
    if ((mode === MODE_FIXED || mode === MODE_LOWEST) && vector < 16) {
      this.#error(ESR_SEND_ILLEGAL_VECTOR);
      return;
    }
    const bus = this.sendIpi;
    if (bus) {
      bus({
        vector,
        deliveryMode: mode,
        destination,
        logical,
        levelTriggered,
        shorthand,
        assert: (icr & (1 << 14)) !== 0,
        source: this,
      });
      return;
    }
    if (mode !== MODE_FIXED && mode !== MODE_LOWEST) return;
    let self: boolean;
    if (shorthand === 1 || shorthand === 2) self = true;
    else if (shorthand === 3) self = false;
    else self = this.matchesDestination(destination, logical, this.#x2apic);
    if (self) this.acceptInterrupt(vector, levelTriggered);
  }

  #error(bits: number): void {
    this.#esrPending |= bits;
    const lvt = this.lvt[ERROR]!;
    if (!(lvt & LVT_MASKED)) this.acceptInterrupt(lvt & 0xff, false);
  }

  /** the timer: an expiry with LVT timer unmasked raises its vector; returns ns to the next one */
  poll(nowNs: number): number | undefined {
    const count = this.#timer.poll(nowNs);
    const deadline = this.#deadline.poll(nowNs);
    // a deadline reached disarms itself, masked or not; only an unmasked one interrupts
    if (count.fired || deadline.fired) this.#timerInterrupt();
    if (count.nextNs === undefined) return deadline.nextNs;
    return deadline.nextNs === undefined ? count.nextNs : Math.min(count.nextNs, deadline.nextNs);
  }

  /** the timer expired: its vector, unless LVT timer is masked */
  #timerInterrupt(): void {
    const lvt = this.lvt[TIMER]!;
    if (!(lvt & LVT_MASKED)) this.acceptInterrupt(lvt & 0xff, false);
  }

  // ---- the MSR interface (the CPU routes RDMSR/WRMSR of its own APIC's MSRs here) ----

  /**
   * RDMSR of an x2APIC register (0x800-0x8FF) or IA32_TSC_DEADLINE; undefined: #GP. x2APIC
   * registers exist only in x2APIC mode (10.12.2); IA32_TSC_DEADLINE reads 0 outside TSC-deadline
   * mode and while disarmed.
   */
  readMsr(index: number): bigint | undefined {
    if (index === TSC_DEADLINE_MSR) {
      if (!this.hardwareEnabled() || this.#timerMode() !== TIMER_TSC_DEADLINE) return 0n;
      // a deadline the TSC has reached has fired, whether or not the loop polled since
      const d = this.#deadline.value;
      if (d !== 0n && this.tsc && this.tsc.read() >= d) {
        this.#deadline.disarm();
        this.#timerInterrupt();
      }
      return this.#deadline.value;
    }
    if (!this.#x2apic || !this.hardwareEnabled() || !x2apicReadable(index)) return undefined;
    if (index === X2APIC_ICR_MSR) return (BigInt(this.icrHigh >>> 0) << 32n) | BigInt(this.icrLow >>> 0);
    return BigInt(this.#readReg(x2apicRegister(index)) >>> 0);
  }

  /**
   * WRMSR of an x2APIC register or IA32_TSC_DEADLINE; false: #GP (not in x2APIC mode, no such
   * register, read-only, reserved bits set). IA32_TSC_DEADLINE writes outside TSC-deadline mode
   * are ignored.
   */
  writeMsr(index: number, value: bigint): boolean {
    const v = BigInt.asUintN(64, value);
    if (index === TSC_DEADLINE_MSR) {
      if (!this.hardwareEnabled() || this.#timerMode() !== TIMER_TSC_DEADLINE) return true;
      const tsc = this.tsc;
      if (!tsc) return true;
      // the TSC first (TscDeadline.arm)
      const tscNow = tsc.read();
      this.#deadline.arm(v, tscNow, tsc.hz, this.#now());
      this.#ctx?.requestPoll?.();
      return true;
    }
    if (!this.#x2apic || !this.hardwareEnabled() || !x2apicWritable(index, v)) return false;
    if (index === X2APIC_ICR_MSR) {
      this.icrHigh = Number(v >> 32n) >>> 0;
      this.icrLow = Number(v & 0xffffffffn) & X2APIC_ICR_LOW_BITS;
      this.#sendIpi(this.icrLow, this.icrHigh);
      return true;
    }
    const reg = x2apicRegister(index);
    // SELF IPI: a fixed, edge-triggered IPI to this APIC, the ICR left as it is (10.12.11)
    if (reg === X2APIC_SELF_IPI) this.#sendIpi((1 << 18) | Number(v), 0);
    else this.#writeReg(reg, Number(v) >>> 0);
    return true;
  }

  /**
   * IA32_APIC_BASE.EXTD changed (the CPU checked the transition, 10.12.5). Entering x2APIC mode
   * keeps the registers but the APIC ID, the LDR (now the logical x2APIC ID) and the ICR's high
   * half; leaving it (to the disabled state, the only legal way) keeps only the APIC ID.
   */
  setX2apic(on: boolean): void {
    if (on === this.#x2apic) return;
    this.#x2apic = on;
    this.id = (this.#initialId << 24) >>> 0;
    if (on) {
      this.ldr = x2apicLogicalId(this.#initialId);
      this.icrHigh = 0;
    } else {
      this.initReset();
    }
    this.#ctx?.requestPoll?.();
  }

  /** the timer's current count (what the guest reads at 0x390) */
  timerCount(): number {
    return this.#timer.current(this.#now());
  }

  /** RESET (power-up): every register to its reset value, the APIC ID to the vCPU index */
  reset(): void {
    this.#x2apic = false;
    this.id = (this.#initialId << 24) >>> 0;
    this.initReset();
  }

  /**
   * An INIT (INIT IPI or INIT# pin): the registers go back to their power-up values except the
   * APIC ID, which keeps what software wrote (SDM 10.4.7.3; KVM's kvm_lapic_reset(init_event) sets
   * the ID at RESET only). The timer stops; the APIC comes out software-disabled; the BSP's LINT0
   * is ExtINT again, as KVM leaves it. An APIC in x2APIC mode stays in it, with its derived
   * logical ID (10.12.5.1).
   */
  initReset(): void {
    this.tpr = 0;
    this.ldr = this.#x2apic ? x2apicLogicalId(this.#initialId) : 0;
    this.dfr = 0xffffffff;
    this.svr = 0xff;
    this.esr = 0;
    this.#esrPending = 0;
    this.icrLow = 0;
    this.icrHigh = 0;
    this.tdcr = 0;
    this.irr.fill(0);
    this.isr.fill(0);
    this.tmr.fill(0);
    this.#irrTop = -1;
    this.#isrTop = -1;
    this.lvt.fill(LVT_MASKED);
    // the BSP's virtual wire, as KVM leaves it (KVM_X86_QUIRK_LINT0_REENABLED, kvm_vcpu_is_reset_bsp)
    if (this.isBsp) this.lvt[LINT0] = MODE_EXTINT << 8;
    this.#timer.restore({ initial: 0, startNs: this.#now(), divisor: 2, periodic: false, reported: 0 });
    this.#deadline.disarm();
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): LocalApicState {
    return {
      id: this.id,
      tpr: this.tpr,
      ldr: this.ldr,
      dfr: this.dfr,
      svr: this.svr,
      isr: [...this.isr],
      tmr: [...this.tmr],
      irr: [...this.irr],
      esr: this.esr,
      esrPending: this.#esrPending,
      icrLow: this.icrLow,
      icrHigh: this.icrHigh,
      lvt: [...this.lvt],
      tdcr: this.tdcr,
      timer: this.#timer.snapshot(),
      x2apic: this.#x2apic,
      tscDeadline: this.#deadline.snapshot(),
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: LocalApicState): void {
    if (!s || typeof s !== "object")
      throw new DeviceConfigError(this.name, "restore", "the state is not an object");
    for (const [k, n] of [
      ["isr", 8],
      ["tmr", 8],
      ["irr", 8],
      ["lvt", 6],
    ] as const) {
      if (!Array.isArray(s[k]) || s[k].length !== n) {
        throw new DeviceConfigError(this.name, "restore", `${k} must hold ${n} words`);
      }
    }
    const deadlineProblem = tscDeadlineStateProblem(s.tscDeadline);
    if (deadlineProblem) throw new DeviceConfigError(this.name, "restore", deadlineProblem);
    this.id = s.id >>> 0;
    this.tpr = s.tpr & 0xff;
    this.ldr = s.ldr >>> 0;
    this.dfr = s.dfr >>> 0;
    this.svr = s.svr & 0x3ff;
    this.isr.set(s.isr);
    this.tmr.set(s.tmr);
    this.irr.set(s.irr);
    this.esr = s.esr;
    this.#esrPending = s.esrPending;
    this.icrLow = s.icrLow >>> 0;
    this.icrHigh = s.icrHigh >>> 0;
    this.lvt.set(s.lvt);
    this.tdcr = s.tdcr & 0xb;
    this.#timer.restore(s.timer);
    this.#x2apic = s.x2apic === true;
    this.#deadline.restore(s.tscDeadline);
    this.#irrTop = highest(this.irr);
    this.#isrTop = highest(this.isr);
    this.#ctx?.requestPoll?.();
  }
}
