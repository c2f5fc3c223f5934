// ACPI fixed-feature hardware (ACPI 6.x section 4.8): the PM1a event block (PM1_STS, PM1_EN), the
// PM1a control block (PM1_CNT) and the PM timer, laid out as PIIX4 and ICH9 lay them out:
//   base + 0  PM1_STS  (16 bits, write 1 to clear)   base + 2  PM1_EN (16 bits)
//   base + 4  PM1_CNT  (16 bits)                      base + 8  PM_TMR (32-bit read, 24-bit count)
// The machine is always in ACPI mode (the FADT has no SMI_CMD), so SCI_EN reads as set. Writing
// SLP_EN with the SLP_TYP that \_S5 names powers off; other sleep types wake at once (WAK_STS),
// as a machine that cannot sleep would. The PM timer counts at 3.579545 MHz from the machine's clock;
// its bit 23 flipping sets TMR_STS. The SCI is a level line: (PM1_STS & PM1_EN) for the timer and
// the power button.

import type { Device, DeviceContext, DeviceRange, IrqLine } from "./device.js";
import { DeviceOptionReader } from "./options.js";

/** PM1_STS / PM1_EN bits. */
export const PM1_TMR = 1 << 0;
export const PM1_GBL = 1 << 5;
export const PM1_PWRBTN = 1 << 8;
export const PM1_SLPBTN = 1 << 9;
export const PM1_RTC = 1 << 10;
export const PM1_WAK_STS = 1 << 15;
/** PM1_CNT bits. */
export const PM1_CNT_SCI_EN = 1 << 0;
export const PM1_CNT_BM_RLD = 1 << 1;
export const PM1_CNT_GBL_RLS = 1 << 2;
export const PM1_CNT_SLP_TYP_SHIFT = 10;
export const PM1_CNT_SLP_TYP_MASK = 7 << PM1_CNT_SLP_TYP_SHIFT;
export const PM1_CNT_SLP_EN = 1 << 13;

/** The ACPI PM timer's rate, Hz. */
export const PM_TIMER_HZ = 3_579_545;
const TIMER_MASK = 0xffffff;
/** TMR_STS is set each time bit 23 of the counter changes. */
const TIMER_HALF = 1 << 23;

// what each status bit's enable sends to the SCI; WAK_STS has no enable. GBL_EN, SLPBTN_EN and
// RTC_EN stick as on a PC's chipset (ACPICA enables them and reads them back: else it logs "Could
// not enable ... event" at every boot) but nothing sets their status bits: no firmware shares the
// global lock (its FACS word is then free whenever the OS looks), and there is no sleep button or
// RTC alarm wake.
const SCI_SOURCES = PM1_TMR | PM1_PWRBTN;
// status bits the hardware can set; the rest read 0 (write 1 to clear)
const STS_IMPLEMENTED = PM1_TMR | PM1_PWRBTN | PM1_WAK_STS;
const EN_IMPLEMENTED = PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC;
// bits PM1_CNT keeps: BM_RLD and SLP_TYP (SCI_EN is fixed at 1; GBL_RLS and SLP_EN are write-only)
const CNT_KEPT = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;

/** Options of {@link AcpiPm}. */
export interface AcpiPmOptions {
  /** first port of the block; default 0xB000 (where SeaBIOS puts PIIX4's; ICH9's is at 0x600) */
  base?: number;
  /** the SCI's ISA IRQ; default 9 */
  irq?: number;
  /** SLP_TYP that means S5 (soft off); default 5, as lib/boot/acpi's `\_S5` says */
  s5SlpTyp?: number;
}

/** {@link AcpiPm}'s saved state (snapshot()/restore()). */
export interface AcpiPmState {
  /** PM1_STS. */
  status: number;
  /** PM1_EN. */
  enable: number;
  /** PM1_CNT. */
  control: number;
  /** floor(ticks / 2^23) at the last look: a change sets TMR_STS */
  timerHalves: number;
}

/** Ticks of the 3.579545 MHz timer at `ns`, exactly (no 2^53 overflow for any machine uptime). */
export function pmTimerTicks(ns: number): number {
  const t = Math.max(0, Math.floor(ns));
  const s = Math.floor(t / 1e9);
  return s * PM_TIMER_HZ + Math.floor(((t - s * 1e9) * PM_TIMER_HZ) / 1e9);
}

/** ns from `ns` until the timer's bit 23 next changes. */
function nsToNextHalf(ns: number): number {
  const next = (Math.floor(pmTimerTicks(ns) / TIMER_HALF) + 1) * TIMER_HALF;
  return Math.max(1, Math.ceil((next * 1e9) / PM_TIMER_HZ - ns));
}

/**
 * ACPI fixed-feature hardware as PIIX4/ICH9 lay it out: PM1 status/enable (base+0, +2), PM1 control (base+4)
 * and the 3.579545 MHz PM timer (base+8), with the SCI on `irq`. Writing SLP_EN with the S5 sleep type ends
 * the run as "poweroff"; other sleep types wake at once.
 */
