// The exit loop with several vCPUs on one thread: fixed instruction quanta, runnable() respected,
// limits over all vCPUs, and the all-asleep decision left to the machine (the allAsleep hook).

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { emptyRegs } from "../../lib/types/regs.js";
import type { VcpuBackend } from "../../lib/vmm/backend.js";
import { ExitLoop, SMP_QUANTUM, type StopRun } from "../../lib/vmm/loop.js";
import { hlt, intr, io, resetSregs } from "./fake-backend.js";

/**
 * A vCPU that runs `work` instructions, then makes `then` exit (after which it halts for good);
 * instruction budgets end an entry early as the soft backend's do.
 */
class WorkVcpu implements VcpuBackend {
  retired = 0;
  #budget: number | undefined;
  halted = false;
  /** set from outside: the vCPU may not run (waits for SIPI) */
  asleep = false;
  readonly entries: number[];

  constructor(
    readonly index: number,
    public work: number,
    readonly then: VmExit,
    entries: number[],
  ) {
    this.entries = entries;
  }

  run(): VmExit {
    this.entries.push(this.index);
    if (this.halted) return hlt();
    const n = Math.min(this.work, this.#budget ?? Number.POSITIVE_INFINITY);
    this.work -= n;
    this.retired += n;
    if (this.work > 0) return intr();
    if (this.then.kind === "hlt") this.halted = true;
    return this.then;
  }
  runnable(): boolean {
    return !this.halted && !this.asleep;
  }
  setInstructionBudget(n: number | undefined): void {
    this.#budget = n;
  }
  instructionsRetired(): number {
    return this.retired;
  }
  getRegs() {
    return emptyRegs();
  }
  setRegs(): void {}
  getSregs() {
    return resetSregs();
  }
  setSregs(): void {}
  getMsr(): bigint | undefined {
    return undefined;
  }
  setMsr(): void {}
  kick(): void {}
  close(): void {}
}

const loopWith = (onAsleep: () => StopRun | "resume" | "wait") =>
  new ExitLoop({ hlt: () => undefined, intr: () => undefined, io: () => undefined }, { allAsleep: onAsleep });

describe("ExitLoop with several vCPUs", () => {
  it("gives each runnable vCPU a quantum in turn, starting with vCPU 0, and ends when the machine says all sleep for good", () => {
    const entries: number[] = [];
    const a = new WorkVcpu(0, 2.5 * SMP_QUANTUM, hlt(), entries);
    const b = new WorkVcpu(1, 1.5 * SMP_QUANTUM, hlt(), entries);
    const loop = loopWith(() => ({ reason: "hlt" }));
    const r = loop.runSync([a, b]);
    expect(r.reason).toBe("hlt");
    // a: 20k, b: 20k, a: 20k, b: 10k + hlt (b sleeps), a: 10k + hlt
    expect(entries).toEqual([0, 1, 0, 1, 0]);
    expect(r.instructions).toBe(4 * SMP_QUANTUM);
  });

  it("keeps the current vCPU through its exits until its quantum is used", () => {
    const entries: number[] = [];
    let outs = 0;
    const a = new WorkVcpu(0, SMP_QUANTUM, hlt(), entries);
    // every entry of vCPU 0 does a little work and exits for port I/O
    const step = SMP_QUANTUM / 4;
    a.run = function (this: WorkVcpu) {
      this.entries.push(0);
      if (this.halted) return hlt();
      this.retired += step;
      if (++outs === 8) {
        this.halted = true;
        return hlt();
      }
      return io("out", 0x80, 1, [outs]);
    };
    const b = new WorkVcpu(1, 3 * SMP_QUANTUM, hlt(), entries);
    const r = loopWith(() => ({ reason: "hlt" })).runSync([a, b]);
    expect(r.reason).toBe("hlt");
    expect(entries).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1]);
  });

  it("never enters a vCPU that is not runnable, and asks the machine when none is", () => {
    const entries: number[] = [];
    const a = new WorkVcpu(0, SMP_QUANTUM / 2, hlt(), entries);
    const b = new WorkVcpu(1, SMP_QUANTUM / 2, hlt(), entries);
    b.asleep = true;
    let asked = 0;
    const r = loopWith(() => {
      asked++;
      // the first time, a device "wakes" vCPU 1; then everything is over
      if (asked === 1) {
        b.asleep = false;
        return "resume";
      }
      return { reason: "hlt", message: "all done" };
    }).runSync([a, b]);
    expect(r).toMatchObject({ reason: "hlt", message: "all done" });
    expect(entries).toEqual([0, 1]);
    expect(asked).toBe(2);
  });

  it("counts maxInstructions over all vCPUs, exactly", () => {
    const entries: number[] = [];
    const a = new WorkVcpu(0, 10 * SMP_QUANTUM, hlt(), entries);
    const b = new WorkVcpu(1, 10 * SMP_QUANTUM, hlt(), entries);
    const limit = 2 * SMP_QUANTUM + 123;
    const r = loopWith(() => ({ reason: "hlt" })).runSync([a, b], { maxInstructions: limit });
    expect(r.reason).toBe("max-instructions");
    expect(r.instructions).toBe(limit);
    expect(a.retired).toBe(SMP_QUANTUM + 123);
    expect(b.retired).toBe(SMP_QUANTUM);
  });

  it("the same vCPUs and work interleave the same way every time", () => {
    const order = () => {
      const entries: number[] = [];
      const vs = [0, 1, 2, 3].map((i) => new WorkVcpu(i, (i + 1) * 0.7 * SMP_QUANTUM, hlt(), entries));
      loopWith(() => ({ reason: "hlt" })).runSync(vs);
      return entries;
    };
    expect(order()).toEqual(order());
  });

  it("refuses several vCPUs that cannot say whether they are runnable", () => {
    const plain = { ...new WorkVcpu(0, 1, hlt(), []), runnable: undefined } as unknown as VcpuBackend;
    expect(() => loopWith(() => "wait").runSync([plain, plain])).toThrow(/soft backend/);
  });
});
