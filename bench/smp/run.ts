// bench/smp (issue 11): the SMP test guest (examples/images/smp.elf, examples/guests/smp.c) on 1 and
// 2 vCPUs through createMachine + addPcDevices + vm.load + `await vm.run()`, as programs run it:
//   - CPU-bound work: `test=compute n=N`, the CPUs share out N values of a 32-bit hash and sum them
//     (each run's sum is checked against the host's), timed on 1 vCPU and on 2, and the speed-up
//     (the issue's target on this 2-core machine: at least 1.7x on soft);
//   - CPU-bound work on 4 vCPUs on the soft backend: a worker thread each, 2 threads (the vCPUs
//     moving between them), one thread;
//   - the IPI round trip: `test=pingpong`, CPU 0 sends a fixed IPI to CPU 1 whose handler sends one
//     back; (time of R2 rounds - time of R1 rounds) / (R2 - R1), so booting and starting the AP
//     cancel out.
// Per backend this host has (soft; soft deterministic; KVM where /dev/kvm works and takes several
// vCPUs), beside QEMU TCG booting the same kernel (`-smp N -kernel smp.elf`, TCG's CPU threads)
// when qemu-system-x86_64 is installed. The time of a run is the median of a few, less the same
// guest's run with n=0 (boot, ACPI, AP start-up): the work alone.
//
//   npm run build && node dist/bench/smp/run.js [--n N] [--qemu-n N] [--rounds R] [--repeats K] [--no-qemu]

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { computeSum } from "../../examples/guests/smp-compute.js";
import { probeKvm } from "../../lib/kvm/index.js";
import { SoftVcpuPool } from "../../lib/vmm/backends/soft/threads-pool.js";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { createMachine, type MachineOptions } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { QEMU, qemuVersion, REPO } from "../cpu-mips/qemu.js";