export class AcpiPm implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "acpi-pm";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** {@inheritDoc Device.irq} */
  readonly irq: number;
  /** First port of the block. */
  readonly base: number;
  /** The SLP_TYP value that means S5 (soft off). */
  readonly s5SlpTyp: number;
  #ctx: DeviceContext | undefined;
  #line: IrqLine | undefined;
  #lineLevel = false;
  #status = 0;
  #enable = 0;
  #control = 0;
  #timerHalves = 0;

  constructor(opts?: AcpiPmOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    this.base = o.port("base", 0xb000, 12);
    this.irq = o.irq("irq", 9);
    // SLP_TYP is a 3-bit field of PM1_CNT
    this.s5SlpTyp = o.integer("s5SlpTyp", 5, 0, 7);
    this.ranges = [
      { space: "io", base: this.base, length: 4 },
      { space: "io", base: this.base + 4, length: 2 },
      { space: "io", base: this.base + 8, length: 4 },
    ];
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
    this.#line = ctx.irq;
    this.#lineLevel = false;
    this.#timerHalves = this.#halves();
    this.#updateSci();
  }

  /** PM_TMR as the guest reads it: 24 bits of 3.579545 MHz ticks. */
  get timer(): number {
    return pmTimerTicks(this.#now()) & TIMER_MASK;
  }

  /** PM1_STS as the guest reads it. */
  get status(): number {
    this.#syncTimer();
    return this.#status;
  }

  /** PM1_EN: which status bits raise the SCI. */
  get enable(): number {
    return this.#enable;
  }

  /** PM1_CNT as the guest reads it (SCI_EN set). */
  get control(): number {
    return this.#control | PM1_CNT_SCI_EN;
  }

  /**
   * Presses the fixed-feature power button: PWRBTN_STS, and an SCI when the OS enabled it. An
   * ACPI OS takes it as a request to shut down (Linux's button driver reports KEY_POWER; the user
   * space decides). Returns whether the OS had the button enabled.
   */
  pressPowerButton(): boolean {
    this.#status |= PM1_PWRBTN;
    this.#updateSci();
    return (this.#enable & PM1_PWRBTN) !== 0;
  }

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number, rangeIndex: number): number {
    let v = 0;
    for (let i = 0; i < size; i++) v += this.#readByte(rangeIndex, offset + i) * 2 ** (8 * i);
    return v;
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, size: number, value: number, rangeIndex: number): void {
    for (let i = 0; i < size; i++) {
      this.#writeByte(rangeIndex, offset + i, Math.floor(value / 2 ** (8 * i)) & 0xff);
    }
  }

  /** While TMR_EN is set, the loop calls back when bit 23 next changes (TMR_STS, SCI). */
  poll(nowNs: number): number | undefined {
    this.#syncTimer();
    return this.#enable & PM1_TMR ? nsToNextHalf(nowNs) : undefined;
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#status = 0;
    this.#enable = 0;
    this.#control = 0;
    this.#timerHalves = this.#halves();
    this.#updateSci();
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): AcpiPmState {
    this.#syncTimer();
    return {
      status: this.#status,
      enable: this.#enable,
      control: this.#control,
      timerHalves: this.#timerHalves,
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: AcpiPmState): void {
    this.#status = s.status & STS_IMPLEMENTED;
    this.#enable = s.enable & EN_IMPLEMENTED;
    this.#control = s.control & CNT_KEPT;
    this.#timerHalves = s.timerHalves;
    this.#updateSci();
  }

  // ---- internals ----

  #now(): number {
    return this.#ctx?.clock.nowNs() ?? 0;
  }

  #halves(): number {
    return Math.floor(pmTimerTicks(this.#now()) / TIMER_HALF);
  }

  /** TMR_STS when bit 23 changed since the last look */
  #syncTimer(): void {
    const h = this.#halves();
    if (h !== this.#timerHalves) {
      this.#timerHalves = h;
      this.#status |= PM1_TMR;
      this.#updateSci();
    }
  }

  #readByte(range: number, off: number): number {
    let reg: number;
    let shift: number;
    if (range === 0) {
      // status at 0-1, enable at 2-3
      reg = off < 2 ? this.status : this.#enable;
      shift = (off & 1) * 8;
    } else if (range === 1) {
      if (off > 1) return 0xff;
      reg = this.control;
      shift = off * 8;
    } else {
      if (off > 3) return 0xff;
      reg = this.timer;
      shift = off * 8;
    }
    return (reg >>> shift) & 0xff;
  }

  #writeByte(range: number, off: number, v: number): void {
    if (range === 0) {
      const shift = (off & 1) * 8;
      if (off < 2) {
        this.#syncTimer();
        this.#status &= ~(v << shift);
      } else {
        const mask = 0xff << shift;
        this.#enable = ((this.#enable & ~mask) | (v << shift)) & EN_IMPLEMENTED;
        // the timer's deadline matters only while TMR_EN is set
        this.#ctx?.requestPoll?.();
      }
      this.#updateSci();
      return;
    }
    if (range !== 1 || off > 1) return; // the timer is read-only
    const shift = off * 8;
    const mask = 0xff << shift;
    const written = v << shift;
    this.#control = ((this.#control & ~mask) | written) & CNT_KEPT;
    if (written & PM1_CNT_SLP_EN)
      this.#sleep((this.#control & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT);
  }

  #sleep(slpTyp: number): void {
    if (slpTyp === this.s5SlpTyp) {
      this.#ctx?.requestStop({ reason: "poweroff" });
      return;
    }
    // no other sleep state is offered (the DSDT names only \_S5): wake at once
    this.#status |= PM1_WAK_STS;
  }

  #updateSci(): void {
    const level = (this.#status & this.#enable & SCI_SOURCES) !== 0;
    if (level !== this.#lineLevel) {
      this.#lineLevel = level;
      this.#line?.set(level);
    }
  }
}
