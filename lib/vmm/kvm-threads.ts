// SMP on KVM: one KvmRunWorker (kvm-worker.ts) per vCPU enters KVM_RUN for it, and all of them ring
// one shared doorbell after each exit, so the loop's thread waits for an exit of any vCPU with one
// Atomics wait and handles it (loop-threads.ts). The addon's kick() signals the thread a vCPU runs
// on whichever thread calls it, so stop(), timeouts and the halt checks reach every vCPU.
//
// Only the addon binding: koffi's KVM_RUN state belongs to the thread that loaded it, so a worker
// cannot enter the guest through it (kvmSmpUnsupported says so before a machine is built).

import type { KickTarget } from "../kvm/binding-api.js";
import type { VmExit } from "../types/exits.js";
import type { MachineBackend, VcpuBackend } from "./backend.js";
import { DoorbellThreads } from "./doorbell.js";
import { MachineConfigError } from "./errors.js";
import { KvmRunWorker } from "./kvm-worker.js";
import type { VcpuThreads } from "./loop-threads.js";

/** What a vCPU backend offers for a thread of its own (backends/kvm.ts KvmVcpuBackend). */
export interface ThreadableVcpu extends VcpuBackend {
  crossThreadKick(): KickTarget | undefined;
  /** decodes the exit of a KVM_RUN another thread made; `exited` is what that run returned */
  exitOf(exited: boolean): VmExit;
  /** closing the vCPU closes the thread too (kicked first) */
  attachThread(thread: { close(): void }): void;
}

/** One entering thread, as KvmVcpuThreads uses it (a KvmRunWorker; a fake in unit tests). */
export interface EntryThread {
  readonly closed: boolean;
  readonly inRun: boolean;
  start(): void;
  ended(): boolean;
  /** the ended entry's outcome: true the guest exited, false interrupted (throws on failure) */
  take(): boolean;
  close(): void;
}

/**
 * Why several vCPUs cannot run on this backend's KVM (undefined: they can). Duck-typed, so that
 * the machine need not load the KVM backend's module to ask.
 */
export function kvmSmpUnsupported(backend: MachineBackend): string | undefined {
  if (backend.kind !== "kvm") return undefined;
  const kind = (backend as { kvm?: { binding?: { kind?: string } } }).kvm?.binding?.kind;
  if (kind !== undefined && kind !== "addon") {
    return `SMP on KVM needs the native addon binding (a thread per vCPU enters KVM_RUN), this machine uses ${kind}; build the addon (node scripts/build-addon.mjs) or use backend: "soft"`;
  }
  return undefined;
}

/** vCPUs a debugger holds (lib/vmm/debug-kvm.ts, while another one steps): never started, so parked */
const held = new WeakSet<object>();

/**
 * Holds a vCPU out of the guest (or lets it go): the runs of KvmVcpuThreads do not enter it, as
 * SoftVcpu.held keeps a soft vCPU from its turns. Set between runs, while every vCPU is parked.
 */
export function holdVcpu(vcpu: VcpuBackend, on: boolean): void {
  if (on) held.add(vcpu);
  else held.delete(vcpu);
}

function isThreadable(v: VcpuBackend): v is ThreadableVcpu {
  const t = v as Partial<ThreadableVcpu>;
  return (
    typeof t.crossThreadKick === "function" &&
    typeof t.exitOf === "function" &&
    typeof t.attachThread === "function"
  );
}

type ThreadVcpu = { exitOf(exited: boolean): VmExit; kick(): void };

export class KvmVcpuThreads extends DoorbellThreads implements VcpuThreads {
  readonly #threads: readonly EntryThread[];
  readonly #vcpus: readonly ThreadVcpu[];

  constructor(vcpus: readonly ThreadVcpu[], threads: readonly EntryThread[], bell: Int32Array) {
    if (vcpus.length !== threads.length || vcpus.length === 0) {
      throw new RangeError(`${vcpus.length} vCPUs and ${threads.length} threads`);
    }
    super(bell);
    this.#vcpus = vcpus;
    this.#threads = threads;
  }

  /**
   * A thread per vCPU, all started and loaded before this resolves. MachineConfigError when a
   * vCPU cannot be entered from another thread (koffi, no kick target) or a thread fails to start.
   */
  static async start(vcpus: readonly VcpuBackend[]): Promise<KvmVcpuThreads> {
    const shared = new SharedArrayBuffer(4);
    const workers: KvmRunWorker[] = [];
    const threadable: ThreadableVcpu[] = [];
    try {
      for (const v of vcpus) {
        if (!isThreadable(v)) {
          throw new MachineConfigError(
            `SMP needs the soft backend or KVM's vCPU threads: vCPU ${v.index} of this backend cannot run on a thread of its own`,
          );
        }
        const target = v.crossThreadKick();
        if (!target || target.binding === "koffi") {
          throw new MachineConfigError(
            `SMP on KVM needs the native addon binding (a thread per vCPU enters KVM_RUN); vCPU ${v.index} has ${target ? "koffi's" : "no cross-thread kick"}`,
          );
        }
        const w = new KvmRunWorker({ ...target, doorbell: shared });
        workers.push(w);
        threadable.push(v);
      }
      await Promise.all(workers.map((w) => w.ready()));
    } catch (e) {
      for (const w of workers) w.close();
      if (e instanceof MachineConfigError) throw e;
      throw new MachineConfigError(
        `the KVM vCPU threads failed to start (${e instanceof Error ? e.message : String(e)})`,
      );
    }
    threadable.forEach((v, i) => {
      v.attachThread(workers[i]!);
    });
    return new KvmVcpuThreads(threadable, workers, new Int32Array(shared));
  }

  get count(): number {
    return this.#threads.length;
  }

  get closed(): boolean {
    return this.#threads.some((t) => t.closed);
  }

  /** no vCPU is in an entry: their registers and states may be read */
  allParked(): boolean {
    return this.#threads.every((t) => !t.inRun);
  }

  start(i: number): void {
    // a held vCPU stays parked: the run goes on with the others (holdVcpu)
    if (held.has(this.#vcpus[i]!)) return;
    this.#threads[i]!.start();
  }
  inEntry(i: number): boolean {
    return this.#threads[i]!.inRun;
  }
  ended(i: number): boolean {
    return this.#threads[i]!.ended();
  }
  exit(i: number): VmExit {
    return this.#vcpus[i]!.exitOf(this.#threads[i]!.take());
  }
  kick(i: number): void {
    this.#vcpus[i]!.kick();
  }

  /** Ends every thread (each vCPU kicked so that a KVM_RUN in progress returns). */
  close(): void {
    this.end();
    this.#threads.forEach((t, i) => {
      t.close();
      try {
        this.#vcpus[i]!.kick();
      } catch {
        // the vCPU is closed already: its thread has nothing left to leave
      }
    });
  }
}
