// Port writes per second: the same guest (an OUT loop) run by a plain C KVM_RUN loop (kvm_exits.c),
// by lib/kvm's KvmVcpu.run() in a bare loop, and through the whole machine (vm.runSync() and
// `await vm.run()`, the one exit loop, the port bus, a vm.io.onOut handler), for each available
// binding, with and without coalesced PIO (KVM queues the writes in its ring; the loop replays them
// as exits). Rounds interleaved in the same boot, the order rotated per round; medians. Ratios are
// against the C loop (issue 15's targets: sync >= 0.95, async >= 0.8 x sync).
//
//   npx tsc -p tsconfig.json && node dist/bench/kvm-exits/run.js [writes=100000] [rounds=3] [rows=all|c,bare,sync,async]

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { availableBindings, type BindingKind, Kvm, type KvmExit, probeKvm } from "../../lib/kvm/index.js";
import { KvmMachineBackend } from "../../lib/vmm/backends/kvm.js";
import { createMachine } from "../../lib/vmm/machine.js";

// mov dx,0xe9; l: inc al; out dx,al; jmp l   (the C peer runs the same bytes)
const GUEST = [0xba, 0xe9, 0x00, 0xfe, 0xc0, 0xee, 0xeb, 0xfb];
const PORT = 0xe9;

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (
    !existsSync(join(dir, "package.json")) ||
    !readFileSync(join(dir, "package.json"), "utf8").includes('"nodevmm"')
  ) {
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the nodevmm package root");
    dir = up;
  }
  return dir;
}

/** The C peer: from the CMake build when there is one, else compiled here with cc. */
function cPeer(root: string): string {
  const source = join(root, "bench/kvm-exits/kvm_exits.c");
  const candidates = [
    process.env.NODEVMM_KVM_EXITS_C,
    join(root, "build/bench/kvm-exits/kvm_exits_c"),
    join(root, "build/cmake/bench/kvm-exits/kvm_exits_c"),
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  const out = join(root, ".cache/bench/kvm_exits_c");
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(source).mtimeMs) {
    mkdirSync(dirname(out), { recursive: true });
    execFileSync(process.env.CC ?? "cc", ["-O2", "-o", out, source], { stdio: "inherit" });
  }
  return out;
}

interface Rate {
  /** exits per wall-clock second */
  wall: number;
  /** exits per CPU second (user + system): less disturbed when other work shares the cores */
  cpu: number;
  /** user-space CPU time per exit, in ns: what the loop itself costs, the kernel's part aside */
  userNs: number;
}

function runC(peer: string, exits: number): Rate {
  const r = JSON.parse(execFileSync(peer, [String(exits)], { encoding: "utf8" })) as {
    exits: number;
    seconds: number;
    cpuSeconds: number;
    userSeconds: number;
  };
  return { wall: r.exits / r.seconds, cpu: r.exits / r.cpuSeconds, userNs: (r.userSeconds * 1e9) / r.exits };
}

/** nodevmm's loop: run, decode, dispatch on the exit kind and port, as lib/vmm's loop does. */
function runNodevmm(binding: BindingKind, exits: number): Rate {
  const kvm = Kvm.open({ binding });
  try {
    const vm = kvm.createVm();
    vm.setTssAddress(0xfffbd000);
    const mem = vm.allocateMemory(0, 0x10000);
    mem.bytes.set(GUEST, 0x1000);
    const vcpu = vm.createVcpu(0);
    const s = vcpu.getSregs();
    const zero = (seg: typeof s.cs) => ({ ...seg, base: 0n, selector: 0 });
    vcpu.setSregs({
      ...s,
      cs: zero(s.cs),
      ds: zero(s.ds),
      es: zero(s.es),
      fs: zero(s.fs),
      gs: zero(s.gs),
      ss: zero(s.ss),
    });
    vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rflags: 2n });
    let checksum = 0;
    const outHandlers = new Map<number, (data: Uint8Array) => void>([
      [
        PORT,
        (d) => {
          checksum += d[0]!;
        },
      ],
    ]);
    const handle = (exit: KvmExit): void => {
      switch (exit.kind) {
        case "io":
          if (exit.direction === "out") outHandlers.get(exit.port)?.(exit.data);
          return;
        case "intr":
          return;
        default:
          throw new Error(`unexpected exit ${exit.kind}`);
      }
    };
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let n = 0; n < exits; n++) handle(vcpu.run());
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    if (checksum === 0) throw new Error("the handler never saw the guest's data");
    return {
      wall: exits / seconds,
      cpu: exits / ((cpu.user + cpu.system) / 1e6),
      userNs: (cpu.user * 1e3) / exits,
    };
  } finally {
    kvm.close();
  }
}

