// A soft vCPU in a worker thread: its logical processor, VMCS and interpreter live here, over the
// machine's host-physical memory (SharedArrayBuffers), so that the guest runs while the machine's
// thread (the exit loop, devices, the user's handlers) stays free. Each command of the machine's
// thread (threads.ts) is served here in turn: "run" enters the guest until the next exit the machine
// must see; calls read and write the vCPU's state while it is parked. The interrupt controller and
// the local APIC stay on the machine's thread: the vCPU sees the pending-interrupt word it keeps, and
// asks there for the vector (INTA) and for APIC registers it reaches through MSRs and CR8.

import { isMainThread, receiveMessageOnPort, workerData } from "node:worker_threads";
import type { Interpreter } from "../../../cpu/index.js";
import type { VmExit } from "../../../types/exits.js";
import { HostMemory } from "../../../vmx/host-memory.js";
import { ExitReason } from "../../../vmx/index.js";
import type { ApicMsrAccess, InterruptController } from "../../backend.js";
import { MachineClock } from "../../clock.js";
import { GuestMemory } from "../../memory.js";
import { waitForChangeSync } from "../../wait-word.js";
import { readFastRun, writeFastExit } from "./thread-codec.js";
import {
  APIC_BASE_I64,
  APIC_SHADOW,
  APIC_SHADOWED_REGS,
  bump,
  CONTROL_WORDS,
  type Command,
  type Completion,
  type EntryLimits,
  F64_RETIRED,
  IRQ_EOIS_MASK,
  IRQ_EOIS_SHIFT,
  IRQ_FAST,
  IRQ_TAKEN,
  type RequestOp,
  SIGNAL_INIT,
  SIGNAL_NMI,
  SIGNAL_SIPI,
  SLEEP_FOR_GOOD,
  SLEEP_HALTED,
  SLEEP_HELD,
  SLEEP_NONE,
  TSC_OFFSET_I64,
  type VcpuWorkerData,
  W,
  type WorkerMessage,
  wireError,
} from "./thread-protocol.js";
import { SoftVcpu } from "./vcpu.js";

const APIC_BASE_MSR = 0x1b;
/** IA32_APIC_BASE.EN */
const APIC_EN = 1n << 11n;
const APIC_EOI_OFFSET = 0xb0;
const X2APIC_EOI_MSR = 0x80b;

/** what the machine's thread may call on a parked vCPU (VcpuBackend's methods, and the debugger's) */
const CALLS = new Set([
  "getRegs",
  "setRegs",
  "getSregs",
  "setSregs",
  "getMsr",
  "setMsr",
  "runnable",
  "takeYield",
  "invalidateCode",
  // snapshots (saved-state.ts): the state as plain data, which crosses threads as it is
  "captureSoftState",
  "applySoftState",
  "mmioInFlight",
  // the debugger's (lib/vmm/debug-soft.ts), made while the vCPU is parked
  "setDebugControls",
  "exitVector",
  "reflectBreakpoint",
  "attachHostChunks",
]);

/** how long one wait lasts before looking again (a terminated worker leaves at the next look) */
const WAIT_SLICE_MS = 1000;

