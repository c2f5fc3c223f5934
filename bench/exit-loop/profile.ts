// Where the exit loop's time goes: runs the port-I/O guest of run.ts on one backend for a few
// seconds under the V8 sampling profiler (node:inspector, in process, so it works inside the
// nested-KVM lane whose file system is thrown away) and prints the functions with the most self
// time. Usage:
//
//   npx tsc -p tsconfig.json && node dist/bench/exit-loop/profile.js [sync|async|raw] [seconds=2] [kvm|soft]

import { Session } from "node:inspector/promises";
import type { BackendKind } from "../../lib/vmm/backend.js";
import { createMachine } from "../../lib/vmm/machine.js";

const GUEST = Uint8Array.from([0xba, 0xe9, 0x00, 0xfe, 0xc0, 0xee, 0xeb, 0xfb]);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self samples per function, largest first. */
export function selfTimes(nodes: readonly ProfileNode[]): { name: string; samples: number }[] {
  const by = new Map<string, number>();
  for (const n of nodes) {
    const f = n.callFrame;
    const file = f.url.replace(/^.*\/(dist|lib|node:internal)\//, "$1/");
    const name = `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`.trim();
    by.set(name, (by.get(name) ?? 0) + (n.hitCount ?? 0));
  }
  return [...by].map(([name, samples]) => ({ name, samples })).sort((a, b) => b.samples - a.samples);
}

async function main(): Promise<void> {
  const mode = process.argv[2] ?? "sync";
  const seconds = Number(process.argv[3] ?? 2);
  const kind = (process.argv[4] ?? "kvm") as BackendKind;
  if (!["sync", "async", "raw"].includes(mode) || !(seconds > 0)) {
    throw new Error("usage: profile.js [sync|async|raw] [seconds > 0] [kvm|soft]");
  }
  const vm = await createMachine({ memoryMiB: 4, backend: kind });
  let seen = 0;
  vm.io.onOut(0xe9, () => void seen++);
  vm.loadFlat(GUEST);
  const session = new Session();
  session.connect();
  try {
    // warm-up outside the profile: JIT the loop
    vm.runSync({ timeoutMs: 200 });
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 100 });
    await session.post("Profiler.start");
    const cpu0 = process.cpuUsage();
    let exits = 0;
    const t0 = performance.now();
    if (mode === "sync") exits = vm.runSync({ timeoutMs: seconds * 1000 }).exits;
    else if (mode === "async") exits = (await vm.run({ timeoutMs: seconds * 1000 })).exits;
    else {
      const v = vm.vcpu(0).backend;
      const end = t0 + seconds * 1000;
      while (performance.now() < end) for (let i = 0; i < 1000; i++, exits++) v.run();
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const { profile } = await session.post("Profiler.stop");
    const rows = selfTimes(profile.nodes as ProfileNode[]);
    const total = rows.reduce((s, r) => s + r.samples, 0);
    console.log(
      `${kind} ${mode}: ${exits} exits in ${ms.toFixed(0)} ms (${Math.round(exits / (ms / 1000))}/s), ` +
        `user ${Math.round((cpu.user * 1000) / exits)} ns/exit, system ${Math.round((cpu.system * 1000) / exits)} ns/exit; ` +
        `${total} samples`,
    );
    console.table(
      rows.slice(0, 25).map((r) => ({ function: r.name, "self %": ((100 * r.samples) / total).toFixed(1) })),
    );
  } finally {
    session.disconnect();
    vm.close();
  }
}

await main();
