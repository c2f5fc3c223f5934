// MIPS benchmark (issues 3 and 9): the guests in bench/guests run an ALU loop (add, xor, add, dec,
// jnz) and a memory loop (load, add, store, inc, and, dec, jnz) in 16-bit real, 32-bit protected and
// 64-bit long mode; MIPS is measured between the guest's 'S' and 'E' writes to port 0xE9, on the
// paths users run on the software backend, beside the bare interpreter and QEMU TCG:
//
// - `nodevmm run IMAGE --backend soft --debugcon stdio` as a child process ('S'/'E' timed on its
//   stdout pipe) -- the headline;
// - createMachine({ backend: "soft" }) + addPcDevices + vm.load + `await vm.run()` in this process
//   ('S'/'E' timed in the debug console's output callback);
// - the bare interpreter (createBareHooks, no VMX layer: the engine's ceiling), with its
//   retired-instruction count checked against the expected count;
// - QEMU TCG (installed from Debian's packages when missing and root), as a floppy boot sector.
//
// Every checksum is checked against a JavaScript model (model.ts).
//
//   node dist/bench/cpu-mips/run.js [--iterations N] [--qemu-iterations N] [--modes real,prot,long]
//     [--interpreter-only] [--no-cli] [--no-qemu]
//
// Without --iterations the loop count is calibrated per mode so that the slower loop takes about a
// second: on the bare interpreter and on createMachine; all our paths then run the same count unless
// the soft backend is so much slower than the bare interpreter that the bare run would be too short
// to time (< 1/4 s), in which case each keeps its own count (the table says so).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Phase } from "./debug-stream.js";
import { runOnInterpreter } from "./interp.js";
import { expectedChecksum, LOOP_SHAPE, type Loop, type Mode } from "./model.js";
import { runOnCli, runOnMachine } from "./product.js";
import { ensureQemu, runOnQemu } from "./qemu.js";

const here = dirname(fileURLToPath(import.meta.url));
// compiled to dist/bench/cpu-mips; the images stay in the source tree
const guestDir = [resolve(here, "../../../bench/guests"), resolve(here, "../guests")].find((d) => {
  try {
    readFileSync(join(d, "mips-real.bin"));
    return true;
  } catch {
    return false;
  }
});

const ITER_OFFSET = 0x1f8;
const MODES: Mode[] = ["real", "prot", "long"];
const LOOPS: Loop[] = ["alu", "mem"];
const MODE_NAME: Record<Mode, string> = {
  real: "16-bit real",
  prot: "32-bit protected",
  long: "64-bit long",
};
/** the slower loop of a calibrated run takes about this long */
const TARGET_MS = 1000;
const MAX_ITERATIONS = 100_000_000;
/** bare runs shorter than this (at the product path's count) get their own count */
const MIN_BARE_MS = 250;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function intArg(name: string, fallback: number): number {
  const v = arg(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0 || n > 0xffffffff) {
    console.error(`--${name} must be an integer in 1..2^32-1, got ${v}`);
    process.exit(2);
  }
  return n;
}

function image(mode: Mode, iterations: number): Uint8Array {
  const img = new Uint8Array(readFileSync(join(guestDir!, `mips-${mode}.bin`)));
  new DataView(img.buffer).setUint32(ITER_OFFSET, iterations, true);
  return img;
}

const instructions = (loop: Loop, n: number) => LOOP_SHAPE[loop].perIteration * n + LOOP_SHAPE[loop].extra;
const mips = (count: number, p: Phase) => count / ((p.endMs - p.startMs) * 1000);
const phaseMs = (p: Phase) => p.endMs - p.startMs;

type PathName = "cli" | "machine" | "bare" | "qemu";

interface Row {
  mode: Mode;
  loop: Loop;
  iterations: Partial<Record<PathName, number>>;
  mips: Partial<Record<PathName, number>>;
  cell: Partial<Record<PathName, string>>;
  notes: string[];
}

