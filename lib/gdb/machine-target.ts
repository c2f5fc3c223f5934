// A Machine as a gdb target, and the run that gdb steers. While gdb is attached the guest runs in
// vm.run() segments: a breakpoint, step or watchpoint (lib/vmm/debug.ts) ends a segment with reason
// "debug", Ctrl-C with vm.stop(); the stop goes to gdb and the next segment starts when gdb
// resumes. A run that ends for any other reason (debug-exit, power-off, final HLT, limits) ends
// the debugged run too, and gdb hears that the process exited. Each vCPU (MachineDebug.vcpus) is a
// thread to gdb.

import { formatTranslation } from "../inspect/pagewalk.js";
import { formatStatsTable } from "../inspect/stats-table.js";
import { DebugError, type DebugStop, type MachineDebug } from "../vmm/debug.js";
import type { RunLimits, RunResult } from "../vmm/loop.js";
import type { Machine } from "../vmm/machine.js";
import { readVcpuRegisters, writeVcpuRegisters } from "./machine-registers.js";
import type { RegisterValues } from "./registers.js";
import { type BreakpointType, type GdbTarget, GdbTargetError, type StopEvent } from "./target.js";

const SIGINT = 2;
const SIGABRT = 6;
const SIGSEGV = 11;
const SIGTRAP = 5;
const SIGALRM = 14;
const SIGXCPU = 24;
const WATCH_KINDS = { 2: "write", 3: "read", 4: "access" } as const;
const WATCH_STOPS = { write: "watch", read: "rwatch", access: "awatch" } as const;

type Resume = "continue" | "step" | "kill";

/** What a run's end means to gdb: a stop it may resume from, or the end of the process. */
function finalEvent(r: RunResult): StopEvent {
  switch (r.reason) {
    case "hlt":
    case "debug-exit":
    case "poweroff":
    case "reset":
      return { kind: "exited", code: r.exitCode ?? 0 };
    case "shutdown":
      return { kind: "terminated", signal: SIGSEGV };
    case "timeout":
      return { kind: "terminated", signal: SIGALRM };
    case "max-exits":
    case "max-instructions":
      return { kind: "terminated", signal: SIGXCPU };
    default:
      return { kind: "terminated", signal: SIGABRT };
  }
}

function stopEvent(s: DebugStop | undefined, stepped: number): StopEvent {
  const vcpu = s?.vcpu ?? stepped;
  if (!s || s.kind === "step") return { kind: "signal", signal: SIGTRAP, vcpu };
  if (s.kind === "watch")
    return {
      kind: "signal",
      signal: SIGTRAP,
      watch: { type: WATCH_STOPS[s.watch], address: s.address },
      vcpu,
    };
  return { kind: "signal", signal: SIGTRAP, reason: s.hardware ? "hwbreak" : "swbreak", vcpu };
}

export interface MachineTargetOptions {
  /** the guest stays stopped before its first instruction until gdb resumes it */
  waitForGdb?: boolean;
  /** whether a gdb is connected now (a stop with nobody to tell resumes at once) */
  connected?: () => boolean;
}

export class MachineGdbTarget implements GdbTarget {
  readonly vm: Machine;
  readonly debug: MachineDebug;
  /** where stop events go (the server's connected session) */
  notify: (ev: StopEvent) => void = () => {};
  #state: "stopped" | "running" | "ended" = "stopped";
  #last: StopEvent = { kind: "signal", signal: SIGTRAP };
  #interrupt: number | undefined;
  #killed = false;
  #resume: ((r: Resume) => void) | undefined;
  /** the vCPU a step steps (gdb's Hc / vCont thread) */
  #stepVcpu = 0;
  /** a resume that came before the run waited for one */
  #queued: Resume | undefined;
  #haltWaiters: ((ev: StopEvent) => void)[] = [];
  /**
   * gdb left (or the server closes) while the guest ran: breakpoints go once the running segment
   * has stopped (vCPUs in threads of their own change only while parked), then the run goes on
   */
  #release: { close: boolean; done: (() => void)[] } | undefined;
  readonly #opts: MachineTargetOptions;

  constructor(vm: Machine, debug: MachineDebug, opts: MachineTargetOptions = {}) {
    this.vm = vm;
    this.debug = debug;
    this.#opts = opts;
  }

