// ExitLoop runs of several vCPUs on threads of their own (lib/vmm/loop-threads.ts, KVM SMP), here
// over scripted threads so that the loop's side runs on any host: every vCPU's exits are
// dispatched with its index, a run ends with every vCPU parked (the others kicked out of the guest,
// their exits handled), timeouts / stop requests / a closed machine / a failing handler end it,
// and a run whose vCPUs never exit is parked and looked at (the "hlt" decision of the machine).

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { ExitLoop, type LoopHooks, type StopRun } from "../../lib/vmm/loop.js";
import type { VcpuThreads } from "../../lib/vmm/loop-threads.js";
import { FakeVcpu, intr, io } from "./fake-backend.js";

/** "hang": the entry ends only when kicked (a guest computing or halted in KVM_RUN) */
type Entry = VmExit | "hang";

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Scripted vCPU threads: an entry ends at once with its script's next exit (the doorbell rings),
 * or hangs until kicked. `halted[i]` is what the machine would read of vCPU i once parked.
 */
class ScriptedThreads implements VcpuThreads {
  closed = false;
  refs = 0;
  #bell = 0;
  readonly inRun: boolean[];
  readonly done: boolean[];
  readonly current: (VmExit | undefined)[];
  readonly kicks: number[];
  readonly starts: number[];
  readonly pendingKick: boolean[];
  readonly halted: boolean[];
  readonly #pos: number[];
  /** after this many doorbell waits, call it (e.g. stop() from "another thread") */
  onWait: ((waits: number) => void) | undefined;
  waits = 0;

