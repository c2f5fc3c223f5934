// A vCPU thread of the SMP interpreter tests (bundled by threads.ts): one Interpreter over the
// guest RAM the test shares (a SharedArrayBuffer laid out by guest.ts makeGuest in long mode),
// joined to the shared state unless the test says otherwise, runs from `rip` until HLT and posts
// its registers.

import { parentPort, workerData } from "node:worker_threads";
import { createBareHooks } from "../../../lib/cpu/index.js";
import type { SharedMemoryState } from "../../../lib/cpu/smp-memory.js";
import { makeGuest } from "../guest.js";

export interface VcpuJob {
  ram: SharedArrayBuffer;
  state: SharedMemoryState;
  /** attach the interpreter to the shared state (false: the mode off, to show what goes wrong) */
  shared: boolean;
  vcpu: number;
  vcpus: number;
  /** Int32Array: [0] vCPUs ready (all start together) */
  control: SharedArrayBuffer;
  rip: number;
  rsp: number;
  /** initial general registers by number (low 32 bits, high 32 bits) */
  regs: [number, number, number][];
  jitThreshold: number;
  budget: number;
}
export interface VcpuResult {
  vcpu: number;
  /** StopReason */
  stop: number;
  lo: number[];
  hi: number[];
  retired: number;
}

const job = workerData as VcpuJob;
const ram = new Uint8Array(job.ram);
// the architectural state of makeGuest's long mode, over a scratch RAM; then the shared one
const g = makeGuest("long", []);
const cpu = g.cpu;
cpu.hooks = createBareHooks(ram);
cpu.jitThreshold = job.jitThreshold;
cpu.flushTlb();
if (job.shared) cpu.attachSharedMemory(job.state, job.vcpu);
cpu.setRip(BigInt(job.rip));
cpu.setGpr(4, BigInt(job.rsp));
for (const [r, lo, hi] of job.regs) {
  cpu.lo[r] = lo;
  cpu.hi[r] = hi;
}
const control = new Int32Array(job.control);
Atomics.add(control, 0, 1);
while (Atomics.load(control, 0) < job.vcpus) Atomics.wait(control, 1, 0, 1);
// one run(): its start re-checks every block, which would hide a missed cross-vCPU write
const stop = cpu.run(job.budget);
const result: VcpuResult = {
  vcpu: job.vcpu,
  stop,
  lo: Array.from(cpu.lo),
  hi: Array.from(cpu.hi),
  retired: cpu.retired,
};
parentPort?.postMessage(result);