  /**
   * Runs the guest under gdb until it ends (or gdb kills it). Limits count guest time only: time
   * stopped in gdb is not part of timeoutMs.
   */
  async run(limits: RunLimits = {}): Promise<RunResult> {
    let runningMs = 0;
    let exits = 0;
    let instructions = 0;
    if (this.#opts.waitForGdb) {
      const first = await this.#nextResume();
      if (first === "kill") return this.#killedResult(exits);
      this.debug.setSingleStep(first === "step", this.#stepVcpu);
    }
    for (;;) {
      this.#state = "running";
      const segment: RunLimits = {};
      if (limits.timeoutMs !== undefined) segment.timeoutMs = Math.max(0, limits.timeoutMs - runningMs);
      if (limits.maxExits !== undefined) segment.maxExits = Math.max(0, limits.maxExits - exits);
      if (limits.maxInstructions !== undefined)
        segment.maxInstructions = Math.max(0, limits.maxInstructions - instructions);
      // a Ctrl-C (or a new gdb's halt) that came before the segment began stops it before it runs
      const r: RunResult =
        this.#interrupt !== undefined || this.#release
          ? { reason: "stopped", exits: 0, durationMs: 0 }
          : await this.vm.run(segment);
      runningMs += r.durationMs;
      exits += r.exits;
      instructions += r.instructions ?? 0;
      const stop = this.debug.takeStop();
      const interrupt = this.#interrupt;
      this.#interrupt = undefined;
      this.debug.setSingleStep(false);
      const release = this.#release;
      this.#release = undefined;
      if (release) {
        if (release.close) this.debug.close();
        else this.debug.clear();
        for (const done of release.done) done();
      }
      if (this.#killed) return this.#killedResult(exits);
      // gdb is gone: the stop is nobody's, the guest runs on
      if (release && (r.reason === "debug" || r.reason === "stopped")) continue;
      let ev: StopEvent;
      if (r.reason === "debug") ev = stopEvent(stop, this.#stepVcpu);
      else if (r.reason === "stopped" && stop) ev = stopEvent(stop, this.#stepVcpu);
      else if (r.reason === "stopped" && interrupt !== undefined)
        ev = { kind: "signal", signal: interrupt, vcpu: 0 };
      else {
        this.#state = "ended";
        this.#last = finalEvent(r);
        this.#announce(this.#last);
        return { ...r, exits, durationMs: runningMs };
      }
      this.#state = "stopped";
      this.#last = ev;
      this.#announce(ev);
      // nobody to resume us (gdb left while the stop was on its way): run on
      const next = this.#opts.connected && !this.#opts.connected() ? "continue" : await this.#nextResume();
      if (next === "kill") return this.#killedResult(exits);
      this.debug.setSingleStep(next === "step", this.#stepVcpu);
    }
  }

  #killedResult(exits: number): RunResult {
    this.#state = "ended";
    return { reason: "stopped", message: "killed by gdb", exits, durationMs: 0 };
  }

  #announce(ev: StopEvent): void {
    this.notify(ev);
    for (const w of this.#haltWaiters.splice(0)) w(ev);
  }

  #nextResume(): Promise<Resume> {
    const q = this.#queued;
    this.#queued = undefined;
    if (q) return Promise.resolve(q);
    return new Promise((resolve) => {
      this.#resume = resolve;
    });
  }

  #wake(r: Resume): void {
    if (r !== "kill") this.#state = "running";
    const w = this.#resume;
    this.#resume = undefined;
    if (w) w(r);
    else this.#queued = r;
  }

  // ---- GdbTarget ----

  halt(): Promise<StopEvent> {
    if (this.#state !== "running") return Promise.resolve(this.#last);
    return new Promise((resolve) => {
      this.#haltWaiters.push(resolve);
      this.#interrupt ??= SIGTRAP;
      this.vm.stop();
    });
  }

  threads(): number {
    return this.debug.vcpus;
  }

  /** a vCPU gdb may look at (one the debugger has: others are refused, not faked) */
  #vcpu(vcpu = 0) {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.debug.vcpus) {
      throw new GdbTargetError(`vCPU ${String(vcpu)} is not a vCPU of this machine`, 22);
    }
    return this.vm.vcpu(vcpu);
  }

  readRegisters(vcpu = 0): RegisterValues {
    return readVcpuRegisters(this.#vcpu(vcpu));
  }

  writeRegisters(values: RegisterValues, vcpu = 0): void {
    writeVcpuRegisters(this.#vcpu(vcpu), values);
  }

  readMemory(address: bigint, length: number, vcpu = 0): Uint8Array {
    this.#vcpu(vcpu);
    return this.debug.readLinear(address, length, vcpu);
  }

  writeMemory(address: bigint, data: Uint8Array, vcpu = 0): void {
    this.#vcpu(vcpu);
    try {
      this.debug.writeLinear(address, data, vcpu);
    } catch (e) {
      if (e instanceof DebugError) throw new GdbTargetError(e.message, 14);
      throw e;
    }
  }

  insertBreakpoint(type: BreakpointType, address: bigint, kind: number, vcpu = 0): boolean {
    this.#vcpu(vcpu);
    try {
      if (type === 0) {
        this.debug.insertSoftwareBreakpoint(address, false, vcpu);
        return true;
      }
      if (type === 1) {
        // where the backend has no execution breakpoints of its own (soft), an INT3 does the same exactly
        if (!this.debug.insertHardware(address, 1, "exec", vcpu))
          this.debug.insertSoftwareBreakpoint(address, true, vcpu);
        return true;
      }
      return this.debug.insertHardware(address, kind, WATCH_KINDS[type], vcpu);
    } catch (e) {
      if (e instanceof DebugError) throw new GdbTargetError(e.message, 14);
      throw e;
    }
  }

  removeBreakpoint(type: BreakpointType, address: bigint, kind: number): boolean {
    if (type === 0) return this.debug.removeSoftwareBreakpoint(address) || true;
    if (type === 1)
      return (
        this.debug.removeHardware(address, 1, "exec") || this.debug.removeSoftwareBreakpoint(address) || true
      );
    return this.debug.removeHardware(address, kind, WATCH_KINDS[type]) || true;
  }

  resume(mode: "continue" | "step", vcpu = 0): void {
    if (this.#state === "ended") {
      queueMicrotask(() => this.notify(this.#last));
      return;
    }
    this.#vcpu(vcpu);
    this.#stepVcpu = vcpu;
    this.#wake(mode);
  }

  interrupt(): void {
    if (this.#state !== "running") return;
    this.#interrupt = SIGINT;
    this.vm.stop();
  }

  detach(): void {
    if (this.#state === "running") {
      this.#releaseLater(false);
      return;
    }
    this.debug.clear();
    if (this.#state === "stopped") this.#wake("continue");
  }

  kill(): void {
    this.#killed = true;
    if (this.#state === "running") {
      this.#releaseLater(false);
      return;
    }
    this.debug.clear();
    this.#wake("kill");
  }

  /**
   * The debugger lets go of the machine (breakpoints removed, its exit handlers gone) and a run
   * waiting for gdb goes on by itself; resolves once done (while the guest runs: when the running
   * segment has stopped).
   */
  close(): Promise<void> {
    if (this.#state === "running") return this.#releaseLater(true);
    this.debug.close();
    if (this.#state === "stopped") this.#wake("continue");
    return Promise.resolve();
  }

  #releaseLater(close: boolean): Promise<void> {
    this.#release ??= { close, done: [] };
    const release = this.#release;
    release.close ||= close;
    // a closed machine's run ends by itself (its vCPUs cannot be kicked any more)
    if (!this.vm.closed) this.vm.stop();
    return new Promise((resolve) => release.done.push(resolve));
  }

  monitor(command: string, vcpu = 0): string {
    const [verb, ...rest] = command.trim().split(/\s+/);
    const v = this.#vcpu(vcpu);
    if (verb === "info" && rest[0] === "registers") return v.dump();
    if (verb === "exits") {
      const s = this.vm.stats;
      return formatStatsTable(s.rows(), { guestNs: s.guestNs, unhandled: s.unhandled });
    }
    if (verb === "translate" && rest[0]) {
      const addr = /^(0x)?[0-9a-f]+$/i.test(rest[0])
        ? BigInt(rest[0].startsWith("0x") ? rest[0] : `0x${rest[0]}`)
        : undefined;
      if (addr === undefined) return `translate: not an address: ${rest[0]}\n`;
      return `${formatTranslation(v.translate(addr))}\n`;
    }
    return "monitor commands: info registers | exits | translate ADDR\n";
  }
}
