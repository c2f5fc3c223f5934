// What the machine's thread (threads-pool.ts) and the worker threads of a pool (thread-worker.ts)
// share beside each vCPU's control block (thread-protocol.ts): each worker is one logical
// processor, and the vCPUs move between them. One Int32 block for the pool (POOL below) and a
// MessagePort per worker and vCPU, on which that vCPU's messages go while it is on that worker.

import type { MessagePort } from "node:worker_threads";
import type { SharedMemoryState } from "../../../cpu/index.js";
import type { SharedChunk } from "../../../vmx/host-memory.js";
import type { SharedClockState } from "../../clock.js";
import type { SoftVcpuContext } from "./vcpu-context.js";

/** Word offsets in the pool block for a pool of `threads` workers and `vcpus` vCPUs. */
export function poolLayout(threads: number, vcpus: number) {
  return {
    /** worker w's bell: bumped after a command was posted to a vCPU that is on w */
    bell: (w: number) => w,
    /** the worker vCPU v's commands go to (set before its CMD word is bumped) */
    host: (v: number) => threads + v,
    /** bumped by a worker after it posted vCPU v's context (it left that worker) */
    departed: (v: number) => threads + vcpus + v,
    /**
     * vCPU v's last exit waits for nothing (it may leave its worker before its next entry): 1, or
     * 2 when it also gave its turn up to a vCPU that waits for a worker; 0 when it waits (an IN...)
     */
    departable: (v: number) => threads + 2 * vcpus + v,
    /** runnable vCPUs waiting for a worker: a worker whose time slice is over gives its own up */
    queued: threads + 3 * vcpus,
    /** bumped by each worker once it serves commands */
    ready: threads + 3 * vcpus + 1,
    /** 1: worker w's vCPU leaves it now (its state to the machine), with no other arriving */
    evict: (w: number) => threads + 3 * vcpus + 2 + w,
    /** 1: worker w keeps vCPU v's interpreter (it ran there and left; thread-worker.ts) */
    kept: (w: number, v: number) => 2 * threads + 3 * vcpus + 2 + w * vcpus + v,
    /** bumped by a worker at each arrival of vCPU v that took up its kept interpreter */
    reused: (v: number) => 2 * threads + 3 * vcpus + 2 + threads * vcpus + v,
    words: 2 * threads + 4 * vcpus + 2 + threads * vcpus,
  };
}

/** One vCPU as a worker of the pool sees it. */
export interface PoolVcpuLink {
  control: SharedArrayBuffer;
  apicShadow: SharedArrayBuffer;
  /** this worker's end of the (worker, vCPU) channel */
  port: MessagePort;
  /** the vCPU's VMCS region, in host memory every worker maps */
  vmcs: number;
}

/** What a pool worker is started with (workerData.nodevmmSoftPool). */
export interface PoolWorkerData {
  worker: number;
  threads: number;
  vcpus: number;
  links: PoolVcpuLink[];
  pool: SharedArrayBuffer;
  /** the worker's own channel to the machine: "ready" and "failed" */
  port: MessagePort;
  chunks: SharedChunk[];
  ram: { gpa: number; hpa: number; size: number }[];
  eptp: bigint;
  ioBitmapA: number;
  ioBitmapB: number;
  msrBitmap: number;
  firstHpa: number;
  doorbell: SharedArrayBuffer;
  clock: SharedClockState | undefined;
  interrupts: boolean;
  smp: SharedMemoryState | undefined;
  /** fewer workers than vCPUs: a halted vCPU gives its worker up, and turns are time slices */
  oversubscribed: boolean;
  /** a vCPU's turn on a worker while others wait for one */
  sliceMs: number;
  /** what the worker keeps of vCPUs that left it: their interpreters (SoftVcpuPool.keep) */
  keep: { vcpus: number; blocks: number };
}

/** Machine's thread -> worker, on a (worker, vCPU) channel before the first command there. */
export interface ArriveMessage {
  op: "arrive";
  /** the state the vCPU left its last worker with; "fresh": it never ran (reset state) */
  context: SoftVcpuContext | "fresh";
  /** host memory the machine's thread allocated since the workers started (a debugger's EPT pages) */
  chunks: SharedChunk[];
}

/** Worker -> machine's thread, on the (worker, vCPU) channel of a vCPU that left the worker. */
export interface DepartedMessage {
  t: "departed";
  context?: SoftVcpuContext;
  error?: { name: string; message: string };
}