  constructor(readonly scripts: Entry[][]) {
    const n = scripts.length;
    this.inRun = Array(n).fill(false);
    this.done = Array(n).fill(false);
    this.current = Array(n).fill(undefined);
    this.kicks = Array(n).fill(0);
    this.starts = Array(n).fill(0);
    this.pendingKick = Array(n).fill(false);
    this.halted = Array(n).fill(false);
    this.#pos = Array(n).fill(0);
  }
  get count(): number {
    return this.scripts.length;
  }
  begin(): void {
    this.refs++;
  }
  end(): void {
    this.refs--;
  }
  bell(): number {
    return this.#bell;
  }
  #ring(): void {
    this.#bell++;
  }
  waitSync(seen: number, ms: number): boolean {
    this.onWait?.(++this.waits);
    if (this.#bell !== seen) return true;
    sleepSync(Math.min(ms, 20));
    return this.#bell !== seen;
  }
  async wait(seen: number, ms: number): Promise<boolean> {
    this.onWait?.(++this.waits);
    if (this.#bell !== seen) return true;
    await new Promise((r) => setTimeout(r, Math.min(ms, 20)));
    return this.#bell !== seen;
  }
  start(i: number): void {
    if (this.inRun[i]) throw new Error(`vCPU ${i} started twice`);
    this.inRun[i] = true;
    this.starts[i]!++;
    if (this.pendingKick[i]) {
      this.pendingKick[i] = false;
      this.#end(i, intr());
      return;
    }
    const next = this.scripts[i]![this.#pos[i]!] ?? "hang";
    if (this.#pos[i]! < this.scripts[i]!.length) this.#pos[i]!++;
    if (next === "hang") {
      this.done[i] = false;
      this.current[i] = undefined;
    } else this.#end(i, next);
  }
  #end(i: number, exit: VmExit): void {
    this.done[i] = true;
    this.current[i] = exit;
    this.#ring();
  }
  inEntry(i: number): boolean {
    return this.inRun[i]!;
  }
  ended(i: number): boolean {
    return this.done[i]!;
  }
  exit(i: number): VmExit {
    if (!this.inRun[i] || !this.done[i]) throw new Error(`vCPU ${i} has no exit to take`);
    this.inRun[i] = false;
    this.done[i] = false;
    return this.current[i]!;
  }
  kick(i: number): void {
    this.kicks[i]!++;
    if (this.inRun[i] && !this.done[i]) this.#end(i, intr());
    else this.pendingKick[i] = true;
  }
  allParked(): boolean {
    return this.inRun.every((r) => !r);
  }
}

interface Seen {
  vcpu: number;
  kind: string;
  port?: number;
  parked: boolean;
}

/** A loop over `n` fake vCPUs and the threads; hooks as the machine's (refineExit: "hlt" when all halted). */
function setup(scripts: Entry[][], extra: LoopHooks = {}) {
  const threads = new ScriptedThreads(scripts);
  const vcpus = scripts.map((_, i) => new FakeVcpu(i, []));
  const seen: Seen[] = [];
  let pending: StopRun | undefined;
  const loop = new ExitLoop(
    {
      io: (exit, ctx) => {
        if (exit.port === 0xf4) return { reason: "debug-exit", exitCode: ctx.vcpuIndex };
        return undefined;
      },
      intr: () => undefined,
      hlt: () => ({ reason: "hlt" }),
    },
    {
      refineExit: (exit) =>
        exit.kind === "intr" && threads.allParked() && threads.halted.every(Boolean)
          ? { kind: "hlt", raw: exit.raw }
          : exit,
      afterExit: (exit, ctx) => {
        seen.push({
          vcpu: ctx.vcpuIndex,
          kind: exit.kind,
          ...(exit.kind === "io" ? { port: exit.port } : {}),
          parked: !threads.inRun[ctx.vcpuIndex],
        });
      },
      pendingStop: () => {
        const p = pending;
        pending = undefined;
        return p;
      },
      ...extra,
    },
  );
  loop.vcpuThreads = threads;
  const stop = (s: StopRun = { reason: "stopped", message: "stopped by the host" }) => {
    pending ??= s;
    for (let i = 0; i < threads.count; i++) threads.kick(i);
  };
  return { loop, threads, vcpus, seen, stop };
}

const out = (port: number) => io("out", port, 1, [0]);

describe.each(["sync", "async"] as const)("ExitLoop on vCPU threads (%s)", (mode) => {
  const run = (s: ReturnType<typeof setup>, limits = {}) =>
    mode === "sync" ? Promise.resolve(s.loop.runSync(s.vcpus, limits)) : s.loop.run(s.vcpus, limits);

  it("dispatches each vCPU's exits with its index; a handler's stop parks the others first", async () => {
    const s = setup([
      [out(0x10), out(0x11), out(0x12), "hang"],
      [out(0x20), out(0x21), "hang"],
    ]);
    s.threads.scripts[0]![3] = out(0xf4); // vCPU 0 ends the run after its three exits
    const r = await run(s);
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(0); // the stop came from vCPU 0's handler
    expect(r.exit).toMatchObject({ kind: "io", port: 0xf4 });
    const ports = (v: number) => s.seen.filter((e) => e.vcpu === v && e.kind === "io").map((e) => e.port);
    expect(ports(0)).toEqual([0x10, 0x11, 0x12, 0xf4]);
    expect(ports(1)).toEqual([0x20, 0x21]);
    // vCPU 1 hung in the guest: it was kicked and its interrupted entry handled before the run ended
    expect(s.threads.kicks[1]).toBeGreaterThanOrEqual(1);
    expect(s.seen.filter((e) => e.vcpu === 1).at(-1)?.kind).toBe("intr");
    expect(s.threads.allParked()).toBe(true);
    expect(r.exits).toBe(s.seen.length);
    expect(s.threads.refs).toBe(0);
  });

  it("a vCPU's exits do not wait behind a busy one: both are served while neither stops", async () => {
    const many = (port: number) => Array.from({ length: 50 }, () => out(port));
    const s = setup([many(0x10), [...many(0x20), out(0xf4)]]);
    const r = await run(s);
    expect(r.reason).toBe("debug-exit");
    expect(r.exitCode).toBe(1);
    const order = s.seen.filter((e) => e.kind === "io").map((e) => e.vcpu);
    // vCPU 1's 51st exit ends the run; vCPU 0's exits were handled alongside, not all before or after
    expect(order.filter((v) => v === 1)).toHaveLength(51);
    expect(order.slice(0, 10)).toContain(1);
    expect(order.slice(0, 10)).toContain(0);
  });

  it("a timeout kicks every vCPU out of the guest and ends with all of them parked", async () => {
    const s = setup([["hang"], ["hang"], ["hang"]]);
    const r = await run(s, { timeoutMs: 120 });
    expect(r.reason).toBe("timeout");
    expect(s.threads.kicks.every((k) => k >= 1)).toBe(true);
    expect(s.threads.allParked()).toBe(true);
  });

  it("vCPUs that never exit are parked and looked at: all halted for good ends the run as hlt", async () => {
    const s = setup([["hang"], ["hang"]]);
    s.threads.halted.fill(true);
    const r = await run(s, { timeoutMs: 10_000 });
    expect(r.reason).toBe("hlt");
    expect(r.exit?.kind).toBe("hlt");
    expect(s.threads.allParked()).toBe(true);
  });

  it("a look that finds a vCPU able to run puts every vCPU back into the guest", async () => {
    const s = setup([
      ["hang", "hang", "hang"],
      ["hang", "hang", "hang"],
    ]);
    s.threads.halted[0] = true; // vCPU 1 is still running: no hlt
    const r = await run(s, { timeoutMs: 400 });
    expect(r.reason).toBe("timeout");
    // parked for a look (kicked, an intr exit each) and started again at least once
    expect(s.threads.starts[0]).toBeGreaterThanOrEqual(2);
    expect(s.threads.starts[1]).toBeGreaterThanOrEqual(2);
    expect(s.seen.some((e) => e.kind === "hlt")).toBe(false);
  });

  it("stop() while the vCPUs run ends the run as stopped", async () => {
    const s = setup([["hang"], ["hang"]]);
    s.threads.onWait = (n) => {
      if (n === 2) s.stop();
    };
    const r = await run(s, { timeoutMs: 10_000 });
    expect(r.reason).toBe("stopped");
    expect(s.threads.allParked()).toBe(true);
  });

  it("a stop asked for before the run ends it before any vCPU enters", async () => {
    const s = setup([[out(0x10)], [out(0x20)]]);
    s.stop();
    const r = await run(s);
    expect(r.reason).toBe("stopped");
    expect(s.threads.starts).toEqual([0, 0]);
  });

  it("maxExits counts the exits of all vCPUs", async () => {
    const s = setup([
      Array.from({ length: 20 }, () => out(0x10)),
      Array.from({ length: 20 }, () => out(0x20)),
    ]);
    const r = await run(s, { maxExits: 7 });
    expect(r.reason).toBe("max-exits");
    expect(r.exits).toBeGreaterThanOrEqual(7);
    expect(s.threads.allParked()).toBe(true);
  });

  it("a handler that throws ends the run as error, the other vCPUs parked", async () => {
    const s = setup([[out(0x66)], ["hang"]]);
    s.loop.setHandler("io", () => {
      throw new Error("device on fire");
    });
    const r = await run(s);
    expect(r.reason).toBe("error");
    expect(r.message).toContain("device on fire");
    expect(s.threads.allParked()).toBe(true);
  });

  it("threads that close during the run (the machine closed) end it as stopped", async () => {
    const s = setup([["hang"], ["hang"]]);
    s.threads.onWait = (n) => {
      if (n === 2) s.threads.closed = true;
    };
    const r = await run(s, { timeoutMs: 10_000 });
    expect(r.reason).toBe("stopped");
    expect(r.message).toContain("closed");
  });
});

describe("ExitLoop on vCPU threads: the event loop", () => {
  it("an async run leaves the event loop free: a timer's stop() ends a run of vCPUs that never exit", async () => {
    const s = setup([["hang"], ["hang"]]);
    setTimeout(() => s.stop(), 30);
    const r = await s.loop.run(s.vcpus, { timeoutMs: 20_000 });
    expect(r.reason).toBe("stopped");
  });

  it("one vCPU, or threads for another count of vCPUs, take the usual path", () => {
    const s = setup([["hang"], ["hang"]]);
    const one = new FakeVcpu(0, [out(0xf4)]);
    const r = s.loop.runSync(one);
    expect(r.reason).toBe("debug-exit");
    expect(s.threads.starts).toEqual([0, 0]);
  });
});