/** The machine: createMachine on KVM with `binding`, the guest at 0x7C00, a vm.io.onOut handler. */
async function runMachine(
  binding: BindingKind,
  mode: "sync" | "async",
  coalesce: boolean,
  writes: number,
): Promise<Rate> {
  const vm = await createMachine({
    memoryMiB: 4,
    backend: (o) => new KvmMachineBackend({ memoryBytes: o.memoryBytes, binding }),
  });
  try {
    let seen = 0;
    let checksum = 0;
    vm.io.onOut(PORT, (_p, _s, v) => {
      seen++;
      checksum += v;
    });
    if (coalesce && !vm.coalesceWrites("io", PORT)) throw new Error("this KVM cannot coalesce port writes");
    vm.loadFlat(Uint8Array.from(GUEST));
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    // maxExits counts the replayed writes too: the run ends after `writes` of them (and a few kicks)
    const r = mode === "sync" ? vm.runSync({ maxExits: writes }) : await vm.run({ maxExits: writes });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    if (r.reason !== "max-exits") throw new Error(`run ended with ${r.reason} (${r.message})`);
    if (checksum === 0) throw new Error("the handler never saw the guest's data");
    return {
      wall: seen / seconds,
      cpu: seen / ((cpu.user + cpu.system) / 1e6),
      userNs: (cpu.user * 1e3) / seen,
    };
  } finally {
    vm.close();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Row {
  name: string;
  run: () => Rate | Promise<Rate>;
}

async function main(): Promise<void> {
  const exits = Number(process.argv[2] ?? 100_000);
  const rounds = Number(process.argv[3] ?? 3);
  const want = new Set((process.argv[4] ?? "c,bare,sync,async").split(","));
  const probe = probeKvm();
  if (!probe.usable) {
    console.log(`kvm-exits: skipped, /dev/kvm is not usable here (${probe.reason})`);
    return;
  }
  const peer = cPeer(packageRoot());
  const bindings = availableBindings();
  let coalescing = false;
  {
    const vm = await createMachine({ memoryMiB: 4, backend: "kvm" });
    coalescing = vm.coalesceWrites("io", PORT);
    vm.close();
  }
  const rows: Row[] = [];
  if (want.has("c")) rows.push({ name: "plain C (KVM_RUN loop)", run: () => runC(peer, exits) });
  for (const b of bindings) {
    if (want.has("bare")) rows.push({ name: `KvmVcpu.run() loop (${b})`, run: () => runNodevmm(b, exits) });
    for (const mode of ["sync", "async"] as const) {
      if (!want.has(mode)) continue;
      // koffi has no vCPU thread: its async runs slice on the main thread
      const label =
        mode === "sync" ? "vm.runSync()" : `await vm.run()${b === "koffi" ? " (no vCPU thread)" : ""}`;
      rows.push({ name: `${label} (${b})`, run: () => runMachine(b, mode, false, exits) });
      if (coalescing) {
        rows.push({ name: `${label} (${b}), coalesced`, run: () => runMachine(b, mode, true, exits) });
      }
    }
  }
  const results = new Map<string, Rate[]>(rows.map((r) => [r.name, []]));
  // warm-up: JIT the loops
  runNodevmm(bindings[0]!, Math.min(exits, 5000));
  await runMachine(bindings[0]!, "sync", false, Math.min(exits, 5000));
  for (let r = 0; r < rounds; r++) {
    // rotated, so that no row always runs first or right after the C process
    for (let i = 0; i < rows.length; i++) {
      const row = rows[(i + r) % rows.length]!;
      results.get(row.name)!.push(await row.run());
    }
  }
  const c = results.get("plain C (KVM_RUN loop)");
  const cWall = c?.length ? median(c.map((x) => x.wall)) : Number.NaN;
  const cCpu = c?.length ? median(c.map((x) => x.cpu)) : Number.NaN;
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
  console.log(
    `port writes (OUT 0xe9): ${exits.toLocaleString("en-US")} per run, ${rounds} interleaved rounds, medians; ` +
      `coalesced PIO ${coalescing ? "available" : "not available here"}`,
  );
  console.table(
    rows.map(({ name }) => {
      const xs = results.get(name)!;
      const wall = median(xs.map((r) => r.wall));
      const cpu = median(xs.map((r) => r.cpu));
      return {
        loop: name,
        "writes/s": fmt(wall),
        "ns/write": fmt(1e9 / wall),
        "ratio vs C": (wall / cWall).toFixed(3),
        "writes/CPU-s": fmt(cpu),
        "ratio vs C (CPU)": (cpu / cCpu).toFixed(3),
        "user ns/write": fmt(median(xs.map((r) => r.userNs))),
      };
    }),
  );
}

await main();
