// System-code benchmark (issue 9): guests that loop on what operating systems do all the time --
// page faults handled and resumed, timer interrupts, CR3 reloads, INVLPG, SYSCALL/SYSRET and
// INT 0x80 round trips, port-I/O and MMIO exits, PAUSE -- one measured loop per row, events per
// second on the software backend through the path users run (createMachine({ backend: "soft" }) +
// addPcDevices + vm.load + `await vm.run()`) beside QEMU TCG booting the same image as a floppy boot
// sector. Every run's result (a checksum or an event count the guest reports) is checked, so a
// broken loop cannot look fast.
//
//   node dist/bench/system-code/run.js [--rows pf,timer-spin,...] [--iterations N] [--seconds S]
//     [--timer-ticks T] [--no-qemu]
//
// Without --iterations each side's count is calibrated per row so that the measured loop takes
// about S seconds (default 1): on nodevmm after a second of the row's guest unmeasured (warm-up),
// a short probe, scaled up until it takes 100 ms, then to S (again when the estimate came out
// short); nodevmm's figure is the better of two runs of that count.

import { performance } from "node:perf_hooks";
import type { ChildRun } from "../cpu-mips/child.js";
import { type Phase, unexpectedText } from "../cpu-mips/debug-stream.js";
import { runOnMachine } from "../cpu-mips/product.js";
import { ensureQemu, runOnQemu } from "../cpu-mips/qemu.js";
import { guestDir, ROWS, rowImage, type SystemRow } from "./rows.js";

type Side = "soft" | "qemu";

interface Measured {
  /** events per second, when measured */
  rate?: number;
  /** the table cell: the rate, or why there is none */
  cell: string;
  iterations?: number;
  /** soft: VM exits per event */
  exitsPerEvent?: number;
  failed: boolean;
}

