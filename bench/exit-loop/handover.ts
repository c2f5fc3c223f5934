// What one hand-over between the main thread and a worker costs, without KVM: the worker stands for
// the vCPU thread of async KVM runs (lib/vmm/kvm-worker.ts), bumping DONE per "exit" and waiting
// for REQ, and the main thread answers each one, in the ways the loop could wait for it:
//
//   block      Atomics.wait on both sides (what poll() does while an exit comes within its bound)
//   async      the main thread awaits Atomics.waitAsync for every exit (a macrotask hop each)
//   spin N     either side polls the word for up to N us before it sleeps (bounded spin)
//   yield N    either side sleeps 0 ms (Atomics.wait timeout 0, no yield) N times, then waits
//
// Round trips per second and per CPU second; in the nested-KVM lane (1 CPU) a spin only delays the
// thread it waits for, on a host with free cores it saves the wake-ups.
//
//   npx tsc -p tsconfig.json && node dist/bench/exit-loop/handover.js [roundTrips=20000] [rounds=3]

import { Worker } from "node:worker_threads";
import { evalWorkerArgv } from "../../lib/vmm/kvm-worker.js";
import { waitForChange } from "../../lib/vmm/wait-word.js";

const REQ = 0;
const DONE = 1;
const QUIT = 2;

// spinUs: how long the worker polls REQ before Atomics.wait
const WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
const ctrl = new Int32Array(workerData.shared);
const spinUs = workerData.spinUs;
let seen = Atomics.load(ctrl, ${REQ});
parentPort.postMessage("ready");
for (;;) {
  if (spinUs > 0) {
    const end = performance.now() + spinUs / 1000;
    while (Atomics.load(ctrl, ${REQ}) === seen && performance.now() < end) {}
  }
  Atomics.wait(ctrl, ${REQ}, seen);
  if (Atomics.load(ctrl, ${QUIT}) !== 0) break;
  const req = Atomics.load(ctrl, ${REQ});
  if (req === seen) continue;
  seen = req;
  Atomics.add(ctrl, ${DONE}, 1);
  Atomics.notify(ctrl, ${DONE});
}
`;

interface Mode {
  name: string;
  workerSpinUs: number;
  mainSpinUs: number;
  async: boolean;
}

const MODES: Mode[] = [
  { name: "block", workerSpinUs: 0, mainSpinUs: 0, async: false },
  { name: "async (waitAsync per exit)", workerSpinUs: 0, mainSpinUs: 0, async: true },
  { name: "block, main spins 20 us", workerSpinUs: 0, mainSpinUs: 20, async: false },
  { name: "block, worker spins 20 us", workerSpinUs: 20, mainSpinUs: 0, async: false },
  { name: "block, both spin 20 us", workerSpinUs: 20, mainSpinUs: 20, async: false },
  { name: "async, main spins 20 us", workerSpinUs: 0, mainSpinUs: 20, async: true },
  { name: "async, both spin 20 us", workerSpinUs: 20, mainSpinUs: 20, async: true },
];

async function measure(mode: Mode, trips: number): Promise<{ rate: number; cpuRate: number }> {
  const shared = new SharedArrayBuffer(16);
  const ctrl = new Int32Array(shared);
  const w = new Worker(WORKER, {
    eval: true,
    execArgv: evalWorkerArgv(),
    workerData: { shared, spinUs: mode.workerSpinUs },
  });
  await new Promise<void>((resolve) => w.once("message", () => resolve()));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < trips; i++) {
    const done = Atomics.load(ctrl, DONE);
    Atomics.add(ctrl, REQ, 1);
    Atomics.notify(ctrl, REQ);
    if (mode.mainSpinUs > 0) {
      const end = performance.now() + mode.mainSpinUs / 1000;
      while (Atomics.load(ctrl, DONE) === done && performance.now() < end) {}
    }
    if (mode.async) await waitForChange(ctrl, DONE, done, 10_000);
    else Atomics.wait(ctrl, DONE, done, 10_000);
    if (Atomics.load(ctrl, DONE) === done)
      throw new Error(
        `${mode.name}: no answer within 10 s (trip ${i}, req ${Atomics.load(ctrl, REQ)}, done ${Atomics.load(ctrl, DONE)})`,
      );
  }
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  Atomics.store(ctrl, QUIT, 1);
  Atomics.add(ctrl, REQ, 1);
  Atomics.notify(ctrl, REQ);
  await w.terminate();
  return { rate: trips / (ms / 1000), cpuRate: trips / ((c.user + c.system) / 1e6) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

async function main(): Promise<void> {
  const trips = Number(process.argv[2] ?? 20_000);
  const rounds = Number(process.argv[3] ?? 3);
  const results = new Map<string, { rate: number[]; cpu: number[] }>();
  for (const m of MODES) results.set(m.name, { rate: [], cpu: [] });
  for (const m of MODES) await measure(m, Math.min(trips, 2000)); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const m of MODES) {
      const s = await measure(m, trips);
      results.get(m.name)!.rate.push(s.rate);
      results.get(m.name)!.cpu.push(s.cpuRate);
    }
  }
  console.log(
    `main <-> worker hand-overs: ${trips} round trips, ${rounds} interleaved rounds, medians (min-max)`,
  );
  console.table(
    MODES.map((m) => {
      const x = results.get(m.name)!;
      return {
        mode: m.name,
        "round trips/s": fmt(median(x.rate)),
        spread: `${fmt(Math.min(...x.rate))}-${fmt(Math.max(...x.rate))}`,
        "round trips/CPU-s": fmt(median(x.cpu)),
        "us/round trip": (1e6 / median(x.rate)).toFixed(1),
      };
    }),
  );
}

await main();