const IMAGE = join(REPO, "examples", "images", "smp.elf");
/** issue 11: soft on 2 vCPUs at least this much faster than on 1 (2-core machine) */
const TARGET_SPEEDUP = 1.7;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} takes a non-negative integer`);
  return v;
}

const N = option("n", 40_000_000);
const QEMU_N = option("qemu-n", 400_000_000);
const ROUNDS = option("rounds", 400);
const REPEATS = Math.max(1, option("repeats", 3));
const withQemu = !process.argv.includes("--no-qemu");
/** only the 4-vCPU table */
const onlyFour = process.argv.includes("--four");

/** what a passing run's last line must be */
function lastLine(test: "compute" | "pingpong", cpus: number, n: number): string {
  if (test === "pingpong") return `pingpong: ${n} rounds: CPU 1 took ${n} pings, CPU 0 took ${n} pongs: ok`;
  return `compute: ${cpus} ${cpus === 1 ? "CPU" : "CPUs"}, ${n} values, sum 0x${computeSum(n).toString(16)}`;
}

interface Side {
  name: string;
  /** ms the run took, or throws with what went wrong */
  run(cpus: number, cmdline: string): Promise<{ ms: number; out: string }>;
}

function machineSide(name: string, opts: MachineOptions): Side {
  const image = new Uint8Array(readFileSync(IMAGE));
  return {
    name,
    async run(cpus, cmdline) {
      const vm = await createMachine({ ...opts, vcpus: cpus, memoryMiB: 16 });
      try {
        let out = "";
        addPcDevices(vm, {
          serial: (b: Uint8Array) => {
            out += Buffer.from(b).toString("latin1");
          },
        });
        vm.load(image, { format: "multiboot", cmdline });
        const t0 = performance.now();
        const r = await vm.run({ timeoutMs: 600_000 });
        const ms = performance.now() - t0;
        if (r.reason !== "debug-exit" || r.exitCode !== 1) {
          throw new Error(
            `${r.reason}${r.message ? ` (${r.message})` : ""}: ${out.trim().split("\n").pop()}`,
          );
        }
        return { ms, out };
      } finally {
        vm.close();
      }
    },
  };
}

function qemuSide(version: string): Side {
  return {
    name: `QEMU TCG ${/version (\S+)/.exec(version)?.[1] ?? version}`,
    async run(cpus, cmdline) {
      const t0 = performance.now();
      const r = spawnSync(
        QEMU,
        [
          ...["-accel", "tcg,thread=multi", "-M", "pc", "-m", "64", "-smp", String(cpus)],
          ...["-kernel", IMAGE, "-append", cmdline, "-device", "isa-debug-exit,iobase=0xf4,iosize=4"],
          ...["-serial", "stdio", "-display", "none", "-monitor", "none", "-nodefaults"],
        ],
        { encoding: "utf8", timeout: 600_000 },
      );
      const ms = performance.now() - t0;
      if (r.status !== 1)
        throw new Error(`QEMU exited ${r.status}: ${(r.stdout ?? "").trim().split("\n").pop()}`);
      return { ms, out: r.stdout };
    },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** median ms of `test` at n, less the median at n0 */
async function workMs(side: Side, cpus: number, test: "compute" | "pingpong", n: number, n0: number) {
  const timed = async (count: number) => {
    const ms: number[] = [];
    for (let k = 0; k < REPEATS; k++) {
      const r = await side.run(cpus, `test=${test} n=${count}`);
      const want = lastLine(test, cpus, count);
      if (r.out.trim().split("\n").pop() !== want)
        throw new Error(`printed ${JSON.stringify(r.out)}, want "${want}"`);
      ms.push(r.ms);
    }
    return median(ms);
  };
  return (await timed(n)) - (await timed(n0));
}

interface Row {
  side: string;
  one: string;
  two: string;
  speedup: string;
  rtt: string;
}

async function measure(side: Side, n: number): Promise<Row> {
  const row: Row = { side: side.name, one: "-", two: "-", speedup: "-", rtt: "-" };
  try {
    const one = await workMs(side, 1, "compute", n, 0);
    const two = await workMs(side, 2, "compute", n, 0);
    row.one = one.toFixed(0);
    row.two = two.toFixed(0);
    row.speedup = `${(one / two).toFixed(2)}x`;
    const rounds = await workMs(side, 2, "pingpong", ROUNDS, Math.max(1, ROUNDS >> 3));
    const perRound = rounds / (ROUNDS - Math.max(1, ROUNDS >> 3));
    row.rtt = perRound >= 1 ? `${perRound.toFixed(2)} ms` : `${(perRound * 1000).toFixed(1)} us`;
  } catch (e) {
    row.speedup = `failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  return row;
}

async function kvmSmp(): Promise<string | undefined> {
  const probe = probeKvm();
  if (!probe.usable) return `/dev/kvm not usable: ${probe.reason}`;
  try {
    (await createMachine({ backend: "kvm", vcpus: 2, memoryMiB: 16 })).close();
    return undefined;
  } catch (e) {
    if (e instanceof MachineConfigError) return e.message;
    throw e;
  }
}

const sides: { side: Side; n: number }[] = onlyFour
  ? []
  : [
      { side: machineSide("soft, vCPU threads", { backend: "soft", vcpuThread: true }), n: N },
      { side: machineSide("soft, one thread", { backend: "soft", vcpuThread: false }), n: N },
      { side: machineSide("soft, deterministic", { backend: "soft", deterministic: true }), n: N },
    ];
const skipped: string[] = [];
const rows: Row[] = [];
if (!onlyFour) {
  const kvmWhy = await kvmSmp();
  if (kvmWhy) skipped.push(`kvm: ${kvmWhy}`);
  else sides.push({ side: machineSide("kvm", { backend: "kvm" }), n: QEMU_N });
  if (withQemu) {
    const v = qemuVersion();
    if (v) sides.push({ side: qemuSide(v), n: QEMU_N });
    else skipped.push(`QEMU TCG: ${QEMU} is not installed`);
  }
  console.log(
    `bench/smp: compute (CPU-bound, the values shared out) on 1 and 2 vCPUs, and the IPI round trip ` +
      `(pingpong, ${ROUNDS} rounds less ${Math.max(1, ROUNDS >> 3)}); median of ${REPEATS}, boot (n=0) subtracted. ` +
      `soft's target: ${TARGET_SPEEDUP}x`,
  );
  for (const { side, n } of sides) {
    const row = await measure(side, n);
    rows.push(row);
    console.error(`  ${row.side}: done`);
  }
  const head = ["backend", "values", "1 vCPU ms", "2 vCPUs ms", "speed-up", "IPI round trip"];
  const body = rows.map((r, i) => [r.side, String(sides[i]!.n), r.one, r.two, r.speedup, r.rtt]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((b) => b[c]!.length)));
  const line = (cells: string[]) =>
    cells.map((x, c) => (c === 0 || c === 4 ? x.padEnd(widths[c]!) : x.padStart(widths[c]!))).join("  ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
  for (const s of skipped) console.log(`skipped: ${s}`);
}

