// Port-I/O exits per second through the whole machine (createMachine, the one exit loop, the port
// bus, a vm.io.onOut handler), on each backend usable here, next to the backend's own run() called
// in a bare loop on the same guest. The difference per exit is what lib/vmm's loop costs.
//
// "soft-thread": the soft vCPU in a worker thread (createMachine({ vcpuThread: true })): each exit
// crosses threads, and its raw run() is one hand-over there and back.
//
//   npx tsc -p tsconfig.json && node dist/bench/exit-loop/run.js [seconds=1] [rounds=3] [backends=soft,soft-thread,kvm]

import type { VcpuBackend } from "../../lib/vmm/backend.js";
import { createMachine, type Machine, machineExitLoop } from "../../lib/vmm/machine.js";

// mov dx,0xe9; l: inc al; out dx,al; jmp l   (real mode at 0x7C00; one OUT exit per 3 instructions)
const GUEST = Uint8Array.from([0xba, 0xe9, 0x00, 0xfe, 0xc0, 0xee, 0xeb, 0xfb]);
const PORT = 0xe9;

interface Sample {
  /** exits per wall-clock second */
  rate: number;
  /** user-space CPU time per exit, ns: less disturbed than wall time when other work shares the cores */
  userNs: number;
  /** how many of the exits were the guest's OUTs (the rest: slice ends, kicks) */
  ioShare: number;
  /** async runs: hot phases begun, and the share of exits handled in them (ExitLoop.hotPhases) */
  hot?: { phases: number; share: number };
}

type Kind = "soft" | "soft-thread" | "kvm";
const KINDS: readonly Kind[] = ["soft", "soft-thread", "kvm"];

const machineOptions = (kind: Kind) =>
  kind === "soft-thread"
    ? { memoryMiB: 4, backend: "soft" as const, vcpuThread: true }
    : { memoryMiB: 4, backend: kind };

async function machine(kind: Kind): Promise<{ vm: Machine; seen: () => number }> {
  const vm = await createMachine(machineOptions(kind));
  let sum = 0;
  let n = 0;
  vm.io.onOut(PORT, (_p, _s, v) => {
    sum += v;
    n++;
  });
  vm.loadFlat(GUEST);
  return { vm, seen: () => (sum > 0 ? n : 0) };
}

/** vm.runSync(): the loop with handler dispatch, stats, limits and the exit event machinery. */
async function loopSync(kind: Kind, seconds: number): Promise<Sample> {
  const { vm, seen } = await machine(kind);
  try {
    const cpu0 = process.cpuUsage();
    const r = vm.runSync({ timeoutMs: seconds * 1000 });
    const user = process.cpuUsage(cpu0).user;
    if (r.reason !== "timeout") throw new Error(`${kind}: run ended with ${r.reason} (${r.message})`);
    return {
      rate: r.exits / (r.durationMs / 1000),
      userNs: (user * 1e3) / r.exits,
      ioShare: seen() / r.exits,
    };
  } finally {
    vm.close();
  }
}

/**
 * await vm.run(): the same, in slices with the event loop served in between. `hotEntry` true lets
 * the main thread enter a guest that exits hot itself (ExitLoop.hotEntry, lib/vmm/loop.ts).
 */
async function loopAsync(
  kind: Kind,
  seconds: number,
  hotEntry = false,
  spinMs?: string,
  hotGraceMs?: number,
): Promise<Sample> {
  // the vCPU thread reads its spin bound when the machine starts it
  const before = process.env.NODEVMM_VCPU_SPIN_MS;
  if (spinMs !== undefined) process.env.NODEVMM_VCPU_SPIN_MS = spinMs;
  let made: Awaited<ReturnType<typeof machine>>;
  try {
    made = await machine(kind);
  } finally {
    if (before === undefined) delete process.env.NODEVMM_VCPU_SPIN_MS;
    else process.env.NODEVMM_VCPU_SPIN_MS = before;
  }
  const { vm, seen } = made;
  machineExitLoop(vm).hotEntry = hotEntry;
  if (hotGraceMs !== undefined) machineExitLoop(vm).hotWatchdogGraceMs = hotGraceMs;
  try {
    const cpu0 = process.cpuUsage();
    const r = await vm.run({ timeoutMs: seconds * 1000 });
    const user = process.cpuUsage(cpu0).user;
    if (r.reason !== "timeout") throw new Error(`${kind}: run ended with ${r.reason} (${r.message})`);
    const loop = machineExitLoop(vm);
    return {
      rate: r.exits / (r.durationMs / 1000),
      userNs: (user * 1e3) / r.exits,
      ioShare: seen() / r.exits,
      hot: { phases: loop.hotPhases, share: loop.hotExits / r.exits },
    };
  } finally {
    vm.close();
  }
}

/** The backend's run() in a bare loop: no handler table, no bus, no stats (the floor). */
async function raw(kind: Kind, seconds: number): Promise<Sample> {
  const { vm } = await machine(kind);
  try {
    const vcpu: VcpuBackend = vm.vcpu(0).backend;
    let exits = 0;
    let io = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let t = t0;
    while (t < end) {
      for (let i = 0; i < 1000; i++) {
        if (vcpu.run().kind === "io") io++;
      }
      exits += 1000;
      t = performance.now();
    }
    const user = process.cpuUsage(cpu0).user;
    return { rate: exits / ((t - t0) / 1000), userNs: (user * 1e3) / exits, ioShare: io / exits };
  } finally {
    vm.close();
  }
}

