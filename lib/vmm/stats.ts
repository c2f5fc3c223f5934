// Exit statistics in the spirit of `perf kvm stat`: per exit kind, how many and how long the VMM
// spent handling them (from the exit returning to the next entry), plus time spent in the guest.

import type { VmExit, VmExitKind } from "../types/exits.js";

export interface ExitKindStats {
  count: number;
  /** host time handling exits of this kind, in nanoseconds */
  totalNs: number;
  minNs: number;
  maxNs: number;
}

export class ExitStats {
  readonly byKind = new Map<VmExitKind, ExitKindStats>();
  /** unregistered port/MMIO accesses seen by the handlers */
  unhandled = 0;
  /** host time inside backend run() calls (guest execution plus the backend's own work), ns */
  guestNs = 0;
  exits = 0;

  record(exit: VmExit, handlingNs: number): void {
    this.exits++;
    let s = this.byKind.get(exit.kind);
    if (!s) {
      s = { count: 0, totalNs: 0, minNs: Number.POSITIVE_INFINITY, maxNs: 0 };
      this.byKind.set(exit.kind, s);
    }
    s.count++;
    s.totalNs += handlingNs;
    if (handlingNs < s.minNs) s.minNs = handlingNs;
    if (handlingNs > s.maxNs) s.maxNs = handlingNs;
  }

  reset(): void {
    this.byKind.clear();
    this.unhandled = 0;
    this.guestNs = 0;
    this.exits = 0;
  }

  /** Rows sorted by count, descending (what the stats table prints). */
  rows(): { kind: VmExitKind; stats: ExitKindStats }[] {
    return [...this.byKind.entries()]
      .map(([kind, stats]) => ({ kind, stats }))
      .sort((a, b) => b.stats.count - a.stats.count || a.kind.localeCompare(b.kind));
  }
}
