// MC146818 CMOS/RTC at 0x70 (index, bit 7 masks NMI) and 0x71 (data): the time of day from host
// time or from the machine's Clock, status registers A-D with the data-mode and 12/24-hour bits
// of B honoured, periodic/alarm/update-ended interrupts on IRQ 8, and the memory-size bytes that
// QEMU's pc machine stores for SeaBIOS and friends.

import { describeValue } from "../types/describe-value.js";
import type { Device, DeviceContext, DeviceRange, IrqLine } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { DeviceOptionReader } from "./options.js";

export const RTC_SECONDS = 0x00;
export const RTC_SECONDS_ALARM = 0x01;
export const RTC_MINUTES = 0x02;
export const RTC_MINUTES_ALARM = 0x03;
export const RTC_HOURS = 0x04;
export const RTC_HOURS_ALARM = 0x05;
export const RTC_DAY_OF_WEEK = 0x06;
export const RTC_DAY_OF_MONTH = 0x07;
export const RTC_MONTH = 0x08;
export const RTC_YEAR = 0x09;
export const RTC_REG_A = 0x0a;
export const RTC_REG_B = 0x0b;
export const RTC_REG_C = 0x0c;
export const RTC_REG_D = 0x0d;
export const RTC_CENTURY = 0x32;

const REG_A_UIP = 0x80;
const REG_B_SET = 0x80;
const REG_B_PIE = 0x40;
const REG_B_AIE = 0x20;
const REG_B_UIE = 0x10;
const REG_B_DM = 0x04; // binary
const REG_B_24H = 0x02;
const REG_C_IRQF = 0x80;
const REG_C_PF = 0x40;
const REG_C_AF = 0x20;
const REG_C_UF = 0x10;

const KiB = 1024;
const MiB = 1024 * KiB;
/** QEMU's pc: with 3.5 GiB of RAM or more, RAM below 4 GiB stops at 3 GiB (gigabyte alignment) */
const LOWMEM_SPLIT = 0xe0000000;
const LOWMEM_GB_ALIGNED = 0xc0000000;
/** the update cycle flag is set for 244 us before each second's update */
const UIP_WINDOW_MS = 0.244;

/** Options of {@link CmosRtc}. */
export interface CmosRtcOptions {
  /** guest RAM in bytes; fills 0x15-0x18, 0x30-0x31, 0x34-0x35, 0x5b-0x5d. Default 0 */
  memoryBytes?: number;
  /** RAM below 4 GiB when not the QEMU pc default split */
  belowFourGiB?: number;
  /** vCPU count stored at 0x5f as count-1 (QEMU); default 1 */
  cpus?: number;
  /** "host": wall time; "clock": startTime plus the machine Clock's elapsed time. Default "host" */
  timeSource?: "host" | "clock";
  /** the RTC's time when the device is attached, for timeSource "clock"; default: now */
  startTime?: Date;
  /** default 8 */
  irq?: number;
  /** extra bytes to preset: the value for each CMOS index */
  nvram?: Readonly<Record<number, number>>;
}

/** {@link CmosRtc}'s saved state (snapshot()/restore()). */
export interface CmosRtcState {
  /** The 128 CMOS bytes (RTC registers and NVRAM). */
  data: number[];
  /** The register index last written to port 0x70. */
  index: number;
  /** Bit 7 of the last port 0x70 write (NMI masked). */
  nmiMasked: boolean;
  /** RTC time minus source time, in ms (the guest may set the clock). */
  offsetMs: number;
  /** The RTC second last seen, for update-ended interrupts (NaN: none yet). */
  lastSecond: number;
  /** The periodic-interrupt period count last seen (NaN: none yet). */
  lastPeriod: number;
}

function bin2bcd(v: number): number {
  return ((Math.floor(v / 10) % 10) << 4) | (v % 10);
}
function bcd2bin(v: number): number {
  return ((v >> 4) & 0xf) * 10 + (v & 0xf);
}