export function serveVcpu(data: VcpuWorkerData): void {
  const words = new Int32Array(data.control, 0, CONTROL_WORDS);
  const wide = new BigInt64Array(data.control);
  const floats = new Float64Array(data.control);
  const bell = new Int32Array(data.doorbell);
  const port = data.port;
  const post = (m: WorkerMessage): void => port.postMessage(m);
  const ring = (): void => {
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  };

  const host = new HostMemory({ firstHpa: data.firstHpa });
  host.attach(data.chunks);
  const guest = new GuestMemory();
  for (const r of data.ram) guest.addRegion(r.gpa, host.view(r.hpa, r.size));

  let vcpu: SoftVcpu | undefined;
  const publish = (): void => {
    if (!vcpu) return;
    const cpu = vcpu.lp.cpu as { tscOffset?: bigint };
    wide[TSC_OFFSET_I64] = BigInt.asIntN(64, cpu.tscOffset ?? 0n);
    floats[F64_RETIRED] = vcpu.instructionsRetired();
    // the interpreter's copy: the vCPU's own getMsr would ask the APIC, i.e. this thread's requests
    wide[APIC_BASE_I64] = BigInt.asIntN(64, vcpu.lp.cpu.getMsr(APIC_BASE_MSR) ?? 0n);
  };

  /** the APIC registers the machine's thread keeps here, and the EOIs posted to it (APIC_SHADOW) */
  const shadow = new Int32Array(data.apicShadow);

  let requests = 0;
  /** asks the machine's thread (where the interrupt controller is) and waits for its answer */
  const request = (op: RequestOp, args: unknown[] = []): unknown => {
    publish();
    post({ t: "request", op, args });
    requests = bump(words, W.REQUEST);
    // the machine's thread may be waiting for a call's DONE, or for the doorbell of a run
    Atomics.notify(words, W.DONE);
    ring();
    for (let r = Atomics.load(words, W.REPLIED); r !== requests; r = Atomics.load(words, W.REPLIED)) {
      Atomics.wait(words, W.REPLIED, r, WAIT_SLICE_MS);
    }
    const m = receiveMessageOnPort(port)?.message as WorkerMessage | undefined;
    if (m?.t !== "reply") throw new Error(`vCPU ${data.index}: no reply to ${op}`);
    if (m.error) throw new Error(`${op}: ${m.error.message}`);
    return m.ok;
  };

  let attached = false;
  const apic: ApicMsrAccess = {
    get attached() {
      // attaching is for good: asked until it is true
      attached ||= request("apic-attached") === true;
      return attached;
    },
    readMsr: (index) => request("apic-read-msr", [index]) as bigint | undefined,
    writeMsr: (index, value) => {
      // the x2APIC EOI register takes only 0 (else #GP, which the APIC decides)
      if (index === X2APIC_EOI_MSR && value === 0n && Atomics.load(shadow, APIC_SHADOW.X2APIC) === 1) {
        if (Atomics.load(shadow, APIC_SHADOW.POST) === 1) {
          postEoi();
          return true;
        }
      }
      return request("apic-write-msr", [index, value]) === true;
    },
    get x2apic() {
      return request("apic-x2apic") === true;
    },
    setX2apic: (on) => {
      request("apic-set-x2apic", [on]);
    },
    // the machine's thread reads the TSC from the clock and the offset published here
    tsc: undefined,
  };
  const interrupts: InterruptController | undefined = data.interrupts
    ? {
        setIrq: () => {
          throw new Error("interrupt lines are raised on the machine's thread");
        },
        hasInterrupt: () => {
          const w = Atomics.load(words, W.IRQ);
          // a vector taken without asking is pending no more (the machine's thread publishes the next)
          return w !== 0 && (w & IRQ_TAKEN) === 0;
        },
        acknowledge: () => {
          const w = Atomics.load(words, W.IRQ);
          if ((w & IRQ_FAST) !== 0 && apicEnabled()) {
            // taken here, after the EOIs posted so far: the machine's thread applies them in that order
            const eois = Atomics.load(shadow, APIC_SHADOW.EOIS) & IRQ_EOIS_MASK;
            const taken = IRQ_TAKEN | (w & 0xff) | (eois << IRQ_EOIS_SHIFT);
            if (Atomics.compareExchange(words, W.IRQ, w, taken) === w) {
              ring();
              return w & 0xff;
            }
          }
          // the 8259's vector, or the word changed meanwhile: the controller answers
          return request("acknowledge") as number;
        },
        taskPriority: {
          get: () => request("tpr-get") as number,
          set: (value) => {
            request("tpr-set", [value]);
          },
        },
        apicMsrs: apic,
      }
    : undefined;

  const apicEnabled = (): boolean => ((vcpu!.lp.cpu.getMsr(APIC_BASE_MSR) ?? 0n) & APIC_EN) !== 0n;
  /** an EOI the machine's thread applies before anything else from this vCPU (APIC_SHADOW) */
  const postEoi = (): void => {
    Atomics.add(shadow, APIC_SHADOW.EOIS, 1);
    ring();
  };
  /** the guest's write of the xAPIC EOI register (an aligned dword, as LocalApic.write takes it) */
  const localMmioWrite = (gpa: number, size: number): boolean => {
    if (size !== 4 || Atomics.load(shadow, APIC_SHADOW.VALID) === 0) return false;
    if (Atomics.load(shadow, APIC_SHADOW.POST) === 0 || !apicEnabled()) return false;
    if (gpa - (Atomics.load(shadow, APIC_SHADOW.BASE) >>> 0) !== APIC_EOI_OFFSET) return false;
    postEoi();
    return true;
  };
  const shadowed = new Uint8Array(64);
  for (const reg of APIC_SHADOWED_REGS) shadowed[reg >> 4] = 1;
  /**
   * The guest reads its xAPIC page: registers only this CPU changes come from the copy the
   * machine's thread keeps current (APIC_SHADOWED_REGS), sized and aligned as LocalApic.read takes
   * them; anything else (a disabled or x2APIC-mode APIC, IRR/ISR/PPR, the timer's count, odd
   * sizes) exits as before
   */
  const localMmioRead = (gpa: number, size: number): number | undefined => {
    if (Atomics.load(shadow, APIC_SHADOW.VALID) === 0) return undefined;
    const offset = gpa - (Atomics.load(shadow, APIC_SHADOW.BASE) >>> 0);
    if (offset < 0 || offset >= 0x1000 || (size !== 1 && size !== 2 && size !== 4)) return undefined;
    if ((offset & (size - 1)) !== 0 || shadowed[(offset >> 4) & 0xff] !== 1) return undefined;
    // IA32_APIC_BASE.EN as this CPU has it now (a disabled APIC's page reads all-ones); EXTD is
    // the APIC's own (VALID is clear in x2APIC mode)
    if (!apicEnabled()) return undefined;
    // bytes 4-15 of a register read as zero
    if ((offset & 0xc) !== 0) return 0;
    const v = Atomics.load(shadow, offset >> 4) >>> 0;
    if (size === 4) return v;
    return (v >>> ((offset & 3) * 8)) & (size === 1 ? 0xff : 0xffff);
  };

  vcpu = new SoftVcpu(
    data.index,
    {
      memory: host,
      ept: { eptp: data.eptp },
      ioBitmapA: data.ioBitmapA,
      ioBitmapB: data.ioBitmapB,
      msrBitmap: data.msrBitmap,
      interrupts,
      guestMemory: guest,
      ...(data.clock ? { clock: new MachineClock(data.clock) } : {}),
      vcpus: data.vcpus,
      ownThreads: true,
      ...(data.interrupts ? { localMmioRead, localMmioWrite } : {}),
    },
    { kickWord: words.subarray(W.KICK, W.KICK + 1) },
  );
  const v = vcpu;
  if (data.smp) (v.lp.cpu as Interpreter).attachSharedMemory(data.smp, data.index);

  /** INIT, NMI and SIPI that arrived from the APIC bus since the last look */
  const takeSignals = (): void => {
    const s = Atomics.exchange(words, W.SIGNALS, 0);
    if (s === 0) return;
    // the sender waits for this (SoftThreadVcpu.signal)
    Atomics.notify(words, W.SIGNALS);
    if (s & SIGNAL_INIT) v.signal("init");
    if (s & SIGNAL_NMI) v.signal("nmi");
    if (s & SIGNAL_SIPI) v.signal("sipi", (s >>> 8) & 0xff);
  };

  let lastExit: VmExit | undefined;
  /** the last entry ended in HLT and the machine took it (it only re-enters to wait) */
  let reportedHlt = false;
  /** instructionsRetired() when that HLT was reported: a HLT after the guest ran again is news */
  let reportedAt = -1;
  /** the entry deadline in this thread's performance.now() time */
  let deadline: number | undefined;

  const complete = (c: Completion | undefined): void => {
    if (!c || !lastExit) return;
    const e = lastExit as { data?: Uint8Array; ret?: bigint };
    if (c.data && e.data) e.data.set(c.data.subarray(0, e.data.length));
    if (c.ret !== undefined) e.ret = c.ret;
  };

  const interruptsEnabled = (): boolean => (v.getRegs().rflags & 0x200n) !== 0n;
  const sleepWord = (state: number): void => {
    Atomics.store(words, W.SLEEP, state);
  };

  /**
   * Sleeps while the vCPU cannot run (halted, or waiting for SIPI) until a kick, an interrupt it
   * takes, a signal, 50 ms, or the entry's end; true when it may run again (or must exit: kicked).
   */
  const sleep = (): boolean => {
    const end = Math.min(deadline ?? Number.POSITIVE_INFINITY, performance.now() + 50);
    for (;;) {
      if (Atomics.load(words, W.KICK) !== 0 || Atomics.load(words, W.SIGNALS) !== 0) return true;
      if (v.runnable()) return true;
      const left = end - performance.now();
      if (left <= 0) return false;
      Atomics.wait(words, W.KICK, 0, left);
    }
  };

  /**
   * Held by a debugger (W.HELD): waits, running nothing, until released (true), or until a kick
   * asks the entry to end, at once in an entry with bounds (false). Signals are taken meanwhile
   * (their senders wait for that), and the machine's thread is told the vCPU is out of the guest.
   */
  const awaitRelease = (): boolean => {
    sleepWord(SLEEP_HELD);
    Atomics.notify(words, W.SLEEP);
    for (;;) {
      // cleared before the looks below, so that a kick after them wakes the wait
      Atomics.store(words, W.KICK, 0);
      takeSignals();
      if (Atomics.load(words, W.HELD) === 0) return true;
      if (Atomics.exchange(words, W.STOP, 0) !== 0 || !unbounded) return false;
      Atomics.wait(words, W.KICK, 0, WAIT_SLICE_MS);
    }
  };
  /** an entry that ended without running the guest (held, then kicked): a host interrupt, as a kick's */
  const heldExit: VmExit = {
    kind: "intr",
    raw: {
      backend: "soft",
      reason: ExitReason.ExternalInterrupt,
      exitReasonField: ExitReason.ExternalInterrupt,
      qualification: 0n,
      instructionLength: 0,
    },
  };
  /** W.INVEPT as last applied */
  let eptSeen = Atomics.load(words, W.INVEPT);

  /** one entry, as the machine sees it: the vCPU's run(), with HLT waited out here as a CPU does */
  const enter = (): VmExit => {
    for (;;) {
      takeSignals();
      // published before the hold is looked at: a machine's thread that holds the vCPU after
      // this look waits until the thread says it is held (SoftThreadVcpu.held)
      sleepWord(SLEEP_NONE);
      if (Atomics.load(words, W.HELD) !== 0) {
        if (!awaitRelease()) return heldExit;
        continue;
      }
      // released: runnable() (the HLT and SIPI waits below) is the guest's own again
      v.held = false;
      const ept = Atomics.load(words, W.INVEPT);
      if (ept !== eptSeen) {
        eptSeen = ept;
        v.flushEpt();
      }
      const exit = v.run();
      // in an unbounded entry only a kick ends the guest's run: one that does not ask for a stop
      // (an interrupt or a signal arrived) is for the vCPU itself, which takes it and runs on
      if (exit.kind === "intr" && unbounded && Atomics.exchange(words, W.STOP, 0) === 0) {
        if (data.vcpus > 1 && Atomics.load(words, W.KICK) === 0 && !v.runnable()) {
          // an AP waiting for SIPI: the entry returns at once; it sleeps here, not in a loop of exits
          sleepWord(SLEEP_FOR_GOOD);
          if (!sleep()) return exit;
        }
        continue;
      }
      if (exit.kind !== "hlt") {
        reportedHlt = false;
        return exit;
      }
      // published before the HLT reaches the machine, whose halt checks read it for running vCPUs
      sleepWord(interruptsEnabled() ? SLEEP_HALTED : SLEEP_FOR_GOOD);
      // a HLT goes to the machine (it may end the run, or jump guest time to its next device
      // deadline, as it does for a vCPU on its own thread) unless it was just reported and the
      // guest has not run since; one that only a lone vCPU with interrupts disabled is in, always
      const work = v.instructionsRetired();
      if (!reportedHlt || work !== reportedAt || (data.vcpus === 1 && !interruptsEnabled())) {
        reportedHlt = true;
        reportedAt = work;
        return exit;
      }
      // halted again: sleep; one vCPU of several reports the HLT again after a while, so that the
      // machine looks again whether every vCPU is halted for good (their states change meanwhile)
      if (!sleep()) return data.vcpus > 1 ? exit : { kind: "intr", raw: exit.raw };
    }
  };

  /** no instruction budget and no deadline: the entry ends only when the machine kicks it */
  let unbounded = false;
  let budgeted = false;
  const applyLimits = (l: EntryLimits): void => {
    if (l.budget) {
      v.setInstructionBudget(l.budget.n);
      budgeted = l.budget.n !== undefined;
    }
    if (l.deadline) {
      // sent as epoch milliseconds: each thread's performance.now() has its own origin
      const at = l.deadline.at;
      deadline = at === undefined || !Number.isFinite(at) ? at : at - performance.timeOrigin;
      v.setEntryDeadline(deadline);
    }
    unbounded = !budgeted && deadline === Number.POSITIVE_INFINITY;
  };

  const call = (name: string, args: unknown[]): unknown => {
    if (!CALLS.has(name)) throw new Error(`unknown vCPU call ${name}`);
    const fn = (v as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;
    return fn.apply(v, args);
  };

  let done = 0;
  publish();
  post({ t: "ready" });
  for (;;) {
    if (!waitForChangeSync(words, W.CMD, done, WAIT_SLICE_MS)) continue;
    const m: Command | undefined =
      Atomics.load(words, W.CMD_FAST) === 1
        ? { op: "run", ...readFastRun(words) }
        : (receiveMessageOnPort(port)?.message as Command | undefined);
    if (!m) continue;
    done = (done + 1) | 0;
    takeSignals();
    applyLimits(m.limits);
    if (m.op === "run") {
      try {
        complete(m.completion);
        lastExit = enter();
        publish();
        // in the block's words where it fits (thread-codec.ts), else a message
        const fast = writeFastExit(words, lastExit);
        Atomics.store(words, W.EXIT_FAST, fast ? 1 : 0);
        if (!fast) post({ t: "exit", exit: lastExit });
      } catch (e) {
        lastExit = undefined;
        publish();
        Atomics.store(words, W.EXIT_FAST, 0);
        post({ t: "exit-error", error: wireError(e) });
      }
      Atomics.store(words, W.DONE, done);
      bump(words, W.EXIT);
      ring();
    } else {
      try {
        // runnable() of a held vCPU is false (SoftVcpu.held), as on the machine's thread
        v.held = Atomics.load(words, W.HELD) !== 0;
        post({ t: "reply", ok: call(m.name, m.args) });
      } catch (e) {
        post({ t: "reply", error: wireError(e) });
      }
      publish();
      Atomics.store(words, W.DONE, done);
      Atomics.notify(words, W.DONE);
    }
  }
}

if (!isMainThread && (workerData as { nodevmmSoftVcpu?: VcpuWorkerData } | null)?.nodevmmSoftVcpu) {
  const data = (workerData as { nodevmmSoftVcpu: VcpuWorkerData }).nodevmmSoftVcpu;
  try {
    serveVcpu(data);
  } catch (e) {
    // a vCPU that cannot start says why, and the machine's waits see it at once
    data.port.postMessage({ t: "failed", error: wireError(e) } satisfies WorkerMessage);
    const words = new Int32Array(data.control, 0, CONTROL_WORDS);
    bump(words, W.FAILED);
    Atomics.notify(words, W.DONE);
    const bell = new Int32Array(data.doorbell);
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  }
}
