// Exit statistics in the spirit of `perf kvm stat`: per exit kind, how many and how long the VMM
// spent handling them (from the exit returning to the next entry), plus time spent in the guest.
//
// Counts are exact. Times are measured on one exit in `timeEvery` (and on the first exit of each
// kind) and scaled to the count: reading the clock costs about as much as a whole KVM exit's
// Node-side work, so doing it twice per exit would halve the exit rate. `timeEvery = 1` (what
// `nodevmm run --stats` sets) times every exit, and the totals are exact sums.

import type { VmExit, VmExitKind } from "../types/exits.js";

/** Counts and host-side handling times for one exit kind (see {@link ExitStats}). */
export interface ExitKindStats {
  /** Exits of this kind (exact). */
  count: number;
  /** host time handling exits of this kind, in nanoseconds (scaled from the timed ones unless exact) */
  readonly totalNs: number;
  /** over the timed exits */
  minNs: number;
  /** Longest timed handling, in nanoseconds. */
  maxNs: number;
  /** how many of `count` were timed */
  timed: number;
}

/** One in this many exits is timed by default. */
export const DEFAULT_TIME_EVERY = 64;

class KindStats implements ExitKindStats {
  count = 0;
  timed = 0;
  timedNs = 0;
  minNs = Number.POSITIVE_INFINITY;
  maxNs = 0;

  get totalNs(): number {
    return this.timed === this.count || this.timed === 0
      ? this.timedNs
      : (this.timedNs * this.count) / this.timed;
  }
}

/**
 * VM-exit statistics in the spirit of `perf kvm stat` (`vm.stats`): exact counts per exit kind and per vCPU;
 * handling times measured on one exit in 64 by default (every exit with `nodevmm run --stats`) and scaled to
 * the count.
 */
export class ExitStats {
  /** Per exit kind, for the kinds seen so far. */
  readonly byKind = new Map<VmExitKind, ExitKindStats>();
  /** unregistered port/MMIO accesses seen by the handlers */
  unhandled = 0;
  /** All exits counted (every kind, every vCPU). */
  exits = 0;
  /** exits per vCPU index (SMP: whose exits they were) */
  readonly byVcpu: number[] = [];
  #timeEvery = DEFAULT_TIME_EVERY;
  #untilTimed = 0;
  #guestTimed = 0;
  #guestTimedNs = 0;
  /** the kind of the last exit counted, and its record (most exits repeat the kind before them) */
  #lastKind: VmExitKind | undefined;
  #last: KindStats | undefined;

  /** 1: every exit is timed and totals are exact; n: one exit in n is (estimates). */
  get timeEvery(): number {
    return this.#timeEvery;
  }
  set timeEvery(n: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`timeEvery must be a positive integer, got ${n}`);
    this.#timeEvery = n;
    this.#untilTimed = 0;
  }

  /**
   * host time inside backend run() calls (guest execution plus the backend's own work), ns; scaled
   * from the timed entries unless every exit is timed
   */
  get guestNs(): number {
    const t = this.#guestTimed;
    return t === 0 || t === this.exits ? this.#guestTimedNs : (this.#guestTimedNs * this.exits) / t;
  }

  /** Whether the next entry is to be timed (the loop asks once per entry, before it). */
  timeNext(): boolean {
    if (--this.#untilTimed > 0) return false;
    this.#untilTimed = this.#timeEvery;
    return true;
  }

  /** Whether no exit of this kind was counted yet (its first is always timed). */
  isNew(kind: VmExitKind): boolean {
    return kind !== this.#lastKind && !this.byKind.has(kind);
  }

  #kind(kind: VmExitKind): KindStats {
    if (kind === this.#lastKind) return this.#last!;
    let s = this.byKind.get(kind) as KindStats | undefined;
    if (!s) {
      s = new KindStats();
      this.byKind.set(kind, s);
    }
    this.#lastKind = kind;
    this.#last = s;
    return s;
  }

  /** An exit whose handling was not timed. */
  count(exit: VmExit): void {
    this.exits++;
    this.#kind(exit.kind).count++;
  }

  /** An exit whose handling took `handlingNs`. */
  record(exit: VmExit, handlingNs: number): void {
    this.exits++;
    const s = this.#kind(exit.kind);
    s.count++;
    s.timed++;
    s.timedNs += handlingNs;
    if (handlingNs < s.minNs) s.minNs = handlingNs;
    if (handlingNs > s.maxNs) s.maxNs = handlingNs;
  }

  /** A timed entry: `ns` in the backend's run(). */
  recordGuest(ns: number): void {
    this.#guestTimed++;
    this.#guestTimedNs += ns;
  }

  /** An exit of vCPU `index` (counted beside count()/record()). */
  countVcpu(index: number): void {
    const b = this.byVcpu;
    b[index] = (b[index] ?? 0) + 1;
  }

  /** Sets every count and time back to zero. */
  reset(): void {
    this.byKind.clear();
    this.byVcpu.length = 0;
    this.#lastKind = undefined;
    this.#last = undefined;
    this.unhandled = 0;
    this.#guestTimed = 0;
    this.#guestTimedNs = 0;
    this.exits = 0;
    this.#untilTimed = 0;
  }

  /** Rows sorted by count, descending (what the stats table prints). */
  rows(): { kind: VmExitKind; stats: ExitKindStats }[] {
    return [...this.byKind.entries()]
      .map(([kind, stats]) => ({ kind, stats }))
      .sort((a, b) => b.stats.count - a.stats.count || a.kind.localeCompare(b.kind));
  }
}
