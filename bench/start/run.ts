// Start-up: wall time of `nodevmm` commands, from spawn to exit, beside `node -e 0` (the floor any
// Node command pays). The guest is the one-sector examples/images/real-hello.bin (what `npm start`
// boots). Each command runs from the bundled CLI with its code cache (dist/cli, made by
// scripts/build-cli.mjs) and from tsc's modules (dist/lib/cli), which bin/nodevmm.js falls back to;
// rounds are interleaved and the medians printed. Beside wall time, the CPU time the command used
// (user + system, all its threads; Linux, from /proc): wall time on a shared machine moves with
// other load, CPU time much less.
//
//   npm run build && node dist/bench/start/run.js [runs=15]

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const bin = `${root}bin/nodevmm.js`;
const GUEST = "examples/images/real-hello.bin";
const GUEST_SAYS = "Hello from real mode";
/** issue 9: a one-sector guest's `nodevmm run` within this much of `node -e 0` */
const TARGET_MS = 100;

type Entry = "bundle" | "lib";

interface Row {
  command: string;
  entry?: Entry;
  argv: string[];
  /** what stdout must contain for the run to count */
  expect?: string;
}

function bundleState(): string | undefined {
  const bundle = `${root}dist/cli/nodevmm.cjs`;
  const lib = `${root}dist/lib/cli/main.js`;
  if (!existsSync(bundle))
    return "dist/cli/nodevmm.cjs is missing (npm run build, or node scripts/build-cli.mjs)";
  if (existsSync(lib) && statSync(bundle).mtimeMs < statSync(lib).mtimeMs) {
    return "dist/cli/ is older than dist/lib/ (node scripts/build-cli.mjs)";
  }
  return undefined;
}

/**
 * CPU time of this process's waited-for children so far, ms (cutime + cstime of /proc/self/stat, in
 * clock ticks of 10 ms: a mean over many runs is finer than one run's), or undefined off Linux.
 */
function childrenCpuMs(): number | undefined {
  try {
    const stat = readFileSync("/proc/self/stat", "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields from the 3rd (state) on: cutime and cstime are the 16th and 17th
    return (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return undefined;
  }
}

interface Sample {
  wall: number;
  cpu: number | undefined;
}

function once(row: Row): Sample {
  const env = { ...process.env };
  if (row.entry) env.NODEVMM_CLI = row.entry;
  else delete env.NODEVMM_CLI;
  const cpu0 = childrenCpuMs();
  const t0 = performance.now();
  const r = spawnSync(process.execPath, row.argv, { cwd: root, env, encoding: "utf8", input: "" });
  const wall = performance.now() - t0;
  const cpu1 = childrenCpuMs();
  if (r.status !== 0 || (row.expect !== undefined && !r.stdout.includes(row.expect))) {
    throw new Error(
      `${row.command} (${row.entry ?? "-"}): status ${r.status}${r.signal ? ` (${r.signal})` : ""}; stdout ${JSON.stringify(r.stdout.slice(0, 200))}; stderr ${JSON.stringify(r.stderr.slice(0, 400))}`,
    );
  }
  return { wall, cpu: cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0 };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const ms = (x: number) => x.toFixed(1);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function main(): void {
  const runs = Number(process.argv[2] ?? 15);
  if (!Number.isInteger(runs) || runs < 1) throw new Error("usage: run.js [runs >= 1]");
  if (!existsSync(`${root}dist/lib/cli/main.js`))
    throw new Error("dist/lib/cli/main.js is missing (npm run build)");
  const stale = bundleState();
  const entries: Entry[] = stale ? ["lib"] : ["bundle", "lib"];
  if (stale) console.log(`start: bundled rows skipped: ${stale}`);
  else if (!existsSync(`${root}dist/cli/nodevmm.cache`)) {
    console.log("start: dist/cli/nodevmm.cache is missing: the bundle compiles from source");
  }

  const rows: Row[] = [{ command: "node -e 0", argv: ["-e", "0"] }];
  const commands: [string, string[], string | undefined][] = [
    ["nodevmm --version", ["--version"], undefined],
    ["nodevmm run (one sector) --backend soft", ["run", GUEST, "--backend", "soft"], GUEST_SAYS],
    ["nodevmm run (one sector) --backend auto", ["run", GUEST, "--backend", "auto"], GUEST_SAYS],
  ];
  for (const [command, args, expect] of commands) {
    for (const entry of entries) {
      rows.push({ command, entry, argv: [bin, ...args], ...(expect ? { expect } : {}) });
    }
  }

  // warm-up: the page cache, and a failure before any timing
  for (const row of rows) once(row);
  const samples = rows.map(() => [] as Sample[]);
  for (let i = 0; i < runs; i++) {
    for (const [j, row] of rows.entries()) samples[j]!.push(once(row));
  }

  const wall = (j: number) => samples[j]!.map((s) => s.wall);
  const cpu = (j: number) => {
    const xs = samples[j]!.map((s) => s.cpu);
    return xs.every((x) => x !== undefined) ? mean(xs as number[]) : undefined;
  };
  const floorWall = median(wall(0));
  const floorCpu = cpu(0);
  const table = rows.map((row, j) => {
    const c = cpu(j);
    return {
      command: row.command,
      entry:
        row.entry === "bundle"
          ? "dist/cli (bundle + code cache)"
          : row.entry === "lib"
            ? "dist/lib (tsc)"
            : "",
      "wall median ms": ms(median(wall(j))),
      "wall min ms": ms(Math.min(...wall(j))),
      "wall beyond node -e 0": j === 0 ? "" : ms(median(wall(j)) - floorWall),
      "cpu mean ms": c === undefined ? "-" : ms(c),
      "cpu beyond node -e 0": j === 0 || c === undefined || floorCpu === undefined ? "" : ms(c - floorCpu),
    };
  });
  console.log(
    `start-up, spawn to exit: ${runs} interleaved runs per row; wall: medians, cpu: means of user + system time; ${cpus().length} CPUs, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}; target: a one-sector run within ${TARGET_MS} ms of node -e 0`,
  );
  console.table(table);
}

main();
