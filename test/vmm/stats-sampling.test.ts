// ExitStats times one exit in timeEvery (and the first of each kind) and scales the totals; counts
// stay exact. timeEvery = 1 (nodevmm run --stats) times every exit: the totals are exact sums.

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { ExitLoop } from "../../lib/vmm/loop.js";
import { ExitStats } from "../../lib/vmm/stats.js";
import { FakeBackend, hlt, intr, io } from "./fake-backend.js";

const IO: VmExit = {
  kind: "io",
  direction: "out",
  port: 0xe9,
  size: 1,
  count: 1,
  data: new Uint8Array(1),
  raw: { backend: "kvm", code: 2 },
};
const HLT: VmExit = { kind: "hlt", raw: { backend: "kvm", code: 5 } };

describe("ExitStats sampling", () => {
  it("counts every exit, times one in timeEvery and scales the total to the count", () => {
    const s = new ExitStats();
    s.timeEvery = 4;
    for (let i = 0; i < 16; i++) {
      if (s.timeNext()) {
        s.recordGuest(1000);
        s.record(IO, 100);
      } else s.count(IO);
    }
    const io = s.byKind.get("io")!;
    expect(io.count).toBe(16);
    expect(io.timed).toBe(4);
    expect(io.totalNs).toBe(1600);
    expect(s.guestNs).toBe(16_000);
    expect(s.exits).toBe(16);
  });

  it("timeEvery = 1 times every exit; a kind never seen is new, then not", () => {
    const s = new ExitStats();
    s.timeEvery = 1;
    expect(s.timeNext()).toBe(true);
    expect(s.timeNext()).toBe(true);
    expect(s.isNew("hlt")).toBe(true);
    s.record(HLT, 5);
    s.record(HLT, 7);
    expect(s.isNew("hlt")).toBe(false);
    expect(s.byKind.get("hlt")).toMatchObject({ count: 2, timed: 2, totalNs: 12, minNs: 5, maxNs: 7 });
    expect(() => {
      s.timeEvery = 0;
    }).toThrow(RangeError);
  });

  it("through the loop: exact counts, and every kind seen has a time even when sampling", () => {
    const loop = new ExitLoop({ io: () => undefined, intr: () => undefined, hlt: () => ({ reason: "hlt" }) });
    const script = [...Array.from({ length: 200 }, () => io("out", 0xe9, 1, [1])), intr(), hlt()];
    loop.runSync(new FakeBackend(script).createVcpu(0));
    const rows = new Map(loop.stats.rows().map((r) => [r.kind, r.stats]));
    expect(rows.get("io")?.count).toBe(200);
    expect(rows.get("intr")?.count).toBe(1);
    expect(rows.get("hlt")?.count).toBe(1);
    for (const r of rows.values()) {
      expect(r.timed).toBeGreaterThan(0);
      expect(r.minNs).toBeLessThanOrEqual(r.maxNs);
    }
    expect(rows.get("io")!.timed).toBeLessThan(200);
  });
});