interface PathRun {
  phases: Phase[];
  error?: string;
}

/**
 * A loop count that makes the slower loop of an image take about TARGET_MS on `run`: probes from
 * `probe` iterations up until a loop takes at least 100 ms, then scales.
 */
async function calibrate(run: (n: number) => Promise<PathRun>, probe: number): Promise<number> {
  let n = probe;
  for (;;) {
    const r = await run(n);
    if (r.error || r.phases.length < 2) return n;
    const ms = Math.max(...r.phases.map(phaseMs));
    if (ms >= 100 || n >= MAX_ITERATIONS) {
      return Math.max(1000, Math.min(MAX_ITERATIONS, Math.round((n * TARGET_MS) / Math.max(ms, 1e-3))));
    }
    n = Math.min(MAX_ITERATIONS, n * (ms <= 0 ? 100 : Math.min(100, Math.ceil(200 / ms))));
  }
}

const bare = async (mode: Mode, n: number): Promise<PathRun & { retired: number }> => {
  const r = runOnInterpreter(image(mode, n), n * 20 + 1_000_000);
  return { phases: r.stream.phases, retired: r.retired, ...(r.error ? { error: r.error } : {}) };
};

/** generous (2 us per iteration, ~3.5 MIPS): the host may be loaded, the soft backend slow */
const timeoutFor = (n: number) => 60_000 + n * 0.002;

const onMachine = async (mode: Mode, n: number): Promise<PathRun> => {
  const r = await runOnMachine(image(mode, n), timeoutFor(n));
  return { phases: r.stream.phases, ...(r.error ? { error: r.error } : {}) };
};

