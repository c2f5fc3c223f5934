// ExitLoop.run() with a vCPU thread (the KVM worker's contract, lib/vmm/loop.ts VcpuThread), here
// a scripted one so the loop's side runs on any host: exits are dispatched in order, an entry that
// never ends is kicked at the run's timeout, stop requests and a thread that goes away end the run.

import { describe, expect, it } from "vitest";
import type { VmExit } from "../../lib/types/exits.js";
import { ExitLoop, type StopRun, type VcpuThread } from "../../lib/vmm/loop.js";
import { FakeBackend, hlt, intr, io } from "./fake-backend.js";

/**
 * "hang": the entry ends only when kicked (a guest spinning in KVM_RUN); "slow": it ends 30 ms after
 * the first kick (a thread busy elsewhere when the signal lands).
 */
type Entry = VmExit | "hang" | "slow";

class ScriptedThread implements VcpuThread {
  closed = false;
  kicks = 0;
  entries = 0;
  refs = 0;
  #done = false;
  #exit: VmExit | undefined;
  #onDone: (() => void) | undefined;
  constructor(readonly script: Entry[]) {}
  begin(): void {
    this.refs++;
  }
  end(): void {
    this.refs--;
  }
  #slow = false;
  start(): void {
    const next = this.script[this.entries++];
    if (next === undefined) throw new Error("script exhausted");
    this.#slow = next === "slow";
    this.#done = next !== "hang" && next !== "slow";
    this.#exit = typeof next === "string" ? undefined : next;
  }
  poll(): boolean {
    return this.#done;
  }
  wait(ms: number): Promise<boolean> {
    if (this.#done) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#onDone = undefined;
        resolve(false);
      }, ms);
      this.#onDone = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }
  exit(): VmExit {
    if (!this.#done || !this.#exit) throw new Error("no ended entry");
    return this.#exit;
  }
  kick(): void {
    this.kicks++;
    if (this.#done) return;
    if (this.#slow) {
      this.#slow = false;
      setTimeout(() => this.#finishKick(), 30);
      return;
    }
    this.#finishKick();
  }
  #finishKick(): void {
    this.#done = true;
    this.#exit = intr();
    this.#onDone?.();
  }
  /** the thread ends while an entry is in progress (machine.close()) */
  close(): void {
    this.closed = true;
    this.kick();
  }
}

const vcpu = () => new FakeBackend([]).createVcpu(0);

describe("ExitLoop with a vCPU thread", () => {
  it("a run past its deadline kicks a slow entry once and waits for it, not in a loop", async () => {
    const loop = new ExitLoop({ intr: () => undefined, hlt: () => ({ reason: "hlt" }) });
    const thread = new ScriptedThread(["slow", hlt()]);
    loop.vcpuThread = thread;
    const r = await loop.run(vcpu(), { timeoutMs: 5 });
    expect(r.reason).toBe("timeout");
    expect(thread.kicks).toBe(1);
  });

  it("dispatches the thread's exits in order on this thread until a handler stops", async () => {
    const seen: string[] = [];
    const loop = new ExitLoop({
      io: (e) => void seen.push(`io ${e.port}`),
      intr: () => void seen.push("intr"),
      hlt: () => ({ reason: "hlt" }),
    });
    const thread = new ScriptedThread([
      io("out", 0xe9, 1, [0x41]),
      intr(),
      io("out", 0x80, 1, [1]),
      hlt(),
      intr(),
    ]);
    loop.vcpuThread = thread;
    const r = await loop.run(vcpu());
    expect(seen).toEqual(["io 233", "intr", "io 128"]);
    expect(r.reason).toBe("hlt");
    expect(r.exits).toBe(4);
    expect(thread.entries).toBe(4);
    expect(thread.refs).toBe(0);
  });

  it("an entry that never ends is kicked, and the run ends at its timeout", async () => {
    const loop = new ExitLoop({ intr: () => {} });
    const thread = new ScriptedThread(Array<Entry>(1000).fill("hang"));
    loop.vcpuThread = thread;
    const r = await loop.run(vcpu(), { timeoutMs: 30 });
    expect(r.reason).toBe("timeout");
    expect(thread.kicks).toBeGreaterThanOrEqual(1);
    // every entry that started was ended (kicked) and handled before the run returned
    expect(r.exits).toBe(thread.entries);
  });

  it("the event loop runs during an entry: a timer's stop request ends the run", async () => {
    let stop: StopRun | undefined;
    const loop = new ExitLoop({ intr: () => {} }, { pendingStop: () => stop });
    const thread = new ScriptedThread(Array<Entry>(1000).fill("hang"));
    loop.vcpuThread = thread;
    setTimeout(() => {
      stop = { reason: "stopped", message: "by the timer" };
      thread.kick();
    }, 10);
    const r = await loop.run(vcpu());
    expect(r.reason).toBe("stopped");
    expect(r.message).toBe("by the timer");
  });

  it("a thread that goes away during an entry ends the run as stopped", async () => {
    const loop = new ExitLoop({ intr: () => {} });
    const thread = new ScriptedThread(["hang"]);
    loop.vcpuThread = thread;
    setTimeout(() => thread.close(), 10);
    const r = await loop.run(vcpu());
    expect(r.reason).toBe("stopped");
    expect(r.message).toMatch(/closed/);
    expect(thread.refs).toBe(0);
  });
});
