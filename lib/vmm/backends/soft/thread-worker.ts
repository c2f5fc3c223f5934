// A pool worker: one logical processor that runs soft vCPUs, one at a time, over the machine's
// host-physical memory (SharedArrayBuffers), so that the guest runs while the machine's thread
// (the exit loop, devices, the user's handlers) stays free. The machine's thread (threads.ts,
// threads-pool.ts) posts commands to a vCPU and rings the bell of the worker the vCPU is on: "run"
// enters the guest until the next exit the machine must see; calls read and write the vCPU's state
// while it is parked. A vCPU arrives with a message (its state as data, its VMCS in its region)
// and leaves (VMCLEAR, its state posted back) when the machine places another vCPU here. Each vCPU
// has interpreters of its own, so nothing cached for one vCPU's guest (TLB, decoded and compiled
// blocks) serves another's, as a real processor tags its TLB with the VPID: the worker keeps the
// interpreter of a vCPU that leaves (a few vCPUs' worth, the least recently used going first) and
// takes it up again when the vCPU comes back, its translations dropped, its blocks each checked
// against guest memory before they run, its state the one that travelled (vcpu-context.ts
// keptForArrival). With as many workers as vCPUs each vCPU stays on its own. The interrupt controller and the local APIC stay on the machine's
// thread: the vCPU sees the pending-interrupt word it keeps, and asks there for the vector (INTA)
// and for APIC registers it reaches through MSRs and CR8.

import { isMainThread, type MessagePort, receiveMessageOnPort, workerData } from "node:worker_threads";
import type { Interpreter } from "../../../cpu/index.js";
import type { VmExit } from "../../../types/exits.js";
import { HostMemory } from "../../../vmx/host-memory.js";
import { ExitReason, VMCS_REVISION_ID } from "../../../vmx/index.js";
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
  W,
  type WorkerMessage,
  wireError,
} from "./thread-protocol.js";
import {
  type ArriveMessage,
  type DepartedMessage,
  type PoolVcpuLink,
  type PoolWorkerData,
  poolLayout,
} from "./threads-pool-protocol.js";
import { SoftVcpu, type SoftVcpuShared } from "./vcpu.js";
import { cachedBlocks } from "./vcpu-context.js";

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

/** an entry that ended without running the guest (held, then kicked; a slice given up): a host interrupt */
const HOST_INTR: VmExit = {
  kind: "intr",
  raw: {
    backend: "soft",
    reason: ExitReason.ExternalInterrupt,
    exitReasonField: ExitReason.ExternalInterrupt,
    qualification: 0n,
    instructionLength: 0,
  },
};

/** One vCPU as this worker serves it: its words, and its SoftVcpu while it is here. */
interface Link {
  readonly index: number;
  readonly words: Int32Array;
  readonly wide: BigInt64Array;
  readonly floats: Float64Array;
  readonly shadow: Int32Array;
  readonly port: MessagePort;
  readonly vmcs: number;
  readonly interrupts: InterruptController | undefined;
  readonly localMmioRead: (gpa: number, size: number) => number | undefined;
  readonly localMmioWrite: (gpa: number, size: number) => boolean;
  vcpu: SoftVcpu | undefined;
  lastExit: VmExit | undefined;
  /** the last entry ended in HLT and the machine took it (it only re-enters to wait) */
  reportedHlt: boolean;
  /** instructionsRetired() when that HLT was reported: a HLT after the guest ran again is news */
  reportedAt: number;
  /** the entry deadline in this thread's performance.now() time */
  deadline: number | undefined;
  unbounded: boolean;
  budgeted: boolean;
  /** W.INVEPT as last applied */
  eptSeen: number;
  /** the entry ended because another vCPU waits for this worker (slice over, or a PAUSE loop) */
  gaveUp: boolean;
}

