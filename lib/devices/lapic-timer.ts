// The local APIC's timer: a 32-bit down counter clocked by the APIC bus through a divider, in
// one-shot or periodic mode. Like the i8254 it is computed from the Clock at each access (no
// ticking); expirations reach the APIC through poll(), and periods the loop polled too late for
// coalesce into one interrupt, as they would in the IRR bit.

import { describeValue } from "../types/describe-value.js";
import { DeviceConfigError } from "./errors.js";

/** KVM's default APIC bus (1 ns per cycle); QEMU's emulated APIC counts at the same rate */
export const APIC_BUS_HZ = 1_000_000_000;

/** the divider the divide configuration register selects (bits 0, 1 and 3) */
export function apicTimerDivisor(tdcr: number): number {
  const code = (tdcr & 3) | ((tdcr >> 1) & 4);
  return code === 7 ? 1 : 2 << code;
}

/** {@link ApicTimer}'s saved state. */
export interface ApicTimerState {
  /** Initial count register (0 stops the timer). */
  initial: number;
  /** Machine-clock time the current count started, in ns. */
  startNs: number;
  /** The divide value TDCR selects (1 to 128). */
  divisor: number;
  /** Periodic mode (else one-shot). */
  periodic: boolean;
  /** expirations already reported since startNs */
  reported: number;
}

/**
 * A local APIC's timer (one-shot or periodic), counted from the machine's clock at `busHz` divided by TDCR's
 * divisor; {@link LocalApic} owns one. Fields are its registers, public to inspect.
 */
export class ApicTimer {
  /** Initial count register (0 stops the timer). */
  initial = 0;
  /** Machine-clock time the current count started, in ns. */
  startNs = 0;
  /** The divide value TDCR selects (1 to 128). */
  divisor = 2;
  /** Periodic mode (else one-shot). */
  periodic = false;
  /** Expirations already reported since startNs. */
  reported = 0;

  /** Throws DeviceConfigError unless `busHz` is a positive number. */
  constructor(
    /** The timer's input clock before the divider, in Hz; default 1 GHz (KVM's). */
    readonly busHz: number = APIC_BUS_HZ,
  ) {
    // a zero, negative or non-numeric rate would make every count NaN or Infinity later
    if (typeof busHz !== "number" || !Number.isFinite(busHz) || busHz <= 0) {
      const got = describeValue(busHz);
      throw new DeviceConfigError("apic-timer", "busHz", `must be a positive number, got ${got}`);
    }
  }

  #nsPerTick(): number {
    return (this.divisor * 1e9) / this.busHz;
  }

  #ticks(nowNs: number): number {
    return Math.floor(Math.max(0, nowNs - this.startNs) / this.#nsPerTick());
  }

  /** expirations (count reaching zero) between startNs and nowNs; one-shot counts at most one */
  #expirations(nowNs: number): number {
    if (this.initial === 0) return 0;
    const n = Math.floor(this.#ticks(nowNs) / this.initial);
    return this.periodic ? n : Math.min(n, 1);
  }

  /** writing the initial count (re)starts the timer; 0 stops it */
  load(initial: number, nowNs: number): void {
    this.initial = initial >>> 0;
    this.startNs = nowNs;
    this.reported = 0;
  }

  /** the current count register */
  current(nowNs: number): number {
    if (this.initial === 0) return 0;
    const t = this.#ticks(nowNs);
    if (this.periodic) return this.initial - (t % this.initial);
    return t >= this.initial ? 0 : this.initial - t;
  }

  /** a new divider: the count goes on from where it is, at the new rate */
  setDivisor(divisor: number, nowNs: number): void {
    if (divisor === this.divisor) return;
    const cur = this.current(nowNs);
    const done = this.#expirations(nowNs) > this.reported;
    this.divisor = divisor;
    if (this.initial === 0) return;
    this.#rebase(cur, nowNs, done);
  }

  /** a switch between one-shot and periodic: the count is not restarted (SDM 10.5.4) */
  setPeriodic(periodic: boolean, nowNs: number): void {
    if (periodic === this.periodic) return;
    const cur = this.current(nowNs);
    const pending = this.#expirations(nowNs) > this.reported;
    const expired = !this.periodic && this.initial !== 0 && cur === 0;
    this.periodic = periodic;
    if (this.initial === 0) return;
    // a one-shot count that already ran out restarts a full period when it becomes periodic
    this.#rebase(expired ? this.initial : cur, nowNs, pending);
  }

  /** restarts the arithmetic so that current() is `cur` now; `pending` keeps an unreported expiry */
  #rebase(cur: number, nowNs: number, pending: boolean): void {
    const elapsed = cur === 0 ? this.initial : this.initial - cur;
    this.startNs = nowNs - elapsed * this.#nsPerTick();
    const n = this.#expirations(nowNs);
    this.reported = pending ? Math.max(0, n - 1) : n;
  }

  /**
   * Whether the count reached zero since the last call (several periods count as one), and the
   * ns until it next does (undefined: it will not).
   */
  poll(nowNs: number): { fired: boolean; nextNs: number | undefined } {
    if (this.initial === 0) return { fired: false, nextNs: undefined };
    const n = this.#expirations(nowNs);
    const fired = n > this.reported;
    this.reported = n;
    if (!this.periodic && n >= 1) return { fired, nextNs: undefined };
    const nextAt = this.startNs + (n + 1) * this.initial * this.#nsPerTick();
    return { fired, nextNs: Math.max(1, Math.ceil(nextAt - nowNs)) };
  }

  /** The timer's state as plain data. */
  snapshot(): ApicTimerState {
    return {
      initial: this.initial,
      startNs: this.startNs,
      divisor: this.divisor,
      periodic: this.periodic,
      reported: this.reported,
    };
  }

  /** Puts back a state snapshot() returned. */
  restore(s: ApicTimerState): void {
    this.initial = s.initial >>> 0;
    this.startNs = s.startNs;
    this.divisor = s.divisor;
    this.periodic = s.periodic;
    this.reported = s.reported;
  }
}