interface OneRun {
  phase?: Phase;
  error?: string;
  exits?: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function numArg(name: string, ok: (n: number) => boolean, what: string): number | undefined {
  const v = arg(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!ok(n)) {
    console.error(`--${name} must be ${what}, got ${v}`);
    process.exit(2);
  }
  return n;
}

const isCount = (n: number) => Number.isSafeInteger(n) && n > 0 && n <= 0xffffffff;
const PROBE: Record<Side, number> = { soft: 200, qemu: 20_000 };
/** a probe this long is long enough to scale from */
const PROBE_MS = 100;
const MAX_ITERATIONS = 0x7fffffff;
/** a probe that has not ended by then failed (the whole bench stays within a couple of minutes) */
const PROBE_TIMEOUT_MS = 10_000;
/** soft: how long each row's guest runs unmeasured first */
const WARMUP_MS = 1000;

function fromChild(r: ChildRun): OneRun {
  const phase = r.stream.phases[0];
  const error = unexpectedText(r.stream) ?? r.error ?? (phase ? undefined : "no 'S'/'E' from the guest");
  return { ...(phase ? { phase } : {}), ...(error ? { error } : {}) };
}

async function runOnce(side: Side, row: SystemRow, n: number, param: number | undefined, timeoutMs: number) {
  const image = rowImage(row, n, param);
  if (side === "qemu") return fromChild(await runOnQemu(image, timeoutMs));
  const r = await runOnMachine(image, timeoutMs);
  const phase = r.stream.phases[0];
  const error = unexpectedText(r.stream) ?? r.error ?? (phase ? undefined : "no 'S'/'E' from the guest");
  return { ...(phase ? { phase } : {}), ...(error ? { error } : {}), exits: r.exits } satisfies OneRun;
}

async function measure(
  side: Side,
  row: SystemRow,
  opts: { fixed?: number; targetMs: number; param?: number },
): Promise<Measured> {
  const ms = (r: OneRun) => (r.phase ? r.phase.endMs - r.phase.startMs : 0);
  if (side === "soft" && opts.fixed === undefined) {
    // warm-up: the row's guest with no end in sight, stopped by the run's time limit (V8 compiles
    // the paths this row takes: a process's first thousands of events of a kind run far slower)
    await runOnMachine(rowImage(row, MAX_ITERATIONS, opts.param), WARMUP_MS);
  }
  let n = opts.fixed ?? PROBE[side];
  let r = await runOnce(side, row, n, opts.param, PROBE_TIMEOUT_MS);
  if (opts.fixed === undefined) {
    // probe up to a loop that takes PROBE_MS, then scale to the target
    for (let k = 0; k < 6 && !r.error && ms(r) < PROBE_MS && n < MAX_ITERATIONS; k++) {
      n = Math.min(MAX_ITERATIONS, n * (ms(r) <= 0 ? 100 : Math.min(100, Math.ceil((2 * PROBE_MS) / ms(r)))));
      r = await runOnce(side, row, n, opts.param, PROBE_TIMEOUT_MS);
    }
    // scale to the target; again (twice at most) when the run came out shorter than half of it:
    // the probes were slowed by warm-up (a fresh machine's first thousands of events are slow)
    for (let k = 0; k < 3 && !r.error && ms(r) < opts.targetMs / 2 && n < MAX_ITERATIONS; k++) {
      const t = Math.max(ms(r), 1);
      n = Math.max(1, Math.min(MAX_ITERATIONS, Math.round((n * opts.targetMs) / t)));
      r = await runOnce(side, row, n, opts.param, Math.max(PROBE_TIMEOUT_MS, 5 * opts.targetMs));
    }
  }
  if (r.error || !r.phase) return { cell: `failed: ${r.error}`, iterations: n, failed: true };
  let phase = r.phase;
  let bad = row.check(n, phase.checksum);
  if (!bad && side === "soft" && opts.fixed === undefined) {
    // the better of two runs: warm-up still shows in the first on a loaded host
    const again = await runOnce(side, row, n, opts.param, Math.max(PROBE_TIMEOUT_MS, 5 * opts.targetMs));
    if (again.error || !again.phase) return { cell: `failed: ${again.error}`, iterations: n, failed: true };
    bad = row.check(n, again.phase.checksum);
    if (ms(again) > 0 && ms(again) < ms(r)) {
      r = again;
      phase = again.phase;
    }
  }
  if (bad) return { cell: `bad result: ${bad}`, iterations: n, failed: true };
  const events = row.events(n, phase.checksum);
  if (ms(r) <= 0) return { cell: "too short to time", iterations: n, failed: false };
  const rate = events / (ms(r) / 1000);
  return {
    rate,
    cell: Math.round(rate).toLocaleString("en-US"),
    iterations: n,
    failed: false,
    ...(r.exits !== undefined ? { exitsPerEvent: r.exits / events } : {}),
  };
}

async function main(): Promise<number> {
  if (!guestDir) {
    console.error("bench/guests/sys-*.bin not found (run bench/guests/build-system.sh)");
    return 1;
  }
  const fixed = numArg("iterations", isCount, "an integer in 1..2^32-1");
  const seconds = numArg("seconds", (n) => n > 0 && n <= 600, "a number of seconds in (0, 600]") ?? 1;
  const param = numArg("timer-ticks", isCount, "an integer in 1..2^32-1");
  const wanted = arg("rows")?.split(",");
  const rows = wanted
    ? ROWS.filter((r) => wanted.includes(r.image.replace(/^sys-/, "")) || wanted.includes(r.name))
    : ROWS;
  if (wanted && rows.length !== wanted.length) {
    console.error(`--rows: pick from ${ROWS.map((r) => r.image.replace(/^sys-/, "")).join(",")}`);
    return 2;
  }
  const qemu = process.argv.includes("--no-qemu") ? { reason: "skipped" } : ensureQemu();
  console.log(
    `system-code: 64-bit long-mode guests, ${fixed ? `${fixed} iterations` : `calibrated to ~${seconds} s per row and side`}; nodevmm: createMachine({ backend: "soft" }) + await vm.run(); QEMU TCG: ${"version" in qemu ? qemu.version : qemu.reason}`,
  );
  const t0 = performance.now();
  const table: string[][] = [];
  let failed = false;
  for (const row of rows) {
    const opts = { targetMs: seconds * 1000, ...(fixed ? { fixed } : {}), ...(param ? { param } : {}) };
    const soft = await measure("soft", row, opts);
    const peer: Measured =
      "version" in qemu ? await measure("qemu", row, opts) : { cell: qemu.reason, failed: false };
    failed ||= soft.failed || peer.failed;
    table.push([
      row.name,
      row.event,
      soft.cell,
      peer.cell,
      soft.rate !== undefined && peer.rate !== undefined ? `${(soft.rate / peer.rate).toFixed(2)}x` : "-",
      soft.exitsPerEvent !== undefined ? soft.exitsPerEvent.toFixed(2) : "-",
      `${soft.iterations ?? "-"} / ${peer.iterations ?? "-"}`,
    ]);
  }
  const header = [
    "row",
    "event",
    "nodevmm soft events/s",
    "QEMU TCG events/s",
    "soft / QEMU",
    "soft exits/event",
    "iterations (soft / QEMU)",
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of table) console.log(line(r));
  console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
