// Port-I/O exits per second: nodevmm's loop (KvmVcpu.run + decode + a port handler) against the same
// guest run by a plain C KVM_RUN loop (kvm_exits.c), for each available binding, rounds interleaved
// in the same boot. Prints a table with the ratio nodevmm/C (target: >= 0.9 with the addon).
//
//   npx tsc -p tsconfig.json && node dist/bench/kvm-exits/run.js [exits=100000] [rounds=3]

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { availableBindings, type BindingKind, Kvm, type KvmExit, probeKvm } from "../../lib/kvm/index.js";

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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function main(): void {
  const exits = Number(process.argv[2] ?? 100_000);
  const rounds = Number(process.argv[3] ?? 3);
  const probe = probeKvm();
  if (!probe.usable) {
    console.log(`kvm-exits: skipped, /dev/kvm is not usable here (${probe.reason})`);
    return;
  }
  const peer = cPeer(packageRoot());
  const bindings = availableBindings();
  const results = new Map<string, Rate[]>([["c", []], ...bindings.map((b) => [b, []] as [string, Rate[]])]);
  runNodevmm(bindings[0]!, Math.min(exits, 5000)); // warm-up: JIT the loop
  for (let r = 0; r < rounds; r++) {
    results.get("c")!.push(runC(peer, exits));
    for (const b of bindings) results.get(b)!.push(runNodevmm(b, exits));
  }
  const cWall = median(results.get("c")!.map((r) => r.wall));
  const cCpu = median(results.get("c")!.map((r) => r.cpu));
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
  const rows = [...results].map(([name, xs]) => {
    const wall = median(xs.map((r) => r.wall));
    const cpu = median(xs.map((r) => r.cpu));
    return {
      loop: name === "c" ? "plain C (KVM_RUN loop)" : `nodevmm (${name})`,
      "exits/s": fmt(wall),
      "ns/exit": fmt(1e9 / wall),
      "ratio vs C": (wall / cWall).toFixed(3),
      "exits/CPU-s": fmt(cpu),
      "ratio vs C (CPU)": (cpu / cCpu).toFixed(3),
      "user ns/exit": fmt(median(xs.map((r) => r.userNs))),
    };
  });
  console.log(
    `port-I/O exits: ${exits.toLocaleString("en-US")} per run, ${rounds} interleaved rounds, medians` +
      " (wall clock, and per CPU second of the looping process)",
  );
  console.table(rows);
}

main();