// 4 vCPUs on the soft backend: a worker thread each, 2 threads (each a logical processor the
// vCPUs move between, VMCLEAR on one and VMPTRLD on the other; with and without the interpreters a
// worker keeps for the vCPUs that ran on it, SoftVcpuPool.keep), and one thread (the vCPUs' turns).
// The sides take turns run by run, so that what else the host does falls on all of them alike.
const FOUR = 4;
const keptDefault = { ...SoftVcpuPool.keep };
const four: { side: Side; keep: typeof keptDefault }[] = [
  { side: machineSide("soft, 4 threads", { backend: "soft", vcpuThread: true }), keep: keptDefault },
  { side: machineSide("soft, 2 threads", { backend: "soft", vcpuThreads: 2 }), keep: keptDefault },
  {
    side: machineSide("soft, 2 threads, fresh interpreters", { backend: "soft", vcpuThreads: 2 }),
    keep: { ...keptDefault, vcpus: 0 },
  },
  { side: machineSide("soft, one thread", { backend: "soft", vcpuThread: false }), keep: keptDefault },
];
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
console.log(
  `\ncompute on ${FOUR} vCPUs, ${N} values (median of ${REPEATS}, boot subtracted; runs interleaved; load average ${load()}):`,
);
const fourMs: { n: number[]; zero: number[]; error?: string }[] = four.map(() => ({ n: [], zero: [] }));
for (let k = 0; k < REPEATS; k++) {
  for (const [i, { side, keep }] of four.entries()) {
    const row = fourMs[i]!;
    if (row.error) continue;
    Object.assign(SoftVcpuPool.keep, keep);
    try {
      for (const [count, into] of [
        [N, row.n],
        [0, row.zero],
      ] as const) {
        const r = await side.run(FOUR, `test=compute n=${count}`);
        const want = lastLine("compute", FOUR, count);
        if (r.out.trim().split("\n").pop() !== want)
          throw new Error(`printed ${JSON.stringify(r.out)}, want "${want}"`);
        into.push(r.ms);
      }
    } catch (e) {
      row.error = `failed: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      Object.assign(SoftVcpuPool.keep, keptDefault);
    }
  }
  console.error(`  ${FOUR} vCPUs: round ${k + 1} of ${REPEATS} done`);
}
const fourHead = ["vCPUs on", `${FOUR} vCPUs ms`, "runs (ms, boot included)"];
const fourRows = four.map(({ side }, i) => {
  const r = fourMs[i]!;
  if (r.error) return [side.name, r.error, ""];
  return [side.name, (median(r.n) - median(r.zero)).toFixed(0), r.n.map((x) => x.toFixed(0)).join(" ")];
});
const fourWidths = fourHead.map((h, c) => Math.max(h.length, ...fourRows.map((r) => r[c]!.length)));
const fourLine = (cells: string[]) =>
  cells.map((x, c) => (c === 1 ? x.padStart(fourWidths[c]!) : x.padEnd(fourWidths[c]!))).join("  ");
console.log(fourLine(fourHead));
console.log(fourWidths.map((w) => "-".repeat(w)).join("  "));
for (const r of fourRows) console.log(fourLine(r));
console.log(`load average at the end: ${load()}`);
if (rows.some((r) => r.speedup.startsWith("failed")) || fourMs.some((r) => r.error)) process.exitCode = 1;