async function main(): Promise<number> {
  if (!guestDir) {
    console.error("bench/guests/mips-*.bin not found (run bench/guests/build.sh)");
    return 1;
  }
  const fixedIterations = arg("iterations") === undefined ? undefined : intArg("iterations", 1);
  const qemuIterations = intArg("qemu-iterations", 200_000_000);
  const modes = (arg("modes")?.split(",") ?? MODES) as Mode[];
  for (const m of modes) {
    if (!MODES.includes(m)) {
      console.error(`unknown mode ${m} (real, prot, long)`);
      return 2;
    }
  }
  // --interpreter-only: the bare interpreter alone (quick before/after comparisons of the engine)
  const only = process.argv.includes("--interpreter-only");
  const withCli = !only && !process.argv.includes("--no-cli");
  const withMachine = !only;
  const qemu = only || process.argv.includes("--no-qemu") ? { reason: "skipped" } : ensureQemu();
  let v86 = false;
  try {
    createRequire(import.meta.url).resolve("v86");
    v86 = true;
  } catch {
    v86 = false;
  }
  console.log(
    `iterations: ${fixedIterations ?? "calibrated per mode (~1 s for the slower loop)"}; QEMU TCG: ${"version" in qemu ? `${qemu.version}, ${qemuIterations} iterations` : qemu.reason}; v86: ${v86 ? "installed (no runner)" : "not installed"}`,
  );

  const rows: Row[] = [];
  let failed = false;
  const check = (row: Row, path: PathName, n: number, p: Phase | undefined, label: string) => {
    if (!p) return;
    row.iterations[path] = n;
    const count = instructions(row.loop, n);
    if (p.endMs > p.startMs) {
      row.mips[path] = mips(count, p);
      row.cell[path] = row.mips[path]!.toFixed(path === "qemu" ? 0 : 1);
    } else {
      // 'S' and 'E' in one pipe read: the loop was shorter than the pipe's latency
      row.cell[path] = "too short to time";
    }
    const sum = expectedChecksum(row.mode, row.loop, n);
    if (p.checksum !== sum) {
      row.notes.push(`${label} checksum ${hex(p.checksum)}, model ${hex(sum)}`);
      row.cell[path] = "bad checksum";
      if (path !== "qemu") failed = true;
    }
  };
  const checkAll = (modeRows: Row[], path: PathName, n: number, phases: Phase[], label: string) => {
    for (const [i, p] of phases.entries()) if (modeRows[i]) check(modeRows[i], path, n, p, label);
  };
  const fail = (modeRows: Row[], path: PathName, label: string, error: string) => {
    modeRows[0]!.notes.push(`${label}: ${error}`);
    for (const r of modeRows) r.cell[path] ??= "failed";
    if (path !== "qemu") failed = true;
  };

  for (const mode of modes) {
    const modeRows = LOOPS.map(
      (loop): Row => ({ mode, loop, iterations: {}, mips: {}, cell: {}, notes: [] }),
    );
    rows.push(...modeRows);

    // loop counts: the same for every path of ours when that keeps the bare run timeable
    let nBare = fixedIterations ?? (await calibrate((n) => bare(mode, n), 200_000));
    let nSoft = nBare;
    if (fixedIterations === undefined && withMachine) {
      nSoft = await calibrate((n) => onMachine(mode, n), 50_000);
      const common = Math.min(nBare, nSoft);
      if ((common / nBare) * TARGET_MS >= MIN_BARE_MS) {
        nBare = common;
        nSoft = common;
      }
    }

    if (withCli) {
      const r = await runOnCli(image(mode, nSoft), timeoutFor(nSoft));
      if (r.error) fail(modeRows, "cli", "nodevmm run", r.error);
      checkAll(modeRows, "cli", nSoft, r.stream.phases, "nodevmm run");
    }
    if (withMachine) {
      const r = await onMachine(mode, nSoft);
      if (r.error) fail(modeRows, "machine", "createMachine", r.error);
      checkAll(modeRows, "machine", nSoft, r.phases, "createMachine");
    }
    {
      const r = await bare(mode, nBare);
      if (r.error) fail(modeRows, "bare", "bare interpreter", r.error);
      r.phases.forEach((p, i) => {
        const row = modeRows[i];
        if (!row) return;
        check(row, "bare", nBare, p, "bare interpreter");
        const counted = p.endRetired - p.startRetired;
        const expected = instructions(row.loop, nBare);
        if (counted !== expected) {
          row.notes.push(`bare interpreter retired ${counted}, expected ${expected}`);
          failed = true;
        }
      });
    }
    if ("version" in qemu) {
      const r = await runOnQemu(image(mode, qemuIterations), 120_000);
      if (r.error) fail(modeRows, "qemu", "qemu", r.error);
      checkAll(modeRows, "qemu", qemuIterations, r.stream.phases, "qemu");
    } else {
      for (const r of modeRows) r.cell.qemu = qemu.reason;
    }
  }

  const header = [
    "mode",
    "loop",
    "iterations",
    "nodevmm run MIPS",
    "createMachine MIPS",
    "bare interpreter MIPS",
    "run / bare",
    "createMachine / bare",
    "QEMU TCG MIPS",
    "notes",
  ];
  const ratio = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}x` : "-";
  const skipped = (on: boolean) => (on ? "-" : "skipped");
  const table = rows.map((r) => [
    MODE_NAME[r.mode],
    r.loop === "alu" ? "ALU (5/iter)" : "memory (7/iter)",
    iterationsCell(r),
    r.cell.cli ?? skipped(withCli),
    r.cell.machine ?? skipped(withMachine),
    r.cell.bare ?? "-",
    ratio(r.mips.cli, r.mips.bare),
    ratio(r.mips.machine, r.mips.bare),
    r.cell.qemu ?? "-",
    r.notes.join("; ") || "ok",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of table) console.log(line(row));
  return failed ? 1 : 0;
}

/** our paths' loop count: one number when they ran the same, else per path */
function iterationsCell(r: Row): string {
  const soft = r.iterations.machine ?? r.iterations.cli;
  const bare = r.iterations.bare;
  if (soft === undefined || bare === undefined || soft === bare) return String(soft ?? bare ?? "-");
  return `${soft} (bare ${bare})`;
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, "0")}`;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
