// MIPS benchmark of the x86 interpreter (issue 3, "Speed"): the guests in bench/guests run an ALU loop
// (add, xor, add, dec, jnz) and a memory loop (load, add, store, inc, and, dec, jnz) in 16-bit real,
// 32-bit protected and 64-bit long mode; MIPS is measured between the guest's 'S' and 'E' writes to
// port 0xE9. The interpreter's retired-instruction count between them is checked against the
// expected count and every checksum against a JavaScript model; QEMU TCG and v86 run the same images
// side by side when installed.
//
//   node dist/bench/cpu-mips/run.js [--iterations N] [--qemu-iterations N] [--modes real,prot,long]
//     [--interpreter-only]
//
// Without --iterations the interpreter's loop count is calibrated per mode (a short run first) so
// that each timed loop takes about a second.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Phase } from "./debug-stream.js";
import { runOnInterpreter } from "./interp.js";
import { expectedChecksum, LOOP_SHAPE, type Loop, type Mode } from "./model.js";
import { qemuVersion, runOnQemu } from "./qemu.js";

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

const mips = (instructions: number, p: Phase) => instructions / ((p.endMs - p.startMs) * 1000);

interface Row {
  mode: Mode;
  loop: Loop;
  iterations: number;
  interp: string;
  qemu: string;
  v86: string;
  notes: string[];
}

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
  // --interpreter-only: skip the peers (quick before/after comparisons of the interpreter)
  const only = process.argv.includes("--interpreter-only");
  const qemu = only ? undefined : qemuVersion();
  let v86 = false;
  try {
    createRequire(import.meta.url).resolve("v86");
    v86 = true;
  } catch {
    v86 = false;
  }
  console.log(
    `interpreter: ${fixedIterations ?? "calibrated"} iterations per loop; QEMU TCG: ${qemu ? `${qemu}, ${qemuIterations} iterations` : only ? "skipped" : "not installed"}; v86: ${v86 ? "installed" : "not installed"}`,
  );

  const rows: Row[] = [];
  let failed = false;
  for (const mode of modes) {
    const modeRows = LOOPS.map(
      (loop): Row => ({
        mode,
        loop,
        iterations: 0,
        interp: "-",
        qemu: qemu ? "-" : only ? "skipped" : "not installed",
        v86: v86 ? "no runner" : "not installed",
        notes: [],
      }),
    );
    rows.push(...modeRows);

    const iterations = fixedIterations ?? calibrate(mode);
    modeRows.forEach((r) => {
      r.iterations = iterations;
    });
    const run = runOnInterpreter(image(mode, iterations), iterations * 20 + 1_000_000);
    if (run.error) {
      modeRows[0]!.notes.push(`interpreter: ${run.error}`);
      failed = true;
    }
    run.stream.phases.forEach((p, i) => {
      const row = modeRows[i];
      if (!row) return;
      const shape = LOOP_SHAPE[row.loop];
      const expected = shape.perIteration * iterations + shape.extra;
      const counted = p.endRetired - p.startRetired;
      row.interp = mips(expected, p).toFixed(1);
      if (counted !== expected) {
        row.notes.push(`retired ${counted}, expected ${expected}`);
        failed = true;
      }
      const sum = expectedChecksum(mode, row.loop, iterations);
      if (p.checksum !== sum) {
        row.notes.push(`interpreter checksum ${hex(p.checksum)}, model ${hex(sum)}`);
        failed = true;
      }
    });

    if (qemu) {
      const q = await runOnQemu(image(mode, qemuIterations), 120_000);
      if (q.error) modeRows[0]!.notes.push(q.error);
      q.stream.phases.forEach((p, i) => {
        const row = modeRows[i];
        if (!row) return;
        const shape = LOOP_SHAPE[row.loop];
        // 'S' and 'E' in one pipe read: the loop was shorter than the pipe's latency
        row.qemu =
          p.endMs > p.startMs
            ? mips(shape.perIteration * qemuIterations + shape.extra, p).toFixed(0)
            : "too short to time";
        const sum = expectedChecksum(mode, row.loop, qemuIterations);
        if (p.checksum !== sum) row.notes.push(`qemu checksum ${hex(p.checksum)}, model ${hex(sum)}`);
      });
    }
  }

  const header = ["mode", "loop", "iterations", "interpreter MIPS", "QEMU TCG MIPS", "v86 MIPS", "notes"];
  const table = rows.map((r) => [
    MODE_NAME[r.mode],
    r.loop === "alu" ? "ALU (5/iter)" : "memory (7/iter)",
    String(r.iterations),
    r.interp,
    r.qemu,
    r.v86,
    r.notes.join("; ") || "ok",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of table) console.log(line(row));
  return failed ? 1 : 0;
}

/** A loop count that makes the slower (memory) loop of `mode` run for about a second. */
function calibrate(mode: Mode): number {
  const probe = 200_000;
  const run = runOnInterpreter(image(mode, probe), probe * 20 + 1_000_000);
  const p = run.stream.phases[1];
  if (run.error || !p || p.endMs <= p.startMs) return probe;
  const perSecond = (probe * 1000) / (p.endMs - p.startMs);
  return Math.max(probe, Math.min(100_000_000, Math.round(perSecond)));
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