async function usable(kind: Kind): Promise<string | undefined> {
  try {
    const vm = await createMachine(machineOptions(kind));
    vm.close();
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** NODEVMM_BENCH_SPIN_MS=a,b: extra async columns with the vCPU thread's spin bound set to each */
const SPIN_MS = (process.env.NODEVMM_BENCH_SPIN_MS ?? "").split(",").filter(Boolean);

/** NODEVMM_BENCH_HOT_GRACE_MS=a,b: extra hot-entry columns with ExitLoop.hotWatchdogGraceMs set to each */
const HOT_GRACE_MS = (process.env.NODEVMM_BENCH_HOT_GRACE_MS ?? "").split(",").filter(Boolean).map(Number);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 1);
  const rounds = Number(process.argv[3] ?? 3);
  const kinds = (process.argv[4] ?? KINDS.join(",")).split(",") as Kind[];
  if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1 || kinds.some((k) => !KINDS.includes(k))) {
    throw new Error(`usage: run.js [seconds > 0] [rounds >= 1] [backends: ${KINDS.join(",")}]`);
  }
  const rows: Record<string, string>[] = [];
  const spreads: Record<string, string>[] = [];
  for (const kind of kinds) {
    const why = await usable(kind);
    if (why) {
      console.log(`exit-loop: ${kind} skipped (${why})`);
      continue;
    }
    await loopSync(kind, Math.min(seconds, 0.2)); // warm-up: JIT the loop and the backend
    await raw(kind, Math.min(seconds, 0.2));
    const r: Sample[] = [];
    const s: Sample[] = [];
    const a: Sample[] = [];
    const t: Sample[] = [];
    const spins = SPIN_MS.map(() => [] as Sample[]);
    const graces = HOT_GRACE_MS.map(() => [] as Sample[]);
    for (let i = 0; i < rounds; i++) {
      r.push(await raw(kind, seconds));
      s.push(await loopSync(kind, seconds));
      a.push(await loopAsync(kind, seconds));
      if (kind === "kvm") t.push(await loopAsync(kind, seconds, true));
      if (kind === "kvm") {
        for (const [j, ms] of HOT_GRACE_MS.entries()) {
          graces[j]!.push(await loopAsync(kind, seconds, true, undefined, ms));
        }
        for (const [j, ms] of SPIN_MS.entries()) spins[j]!.push(await loopAsync(kind, seconds, false, ms));
      }
    }
    const rate = (xs: Sample[]) => median(xs.map((x) => x.rate));
    const userNs = (xs: Sample[]) => median(xs.map((x) => x.userNs));
    const spread = (xs: Sample[]) =>
      xs.length
        ? `${fmt(Math.min(...xs.map((x) => x.rate)))}-${fmt(Math.max(...xs.map((x) => x.rate)))}`
        : "-";
    // per-round ratios: rounds are interleaved, so a round's load is shared by its measurements
    const perRound = (xs: Sample[]) =>
      xs.length ? median(xs.map((x, i) => x.rate / s[i]!.rate)).toFixed(3) : "-";
    spreads.push({
      backend: kind,
      "raw run()": spread(r),
      runSync: spread(s),
      "run (async)": spread(a),
      "hot entry": spread(t),
      "async/sync (median of rounds)": perRound(a),
      "hot/sync (median of rounds)": perRound(t),
      ...Object.fromEntries(HOT_GRACE_MS.map((ms, j) => [`hot, grace ${ms} ms/sync`, perRound(graces[j]!)])),
      ...Object.fromEntries(
        HOT_GRACE_MS.map((ms, j) => [
          `hot/(hot, grace ${ms} ms)`,
          graces[j]!.length ? median(t.map((x, i) => x.rate / graces[j]![i]!.rate)).toFixed(3) : "-",
        ]),
      ),
      "io share (hot)": t.length ? median(t.map((x) => x.ioShare)).toFixed(3) : "-",
      "hot phases per run": t.length ? t.map((x) => x.hot?.phases ?? 0).join(",") : "-",
      "exits in hot phases": t.length ? t.map((x) => (x.hot?.share ?? 0).toFixed(2)).join(",") : "-",
    });
    rows.push({
      backend: kind,
      "raw run() exits/s": fmt(rate(r)),
      "runSync exits/s": fmt(rate(s)),
      "run (async) exits/s": fmt(rate(a)),
      "async, hot entry": t.length ? fmt(rate(t)) : "-",
      ...Object.fromEntries(
        SPIN_MS.map((ms, j) => [`async, spin ${ms} ms`, spins[j]!.length ? fmt(rate(spins[j]!)) : "-"]),
      ),
      "async/sync": (rate(a) / rate(s)).toFixed(3),
      "raw user ns/exit": fmt(userNs(r)),
      "loop ns/exit (sync)": fmt(userNs(s) - userNs(r)),
      "loop ns/exit (async)": fmt(userNs(a) - userNs(r)),
      "io share": median(s.map((x) => x.ioShare)).toFixed(3),
    });
  }
  console.log(
    `port-I/O exits through the machine loop: ${seconds} s per measurement, ${rounds} interleaved rounds, medians;` +
      " loop ns/exit = user CPU per exit of the loop minus that of the bare run() loop",
  );
  if (rows.length) console.table(rows);
  if (rows.length) {
    console.log("exits/s min-max over the rounds, and ratios to the same round's runSync");
    console.table(spreads);
  }
}

await main();
