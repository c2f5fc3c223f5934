// Runs vCPU threads (vcpu-worker.ts, bundled once per process by esbuild, as the soft backend's
// worker-script.ts does for vitest) over one shared guest RAM laid out by makeGuest("long").

import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { createSharedMemoryState, type SharedMemoryState } from "../../../lib/cpu/index.js";
import { bundleSource } from "../../../lib/vmm/backends/soft/worker-script.js";
import { CODE, makeGuest, RAM_SIZE, STACK_TOP } from "../guest.js";
import type { VcpuJob, VcpuResult } from "./vcpu-worker.js";

let bundled: Promise<string> | undefined;
function workerUrl(): Promise<string> {
  bundled ??= bundleSource(fileURLToPath(new URL("./vcpu-worker.ts", import.meta.url)));
  return bundled;
}

export interface SharedGuest {
  ram: Uint8Array;
  buffer: SharedArrayBuffer;
  state: SharedMemoryState;
}

/** guest RAM in a SharedArrayBuffer with makeGuest's long-mode tables, and `code` at CODE */
export function sharedGuest(code: number[], vcpus: number): SharedGuest {
  const buffer = new SharedArrayBuffer(RAM_SIZE);
  const ram = new Uint8Array(buffer);
  ram.set(makeGuest("long", code).ram);
  return { ram, buffer, state: createSharedMemoryState(RAM_SIZE, vcpus) };
}

export interface VcpuStart {
  rip: number;
  /** general register number -> value */
  regs?: Record<number, bigint>;
}

/** runs one thread per entry of `starts` until each halts; their registers, in vCPU order */
export async function runVcpus(
  g: SharedGuest,
  starts: VcpuStart[],
  o: { shared?: boolean; budget?: number } = {},
): Promise<VcpuResult[]> {
  const url = await workerUrl();
  const control = new SharedArrayBuffer(8);
  const results = starts.map(
    (s, vcpu) =>
      new Promise<VcpuResult>((resolve, reject) => {
        const job: VcpuJob = {
          ram: g.buffer,
          state: g.state,
          shared: o.shared ?? true,
          vcpu,
          vcpus: starts.length,
          control,
          rip: s.rip,
          rsp: STACK_TOP - 0x2000 * (vcpu + 1),
          regs: Object.entries(s.regs ?? {}).map(([r, v]) => [
            Number(r),
            Number(BigInt.asIntN(32, v)),
            Number(BigInt.asIntN(32, v >> 32n)),
          ]),
          jitThreshold: 16,
          budget: o.budget ?? 200_000_000,
        };
        const w = new Worker(new URL(url), { workerData: job });
        w.once("message", (r: VcpuResult) => resolve(r));
        w.once("error", reject);
        w.once("exit", (c) => {
          if (c !== 0) reject(new Error(`vCPU ${vcpu} thread exited with ${c}`));
        });
      }),
  );
  return Promise.all(results);
}

export { CODE };