/** what TSC-deadline mode compares against: the time-stamp counter of the CPU that owns the APIC */
export interface TscSource {
  /** the TSC's value now */
  read(): bigint;
  /** its rate (ticks per second of the machine's clock) */
  readonly hz: number;
}

const MAX_DEADLINE_WAIT_NS = 60e9;

/** The armed TSC deadline of a local APIC in TSC-deadline mode, as LocalApicState keeps it. */
export interface TscDeadlineState {
  /** IA32_TSC_DEADLINE as armed, in decimal (device state is plain JSON); "0": disarmed */
  value: string;
  /** the machine-clock time at which the TSC reaches it */
  atNs: number;
}

/**
 * TSC-deadline mode (SDM vol. 3 10.5.4.1): IA32_TSC_DEADLINE armed with a TSC value fires once
 * the TSC reaches it and disarms itself (the MSR reads 0 again); 0 disarms it. The TSC follows the
 * machine's clock at a fixed rate, so the deadline becomes a clock time when armed.
 */
export class TscDeadline {
  value = 0n;
  atNs = 0;

  /**
   * Arms at `value` (0 disarms). `tscNow` is read before `nowNs`, so that at `atNs` the TSC has
   * reached `value` even if the two reads straddle a tick; a deadline already past fires at the
   * next poll.
   */
  arm(value: bigint, tscNow: bigint, hz: number, nowNs: number): void {
    this.value = BigInt.asUintN(64, value);
    if (this.value === 0n) return;
    const ticks = this.value - tscNow;
    const perSecond = BigInt(Math.max(1, Math.round(hz)));
    this.atNs = ticks <= 0n ? nowNs : nowNs + Number((ticks * 1_000_000_000n + perSecond - 1n) / perSecond);
  }

  disarm(): void {
    this.value = 0n;
  }

  /** whether the deadline passed (it disarms then), and the ns until it will (undefined: disarmed) */
  poll(nowNs: number): { fired: boolean; nextNs: number | undefined } {
    if (this.value === 0n) return { fired: false, nextNs: undefined };
    if (nowNs >= this.atNs) {
      this.value = 0n;
      return { fired: true, nextNs: undefined };
    }
    // a deadline years away is looked at again in a while rather than handed on as a huge delay
    return {
      fired: false,
      nextNs: Math.min(MAX_DEADLINE_WAIT_NS, Math.max(1, Math.ceil(this.atNs - nowNs))),
    };
  }

  snapshot(): TscDeadlineState {
    return { value: this.value.toString(), atNs: this.atNs };
  }

  /** a state from snapshot(), or undefined: disarmed */
  restore(s: TscDeadlineState | undefined): void {
    // the owner checked the value (tscDeadlineStateProblem)
    this.value = s ? BigInt.asUintN(64, BigInt(s.value)) : 0n;
    this.atNs = typeof s?.atNs === "number" && Number.isFinite(s.atNs) ? s.atNs : 0;
  }
}

/** what is wrong with a saved TscDeadlineState, or undefined when restore() can take it */
export function tscDeadlineStateProblem(s: unknown): string | undefined {
  if (s === undefined) return undefined;
  const v = s as Partial<TscDeadlineState> | null;
  if (!v || typeof v !== "object") return "tscDeadline is not an object";
  if (typeof v.value !== "string" || !/^\d{1,20}$/.test(v.value))
    return "tscDeadline.value is not a decimal integer";
  if (typeof v.atNs !== "number" || !Number.isFinite(v.atNs))
    return "tscDeadline.atNs is not a finite number";
  return undefined;
}