/**
 * MC146818 CMOS/RTC at ports 0x70 (index; bit 7 masks NMI) and 0x71 (data): time of day from the host or the
 * machine's clock, periodic/alarm/update interrupts on IRQ 8, and the memory-size and CPU-count bytes
 * firmware reads (as QEMU's pc machine stores them).
 */
export class CmosRtc implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "cmos-rtc";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[] = [{ space: "io", base: 0x70, length: 2 }];
  /** {@inheritDoc Device.irq} */
  readonly irq: number;
  readonly #data = new Uint8Array(128);
  readonly #initial = new Uint8Array(128);
  #index = 0;
  #nmiMasked = false;
  #ctx: DeviceContext | undefined;
  #line: IrqLine | undefined;
  #lineLevel = false;
  readonly #source: "host" | "clock";
  #startMs: number;
  #attachNs = 0;
  /** RTC time = source time + offset (the guest may set the clock) */
  #offsetMs = 0;
  #lastSecond = Number.NaN;
  #lastPeriod = Number.NaN;

  constructor(options?: CmosRtcOptions) {
    const o: DeviceOptionReader<CmosRtcOptions> = new DeviceOptionReader(this.name, options);
    this.irq = o.irq("irq", 8);
    this.#source = o.oneOf("timeSource", ["host", "clock"] as const, "host");
    const start = o.get("startTime", new Date());
    if (!(start instanceof Date) || Number.isNaN(start.getTime())) {
      o.fail("startTime", `must be a valid Date, got ${describeValue(start)}`);
    }
    this.#startMs = start.getTime();
    const mem = o.integer("memoryBytes", 0, 0, Number.MAX_SAFE_INTEGER);
    const below = o.integer(
      "belowFourGiB",
      mem >= LOWMEM_SPLIT ? LOWMEM_GB_ALIGNED : mem,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    if (below > mem || below > 2 ** 32) o.fail("belowFourGiB", `${below} is not within RAM and 4 GiB`);
    const cpus = o.integer("cpus", 1, 1, 256);
    const nvram = o.get("nvram", {});
    if (typeof nvram !== "object" || nvram === null || Array.isArray(nvram)) {
      o.fail("nvram", `must be an object of index -> byte, got ${describeValue(nvram)}`);
    }
    const d = this.#initial;
    d[RTC_REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
    d[RTC_REG_B] = REG_B_24H;
    d[RTC_REG_D] = 0x80; // valid RAM and time
    d[0x14] = 0x02; // equipment: FPU present, no floppy
    setMemoryBytes(d, below, mem - below);
    d[0x5f] = cpus - 1;
    for (const [k, v] of Object.entries(nvram) as [string, unknown][]) {
      const i = Number(k);
      if (
        !Number.isInteger(i) ||
        i < 0 ||
        i > 127 ||
        typeof v !== "number" ||
        !Number.isInteger(v) ||
        v < 0 ||
        v > 255
      ) {
        o.fail("nvram", `entry ${JSON.stringify(k)} = ${describeValue(v)} is not index 0-127 -> byte`);
      }
      d[i] = v;
    }
    this.#data.set(d);
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
    this.#line = ctx.irq;
    this.#lineLevel = false;
    this.#attachNs = ctx.clock.nowNs();
    // baselines, so the first events after attach are flagged even before the first poll
    const period = this.#periodNs();
    if (period !== undefined) this.#lastPeriod = Math.floor(this.#attachNs / period);
    this.#lastSecond = Math.floor(this.#rtcMs() / 1000);
  }

  /** Whether the guest masked NMIs (bit 7 of its last write to port 0x70). */
  get nmiMasked(): boolean {
    return this.#nmiMasked;
  }

  /** the RTC's current time (as the guest would read it, in UTC) */
  now(): Date {
    return new Date(Math.floor(this.#rtcMs()));
  }

  /** raw NVRAM byte (no time refresh, no side effects) */
  peek(index: number): number {
    return this.#data[index & 0x7f]!;
  }

  /** {@inheritDoc Device.read} */
  read(offset: number): number {
    if (offset === 0) return 0xff; // the index register is write-only
    const i = this.#index;
    if (i <= RTC_YEAR || i === RTC_CENTURY) {
      if (i !== RTC_SECONDS_ALARM && i !== RTC_MINUTES_ALARM && i !== RTC_HOURS_ALARM) {
        if (!(this.#data[RTC_REG_B]! & REG_B_SET)) this.#fillTime();
      }
      return this.#data[i]!;
    }
    switch (i) {
      case RTC_REG_A: {
        let a = this.#data[RTC_REG_A]! & ~REG_A_UIP;
        if (!(this.#data[RTC_REG_B]! & REG_B_SET)) {
          const ms = this.#rtcMs();
          if (ms - Math.floor(ms / 1000) * 1000 >= 1000 - UIP_WINDOW_MS) a |= REG_A_UIP;
        }
        return a;
      }
      case RTC_REG_C: {
        this.#updateFlags(this.#nowNs());
        const c = this.#data[RTC_REG_C]!;
        this.#data[RTC_REG_C] = 0;
        this.#setLine(false);
        return c;
      }
      default:
        return this.#data[i]!;
    }
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, _size: number, value: number): void {
    const v = value & 0xff;
    if (offset === 0) {
      this.#index = v & 0x7f;
      this.#nmiMasked = (v & 0x80) !== 0;
      return;
    }
    const i = this.#index;
    if (i <= RTC_YEAR || i === RTC_CENTURY) {
      this.#data[i] = v;
      const isAlarm = i === RTC_SECONDS_ALARM || i === RTC_MINUTES_ALARM || i === RTC_HOURS_ALARM;
      if (!isAlarm && !(this.#data[RTC_REG_B]! & REG_B_SET)) this.#setTimeFromRegs();
      return;
    }
    switch (i) {
      case RTC_REG_A:
        this.#data[RTC_REG_A] = (this.#data[RTC_REG_A]! & REG_A_UIP) | (v & ~REG_A_UIP);
        {
          // a new rate counts its periods from now
          const period = this.#periodNs();
          this.#lastPeriod = period === undefined ? Number.NaN : Math.floor(this.#nowNs() / period);
        }
        this.#ctx?.requestPoll?.();
        break;
      case RTC_REG_B: {
        const old = this.#data[RTC_REG_B]!;
        let b = v;
        if (b & REG_B_SET && !(old & REG_B_SET)) {
          this.#fillTime(); // freeze the registers at the time SET was raised
          b &= ~REG_B_UIE;
        }
        this.#data[RTC_REG_B] = b;
        if (old & REG_B_SET && !(b & REG_B_SET)) this.#setTimeFromRegs();
        // an enable bit set while its flag is already up raises IRQF at once
        this.#recomputeIrqf();
        this.#ctx?.requestPoll?.();
        break;
      }
      case RTC_REG_C:
      case RTC_REG_D:
        break; // read-only
      default:
        this.#data[i] = v;
    }
  }

  /** {@inheritDoc Device.poll} */
  poll(nowNs: number): number | undefined {
    this.#updateFlags(nowNs);
    const b = this.#data[RTC_REG_B]!;
    let next: number | undefined;
    const period = this.#periodNs();
    if (b & REG_B_PIE && period !== undefined) {
      next = (Math.floor(nowNs / period) + 1) * period - nowNs;
    }
    if (b & (REG_B_UIE | REG_B_AIE) && !(b & REG_B_SET)) {
      const ms = this.#rtcMs();
      const toSecond = Math.max(1, Math.ceil(((Math.floor(ms / 1000) + 1) * 1000 - ms) * 1e6));
      next = next === undefined ? toSecond : Math.min(next, toSecond);
    }
    return next === undefined ? undefined : Math.max(1, Math.ceil(next));
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    // the time keeps running across a reset; the interrupt enables and flags clear
    this.#data[RTC_REG_B] = this.#data[RTC_REG_B]! & ~(REG_B_PIE | REG_B_AIE | REG_B_UIE);
    this.#data[RTC_REG_C] = 0;
    this.#setLine(false);
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): CmosRtcState {
    return {
      data: [...this.#data],
      index: this.#index,
      nmiMasked: this.#nmiMasked,
      offsetMs: this.#offsetMs,
      lastSecond: this.#lastSecond,
      lastPeriod: this.#lastPeriod,
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: CmosRtcState): void {
    if (!Array.isArray(s.data) || s.data.length !== 128) {
      throw new DeviceConfigError(this.name, "restore", "data must hold 128 bytes");
    }
    this.#data.set(s.data.map((x) => x & 0xff));
    this.#index = s.index & 0x7f;
    this.#nmiMasked = s.nmiMasked;
    this.#offsetMs = s.offsetMs;
    this.#lastSecond = s.lastSecond;
    this.#lastPeriod = s.lastPeriod;
    this.#recomputeIrqf();
  }

  // ---- time ----

  #nowNs(): number {
    return this.#ctx?.clock.nowNs() ?? 0;
  }

  #sourceMs(): number {
    if (this.#source === "host") return Date.now();
    return this.#startMs + (this.#nowNs() - this.#attachNs) / 1e6;
  }

  #rtcMs(): number {
    return this.#sourceMs() + this.#offsetMs;
  }

  #enc(v: number): number {
    return this.#data[RTC_REG_B]! & REG_B_DM ? v : bin2bcd(v);
  }

  #dec(v: number): number {
    return this.#data[RTC_REG_B]! & REG_B_DM ? v : bcd2bin(v);
  }

  #encHour(h: number): number {
    if (this.#data[RTC_REG_B]! & REG_B_24H) return this.#enc(h);
    const pm = h >= 12;
    const h12 = h % 12 === 0 ? 12 : h % 12;
    return this.#enc(h12) | (pm ? 0x80 : 0);
  }

  #decHour(raw: number): number {
    if (this.#data[RTC_REG_B]! & REG_B_24H) return this.#dec(raw & 0x7f);
    const h12 = this.#dec(raw & 0x7f) % 12;
    return raw & 0x80 ? h12 + 12 : h12;
  }

  #fillTime(): void {
    const t = new Date(Math.floor(this.#rtcMs()));
    const d = this.#data;
    d[RTC_SECONDS] = this.#enc(t.getUTCSeconds());
    d[RTC_MINUTES] = this.#enc(t.getUTCMinutes());
    d[RTC_HOURS] = this.#encHour(t.getUTCHours());
    d[RTC_DAY_OF_WEEK] = this.#enc(t.getUTCDay() + 1);
    d[RTC_DAY_OF_MONTH] = this.#enc(t.getUTCDate());
    d[RTC_MONTH] = this.#enc(t.getUTCMonth() + 1);
    d[RTC_YEAR] = this.#enc(t.getUTCFullYear() % 100);
    d[RTC_CENTURY] = this.#enc(Math.floor(t.getUTCFullYear() / 100));
  }

  #setTimeFromRegs(): void {
    const d = this.#data;
    const year = this.#dec(d[RTC_CENTURY]!) * 100 + this.#dec(d[RTC_YEAR]!);
    const ms = Date.UTC(
      year,
      this.#dec(d[RTC_MONTH]!) - 1,
      this.#dec(d[RTC_DAY_OF_MONTH]!),
      this.#decHour(d[RTC_HOURS]!),
      this.#dec(d[RTC_MINUTES]!),
      this.#dec(d[RTC_SECONDS]!),
    );
    // garbage in the registers (a guest mid-update) leaves the clock where it was
    if (Number.isNaN(ms)) return;
    this.#offsetMs = ms - this.#sourceMs();
    this.#lastSecond = Math.floor(this.#rtcMs() / 1000);
  }

  // ---- interrupts ----

  #periodNs(): number | undefined {
    const rate = this.#data[RTC_REG_A]! & 0x0f;
    if (rate === 0) return undefined;
    const r = rate <= 2 ? rate + 7 : rate; // rates 1 and 2 repeat 8 and 9 on a 32.768 kHz base
    return (1e9 * 2 ** (r - 1)) / 32768;
  }

  #alarmMatches(sec: number): boolean {
    const ofDay = ((sec % 86400) + 86400) % 86400;
    const d = this.#data;
    const match = (alarm: number, value: number, hours: boolean): boolean => {
      if ((alarm & 0xc0) === 0xc0) return true; // "don't care"
      return (hours ? this.#decHour(alarm) : this.#dec(alarm)) === value;
    };
    return (
      match(d[RTC_SECONDS_ALARM]!, ofDay % 60, false) &&
      match(d[RTC_MINUTES_ALARM]!, Math.floor(ofDay / 60) % 60, false) &&
      match(d[RTC_HOURS_ALARM]!, Math.floor(ofDay / 3600), true)
    );
  }

  /** sets PF/UF/AF for the events between the last update and now */
  #updateFlags(nowNs: number): void {
    let c = this.#data[RTC_REG_C]!;
    const period = this.#periodNs();
    if (period !== undefined) {
      const p = Math.floor(nowNs / period);
      if (!Number.isNaN(this.#lastPeriod) && p > this.#lastPeriod) c |= REG_C_PF;
      this.#lastPeriod = p;
    }
    if (!(this.#data[RTC_REG_B]! & REG_B_SET)) {
      const sec = Math.floor(this.#rtcMs() / 1000);
      if (!Number.isNaN(this.#lastSecond) && sec > this.#lastSecond) {
        c |= REG_C_UF;
        // bounded scan: after a long gap only the last day of seconds can still match
        for (let s = Math.max(this.#lastSecond + 1, sec - 86399); s <= sec; s++) {
          if (this.#alarmMatches(s)) {
            c |= REG_C_AF;
            break;
          }
        }
      }
      this.#lastSecond = sec;
    }
    this.#data[RTC_REG_C] = c;
    this.#recomputeIrqf();
  }

  #recomputeIrqf(): void {
    const b = this.#data[RTC_REG_B]!;
    let c = this.#data[RTC_REG_C]! & ~REG_C_IRQF;
    if (
      (b & REG_B_PIE && c & REG_C_PF) ||
      (b & REG_B_AIE && c & REG_C_AF) ||
      (b & REG_B_UIE && c & REG_C_UF)
    ) {
      c |= REG_C_IRQF;
    }
    this.#data[RTC_REG_C] = c;
    this.#setLine((c & REG_C_IRQF) !== 0);
  }

  #setLine(level: boolean): void {
    if (level === this.#lineLevel) return;
    this.#lineLevel = level;
    this.#line?.set(level);
  }
}

/** the memory-size bytes as QEMU's pc_cmos_init writes them */
export function setMemoryBytes(d: Uint8Array, below4G: number, above4G: number): void {
  const base = Math.min(Math.floor(below4G / KiB), 640);
  d[0x15] = base & 0xff;
  d[0x16] = base >> 8;
  const ext = Math.min(below4G > MiB ? Math.floor((below4G - MiB) / KiB) : 0, 0xffff);
  d[0x17] = ext & 0xff;
  d[0x18] = ext >> 8;
  d[0x30] = ext & 0xff;
  d[0x31] = ext >> 8;
  const high = Math.min(below4G > 16 * MiB ? Math.floor((below4G - 16 * MiB) / (64 * KiB)) : 0, 0xffff);
  d[0x34] = high & 0xff;
  d[0x35] = high >> 8;
  const above = Math.floor(above4G / (64 * KiB));
  d[0x5b] = above & 0xff;
  d[0x5c] = (above >> 8) & 0xff;
  d[0x5d] = (above >> 16) & 0xff;
}