export function serveLogicalProcessor(data: PoolWorkerData): void {
  const layout = poolLayout(data.threads, data.vcpus);
  const pool = new Int32Array(data.pool);
  const bell = new Int32Array(data.doorbell);
  const ring = (): void => {
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  };

  const host = new HostMemory({ firstHpa: data.firstHpa });
  host.attach(data.chunks);
  const guest = new GuestMemory();
  for (const r of data.ram) guest.addRegion(r.gpa, host.view(r.hpa, r.size));
  const clock = data.clock ? new MachineClock(data.clock) : undefined;
  // this logical processor's VMXON region (each arriving vCPU's processor enters VMX operation with it)
  const vmxon = host.allocatePage();
  host.writeU32(vmxon, VMCS_REVISION_ID);

  const links = data.links.map((l, i) => makeLink(i, l));
  /** the vCPU whose state is on this processor (-1: none) */
  let resident = -1;

  /** the interpreters of vCPUs that left this processor, least recently used first, and their blocks */
  const kept = new Map<number, { cpu: Interpreter; blocks: number }>();
  let keptBlocks = 0;
  const drop = (index: number): Interpreter | undefined => {
    const k = kept.get(index);
    if (!k) return undefined;
    kept.delete(index);
    keptBlocks -= k.blocks;
    Atomics.store(pool, layout.kept(data.worker, index), 0);
    return k.cpu;
  };
  /** vCPU `index` left with interpreter `cpu`: kept within the bound, the oldest ones going */
  const keep = (index: number, cpu: Interpreter): void => {
    if (data.keep.vcpus <= 0) return;
    drop(index);
    const blocks = cachedBlocks(cpu);
    kept.set(index, { cpu, blocks });
    keptBlocks += blocks;
    Atomics.store(pool, layout.kept(data.worker, index), 1);
    while (kept.size > data.keep.vcpus || keptBlocks > data.keep.blocks) drop(kept.keys().next().value!);
  };

  function makeLink(index: number, l: PoolVcpuLink): Link {
    const words = new Int32Array(l.control, 0, CONTROL_WORDS);
    const shadow = new Int32Array(l.apicShadow);
    const port = l.port;
    const post = (m: WorkerMessage): void => port.postMessage(m);
    const link = {} as Link;
    let requests = Atomics.load(words, W.REPLIED);
    /** asks the machine's thread (where the interrupt controller is) and waits for its answer */
    const request = (op: RequestOp, args: unknown[] = []): unknown => {
      publish(link);
      post({ t: "request", op, args });
      requests = bump(words, W.REQUEST);
      // the machine's thread may be waiting for a call's DONE, or for the doorbell of a run
      Atomics.notify(words, W.DONE);
      ring();
      for (let r = Atomics.load(words, W.REPLIED); r !== requests; r = Atomics.load(words, W.REPLIED)) {
        Atomics.wait(words, W.REPLIED, r, WAIT_SLICE_MS);
      }
      const m = receiveMessageOnPort(port)?.message as WorkerMessage | undefined;
      if (m?.t !== "reply") throw new Error(`vCPU ${index}: no reply to ${op}`);
      if (m.error) throw new Error(`${op}: ${m.error.message}`);
      return m.ok;
    };
    const apicEnabled = (): boolean => ((link.vcpu!.lp.cpu.getMsr(APIC_BASE_MSR) ?? 0n) & APIC_EN) !== 0n;
    /** an EOI the machine's thread applies before anything else from this vCPU (APIC_SHADOW) */
    const postEoi = (): void => {
      Atomics.add(shadow, APIC_SHADOW.EOIS, 1);
      ring();
    };
    let attached = false;
    const apic: ApicMsrAccess = {
      get attached() {
        // attaching is for good: asked until it is true
        attached ||= request("apic-attached") === true;
        return attached;
      },
      readMsr: (i) => request("apic-read-msr", [i]) as bigint | undefined,
      writeMsr: (i, value) => {
        // the x2APIC EOI register takes only 0 (else #GP, which the APIC decides)
        if (i === X2APIC_EOI_MSR && value === 0n && Atomics.load(shadow, APIC_SHADOW.X2APIC) === 1) {
          if (Atomics.load(shadow, APIC_SHADOW.POST) === 1) {
            postEoi();
            return true;
          }
        }
        return request("apic-write-msr", [i, value]) === true;
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
    Object.assign(link, {
      index,
      words,
      wide: new BigInt64Array(l.control),
      floats: new Float64Array(l.control),
      shadow,
      port,
      vmcs: l.vmcs,
      interrupts,
      localMmioRead,
      localMmioWrite,
      vcpu: undefined,
      lastExit: undefined,
      reportedHlt: false,
      reportedAt: -1,
      deadline: undefined,
      unbounded: false,
      budgeted: false,
      eptSeen: Atomics.load(words, W.INVEPT),
      gaveUp: false,
    });
    return link;
  }

  function publish(link: Link): void {
    const vcpu = link.vcpu;
    if (!vcpu) return;
    const cpu = vcpu.lp.cpu as { tscOffset?: bigint };
    link.wide[TSC_OFFSET_I64] = BigInt.asIntN(64, cpu.tscOffset ?? 0n);
    link.floats[F64_RETIRED] = vcpu.instructionsRetired();
    // the interpreter's copy: the vCPU's own getMsr would ask the APIC, i.e. this thread's requests
    link.wide[APIC_BASE_I64] = BigInt.asIntN(64, vcpu.lp.cpu.getMsr(APIC_BASE_MSR) ?? 0n);
  }

  const sharedFor = (link: Link): SoftVcpuShared => ({
    memory: host,
    ept: { eptp: data.eptp },
    ioBitmapA: data.ioBitmapA,
    ioBitmapB: data.ioBitmapB,
    msrBitmap: data.msrBitmap,
    interrupts: link.interrupts,
    guestMemory: guest,
    ...(clock ? { clock } : {}),
    vcpus: data.vcpus,
    ownThreads: !data.oversubscribed,
    ...(data.interrupts ? { localMmioRead: link.localMmioRead, localMmioWrite: link.localMmioWrite } : {}),
  });

  /** the vCPU on this processor leaves it: VMCLEAR, and its state to the machine's thread */
  function depart(link: Link): void {
    const vcpu = link.vcpu!;
    link.vcpu = undefined;
    let m: DepartedMessage;
    try {
      m = { t: "departed", context: vcpu.depart() };
      keep(link.index, vcpu.lp.cpu as Interpreter);
    } catch (e) {
      m = { t: "departed", error: { name: (e as Error).name, message: (e as Error).message } };
    }
    link.port.postMessage(m);
    Atomics.add(pool, layout.departed(link.index), 1);
    Atomics.notify(pool, layout.departed(link.index));
  }

  /** the vCPU comes to this processor (the machine's "arrive" message on its channel) */
  function arrive(link: Link): void {
    const m = receiveMessageOnPort(link.port)?.message as ArriveMessage | undefined;
    if (m?.op !== "arrive") throw new Error(`vCPU ${link.index}: its arrival went missing`);
    host.attach(m.chunks.filter((c) => !host.isBacked(c.base)));
    if (resident >= 0) depart(links[resident]!);
    // the vCPU's own interpreter from its last stay here, if this processor kept it
    const interpreter = m.context === "fresh" ? undefined : drop(link.index);
    if (interpreter) Atomics.add(pool, layout.reused(link.index), 1);
    const vcpu = new SoftVcpu(link.index, sharedFor(link), {
      kickWord: link.words.subarray(W.KICK, W.KICK + 1),
      vmcs: link.vmcs,
      vmxon,
      ...(m.context === "fresh" ? {} : { context: m.context, ...(interpreter ? { interpreter } : {}) }),
    });
    // a kept interpreter joined the shared memory in its first stay (in this vCPU's slot)
    if (data.smp && !interpreter) (vcpu.lp.cpu as Interpreter).attachSharedMemory(data.smp, link.index);
    link.vcpu = vcpu;
    link.eptSeen = Atomics.load(link.words, W.INVEPT);
    resident = link.index;
    publish(link);
    // limits the machine gave the vCPU's last entry elsewhere are given again with its next command
    link.deadline = undefined;
    link.unbounded = false;
    link.budgeted = false;
  }

  /** INIT, NMI and SIPI that arrived from the APIC bus since the last look */
  const takeSignals = (link: Link): void => {
    const words = link.words;
    const s = Atomics.exchange(words, W.SIGNALS, 0);
    if (s === 0) return;
    // the sender waits for this (SoftThreadVcpu.signal)
    Atomics.notify(words, W.SIGNALS);
    const v = link.vcpu!;
    if (s & SIGNAL_INIT) v.signal("init");
    if (s & SIGNAL_NMI) v.signal("nmi");
    if (s & SIGNAL_SIPI) v.signal("sipi", (s >>> 8) & 0xff);
  };

  const complete = (link: Link, c: Completion | undefined): void => {
    if (!c || !link.lastExit) return;
    const e = link.lastExit as { data?: Uint8Array; ret?: bigint };
    if (c.data && e.data) e.data.set(c.data.subarray(0, e.data.length));
    if (c.ret !== undefined) e.ret = c.ret;
  };

  /**
   * Sleeps while the vCPU cannot run (halted, or waiting for SIPI) until a kick, an interrupt it
   * takes, a signal, 50 ms, or the entry's end; true when it may run again (or must exit: kicked).
   * Only with a worker of its own: in a pool of fewer, the vCPU gives the worker up instead.
   */
  const sleep = (link: Link): boolean => {
    const words = link.words;
    const v = link.vcpu!;
    const end = Math.min(link.deadline ?? Number.POSITIVE_INFINITY, performance.now() + 50);
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
  const awaitRelease = (link: Link): boolean => {
    const words = link.words;
    Atomics.store(words, W.SLEEP, SLEEP_HELD);
    Atomics.notify(words, W.SLEEP);
    for (;;) {
      // cleared before the looks below, so that a kick after them wakes the wait
      Atomics.store(words, W.KICK, 0);
      takeSignals(link);
      if (Atomics.load(words, W.HELD) === 0) return true;
      if (Atomics.exchange(words, W.STOP, 0) !== 0 || !link.unbounded) return false;
      Atomics.wait(words, W.KICK, 0, WAIT_SLICE_MS);
    }
  };

  const interruptsEnabled = (v: SoftVcpu): boolean => (v.getRegs().rflags & 0x200n) !== 0n;

  /** one entry, as the machine sees it: the vCPU's run(), with HLT waited out here as a CPU does */
  const enter = (link: Link): VmExit => {
    const words = link.words;
    const v = link.vcpu!;
    const multi = data.vcpus > 1;
    // in a pool of fewer workers than vCPUs an unbounded entry runs in time slices: at the end of
    // one, the vCPU gives the worker up when another waits for one
    const sliced = data.oversubscribed && link.unbounded;
    let sliceEnd = performance.now() + data.sliceMs;
    if (sliced) v.setEntryDeadline(sliceEnd);
    for (;;) {
      takeSignals(link);
      // published before the hold is looked at: a machine's thread that holds the vCPU after
      // this look waits until the thread says it is held (SoftThreadVcpu.held)
      Atomics.store(words, W.SLEEP, SLEEP_NONE);
      if (Atomics.load(words, W.HELD) !== 0) {
        if (!awaitRelease(link)) return HOST_INTR;
        continue;
      }
      // released: runnable() (the HLT and SIPI waits below) is the guest's own again
      v.held = false;
      const ept = Atomics.load(words, W.INVEPT);
      if (ept !== link.eptSeen) {
        link.eptSeen = ept;
        v.flushEpt();
      }
      let exit = v.run();
      if (exit.kind === "intr" && link.unbounded && Atomics.load(words, W.STOP) !== 0 && v.mmioInFlight()) {
        // the host's interrupt is taken at an instruction boundary: the instruction whose MMIO
        // accesses the host completed runs to its end first (its next access may exit instead)
        v.setInstructionBudget(1);
        try {
          exit = v.run();
        } finally {
          v.setInstructionBudget(undefined);
        }
        if (exit.kind !== "intr") return exit;
      }
      // in an unbounded entry only a kick ends the guest's run: one that does not ask for a stop
      // (an interrupt or a signal arrived) is for the vCPU itself, which takes it and runs on
      if (exit.kind === "intr" && link.unbounded && Atomics.exchange(words, W.STOP, 0) === 0) {
        if (multi && Atomics.load(words, W.KICK) === 0 && !v.runnable()) {
          // an AP waiting for SIPI: the entry returns at once; it sleeps (or gives the worker up)
          Atomics.store(words, W.SLEEP, SLEEP_FOR_GOOD);
          if (data.oversubscribed || !sleep(link)) return exit;
          continue;
        }
        // a PAUSE loop (PAUSE-loop exiting, on in a pool of fewer workers than vCPUs): the guest
        // waits for another vCPU, which may be one that waits for this worker
        if (sliced && v.takeYield() && Atomics.load(pool, layout.queued) > 0) {
          link.gaveUp = true;
          return exit;
        }
        if (sliced && performance.now() >= sliceEnd) {
          if (Atomics.load(pool, layout.queued) > 0) {
            link.gaveUp = true;
            return exit;
          }
          sliceEnd = performance.now() + data.sliceMs;
          v.setEntryDeadline(sliceEnd);
        }
        continue;
      }
      if (exit.kind !== "hlt") {
        link.reportedHlt = false;
        return exit;
      }
      // published before the HLT reaches the machine, whose halt checks read it for running vCPUs
      Atomics.store(words, W.SLEEP, interruptsEnabled(v) ? SLEEP_HALTED : SLEEP_FOR_GOOD);
      // a halted vCPU does not keep a worker of a pool that others wait for
      if (data.oversubscribed) return exit;
      // a HLT goes to the machine (it may end the run, or jump guest time to its next device
      // deadline, as it does for a vCPU on its own thread) unless it was just reported and the
      // guest has not run since; one that only a lone vCPU with interrupts disabled is in, always
      const work = v.instructionsRetired();
      if (!link.reportedHlt || work !== link.reportedAt || (!multi && !interruptsEnabled(v))) {
        link.reportedHlt = true;
        link.reportedAt = work;
        return exit;
      }
      // halted again: sleep; one vCPU of several reports the HLT again after a while, so that the
      // machine looks again whether every vCPU is halted for good (their states change meanwhile)
      if (!sleep(link)) return multi ? exit : { kind: "intr", raw: exit.raw };
    }
  };

  const applyLimits = (link: Link, l: EntryLimits): void => {
    const v = link.vcpu!;
    if (l.budget) {
      v.setInstructionBudget(l.budget.n);
      link.budgeted = l.budget.n !== undefined;
    }
    if (l.deadline) {
      // sent as epoch milliseconds: each thread's performance.now() has its own origin
      const at = l.deadline.at;
      link.deadline = at === undefined || !Number.isFinite(at) ? at : at - performance.timeOrigin;
      v.setEntryDeadline(link.deadline);
    }
    link.unbounded = !link.budgeted && link.deadline === Number.POSITIVE_INFINITY;
  };

  const call = (v: SoftVcpu, name: string, args: unknown[]): unknown => {
    if (!CALLS.has(name)) throw new Error(`unknown vCPU call ${name}`);
    const fn = (v as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;
    return fn.apply(v, args);
  };

  /** the command the machine's thread posted to vCPU `link`, which is on this worker */
  const serve = (link: Link): void => {
    const words = link.words;
    const post = (m: WorkerMessage): void => link.port.postMessage(m);
    const cmd = Atomics.load(words, W.CMD);
    if (link.vcpu === undefined) {
      try {
        arrive(link);
      } catch (e) {
        // the command cannot be served: its answer is the error
        const fast = Atomics.load(words, W.CMD_FAST) === 1;
        const c = fast ? undefined : (receiveMessageOnPort(link.port)?.message as Command | undefined);
        const error = wireError(e);
        if (fast || c?.op === "run") {
          Atomics.store(words, W.EXIT_FAST, 0);
          post({ t: "exit-error", error });
          Atomics.store(words, W.DONE, cmd);
          bump(words, W.EXIT);
          ring();
        } else {
          post({ t: "reply", error });
          Atomics.store(words, W.DONE, cmd);
          Atomics.notify(words, W.DONE);
        }
        return;
      }
    }
    const m: Command | undefined =
      Atomics.load(words, W.CMD_FAST) === 1
        ? { op: "run", ...readFastRun(words) }
        : (receiveMessageOnPort(link.port)?.message as Command | undefined);
    if (!m) return;
    const v = link.vcpu!;
    takeSignals(link);
    applyLimits(link, m.limits);
    if (m.op === "run") {
      try {
        complete(link, m.completion);
        link.lastExit = enter(link);
        publish(link);
        // in the block's words where it fits (thread-codec.ts), else a message
        const fast = writeFastExit(words, link.lastExit);
        Atomics.store(words, W.EXIT_FAST, fast ? 1 : 0);
        if (!fast) post({ t: "exit", exit: link.lastExit });
      } catch (e) {
        link.lastExit = undefined;
        publish(link);
        Atomics.store(words, W.EXIT_FAST, 0);
        post({ t: "exit-error", error: wireError(e) });
      }
      // 2: the vCPU gave its turn up (another waits for this worker)
      const state = v.departable ? (link.gaveUp ? 2 : 1) : 0;
      link.gaveUp = false;
      Atomics.store(pool, layout.departable(link.index), state);
      Atomics.store(words, W.DONE, cmd);
      bump(words, W.EXIT);
      ring();
    } else {
      try {
        // runnable() of a held vCPU is false (SoftVcpu.held), as on the machine's thread
        v.held = Atomics.load(words, W.HELD) !== 0;
        post({ t: "reply", ok: call(v, m.name, m.args) });
      } catch (e) {
        post({ t: "reply", error: wireError(e) });
      }
      publish(link);
      Atomics.store(words, W.DONE, cmd);
      Atomics.notify(words, W.DONE);
    }
  };

  const me = data.worker;
  data.port.postMessage({ t: "ready" } satisfies WorkerMessage);
  Atomics.add(pool, layout.ready, 1);
  Atomics.notify(pool, layout.ready);
  for (;;) {
    const seen = Atomics.load(pool, layout.bell(me));
    let served = false;
    if (Atomics.exchange(pool, layout.evict(me), 0) !== 0 && resident >= 0) {
      depart(links[resident]!);
      resident = -1;
    }
    for (const link of links) {
      if (Atomics.load(pool, layout.host(link.index)) !== me) continue;
      if (Atomics.load(link.words, W.CMD) === Atomics.load(link.words, W.DONE)) continue;
      serve(link);
      served = true;
    }
    if (!served) waitForChangeSync(pool, layout.bell(me), seen, WAIT_SLICE_MS);
  }
}

if (!isMainThread && (workerData as { nodevmmSoftPool?: PoolWorkerData } | null)?.nodevmmSoftPool) {
  const data = (workerData as { nodevmmSoftPool: PoolWorkerData }).nodevmmSoftPool;
  try {
    serveLogicalProcessor(data);
  } catch (e) {
    // a worker that cannot start (or fails outside any command) says why, and every vCPU's waits see it
    data.port.postMessage({ t: "failed", error: wireError(e) } satisfies WorkerMessage);
    for (const l of data.links) {
      const words = new Int32Array(l.control, 0, CONTROL_WORDS);
      bump(words, W.FAILED);
      Atomics.notify(words, W.DONE);
    }
    const bell = new Int32Array(data.doorbell);
    Atomics.add(bell, 0, 1);
    Atomics.notify(bell, 0);
  }
}
