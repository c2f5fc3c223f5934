// npm run fuzz: runs the fuzz targets of test/fuzz (guest code on the soft backend, images through
// the loaders, the public API, the KVM bindings on ordinary fds) in child processes, bounded by time
// and by case count, and reports every failure with what replays it exactly.
//
//   npm run fuzz -- [--time SEC] [--runs N] [--seed N] [--target guest,image,...] [--batch N]
//                   [--jobs N] [--case-timeout SEC] [--json FILE] [--strict]
//                   [--replay TARGET:SEED:PATH]
//   env: FUZZ_TIME, FUZZ_RUNS, FUZZ_SEED, FUZZ_TARGETS, FUZZ_JOBS, FUZZ_STRICT=1 (flags win)
//
// Each batch is one child (test/fuzz/child.ts, bundled with esbuild into .cache/fuzz/) running
// `--batch` cases of one target from a seed derived from the run's seed; targets take turns. The
// child writes a line to fd 3 before each case, so a case that kills it (SIGSEGV, SIGBUS, an abort)
// or hangs it (no line for --case-timeout seconds: it is killed) is reported as target, batch seed
// and fast-check path: `--replay TARGET:SEED:PATH` runs exactly that case again. Oracle violations
// are shrunk by fast-check in the child first. Failures test/fuzz/known.ts lists (reported bugs with
// an it.fails regression test) are counted and shown once each but fail the run only with --strict.
// Exit status: 0 when no case failed, 1 otherwise, 2 on a usage error.

import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const ALL_TARGETS = ["guest", "image", "api", "binding"];
// the runner's own check (test/fuzz/runner.test.ts), never part of a normal run
if (process.env.NODEVMM_FUZZ_SELFTEST === "1") ALL_TARGETS.push("selftest");
const out = (line) => process.stdout.write(`${line}\n`);

function usage(message) {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const env = process.env;
  const o = {
    time: env.FUZZ_TIME,
    runs: env.FUZZ_RUNS,
    seed: env.FUZZ_SEED,
    target: env.FUZZ_TARGETS,
    batch: undefined,
    jobs: env.FUZZ_JOBS,
    caseTimeout: undefined,
    json: undefined,
    replay: undefined,
    strict: env.FUZZ_STRICT === "1",
  };
  const names = {
    "--time": "time",
    "--runs": "runs",
    "--seed": "seed",
    "--target": "target",
    "--targets": "target",
    "--batch": "batch",
    "--jobs": "jobs",
    "--case-timeout": "caseTimeout",
    "--json": "json",
    "--replay": "replay",
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--strict") {
      o.strict = true;
      continue;
    }
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const key = names[flag];
    if (!key) usage(`unknown argument ${argv[i]} (see the header of scripts/fuzz/run.mjs)`);
    const v = inline ?? argv[++i];
    if (v === undefined) usage(`${flag} needs a value`);
    o[key] = v;
  }
  const num = (name, v, min) => {
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) usage(`${name} must be a number >= ${min}, got ${v}`);
    return n;
  };
  const time = num("--time", o.time, 0);
  const runs = num("--runs", o.runs, 1);
  const seed = num("--seed", o.seed, 0);
  const targets = o.target ? o.target.split(",").filter(Boolean) : ALL_TARGETS;
  for (const t of targets)
    if (!ALL_TARGETS.includes(t)) usage(`unknown target ${t} (${ALL_TARGETS.join(", ")})`);
  return {
    // without either bound a run stops after 60 s
    timeMs: (time ?? (runs === undefined ? 60 : Number.POSITIVE_INFINITY)) * 1000,
    runs: runs ?? Number.POSITIVE_INFINITY,
    seed: seed === undefined ? Math.floor(Math.random() * 0x7fffffff) : Math.floor(seed),
    targets,
    batch: num("--batch", o.batch, 1) ?? 40,
    jobs: Math.floor(num("--jobs", o.jobs, 1) ?? 1),
    caseTimeoutMs: (num("--case-timeout", o.caseTimeout, 1) ?? 60) * 1000,
    json: o.json,
    replay: o.replay,
    strict: o.strict,
  };
}

async function bundle() {
  let esbuild;
  try {
    esbuild = await import("esbuild");
  } catch (e) {
    usage(`esbuild (a dev dependency) is needed to build the fuzz targets: ${e.message}`);
  }
  // one bundle per run: a run started meanwhile must not rebuild the file this one's batches spawn
  const outfile = join(root, ".cache", "fuzz", `child-${process.pid}.mjs`);
  process.on("exit", () => {
    for (const f of [outfile, `${outfile}.map`]) rmSync(f, { force: true });
  });
  mkdirSync(dirname(outfile), { recursive: true });
  await esbuild.build({
    entryPoints: [join(root, "test", "fuzz", "child.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: true,
    outfile,
    logLevel: "warning",
  });
  return outfile;
}

/** A 31-bit seed for batch `index` of a run seeded `seed` (splitmix-style mixing). */
function batchSeed(seed, index) {
  let x = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) & 0x7fffffff;
}

/**
 * Runs one batch; resolves with its figures and failures. A child that dies or hangs is a failure
 * of the case it had started.
 */
function runBatch(entry, target, seed, runs, timeMs, caseTimeoutMs, strict, path) {
  return new Promise((resolve) => {
    const args = [
      "--enable-source-maps",
      entry,
      target,
      String(seed),
      String(runs),
      String(Math.max(1, Math.floor(timeMs))),
    ];
    if (path) args.push(path);
    const child = spawn(process.execPath, args, {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe", "pipe"],
      env: { ...process.env, NODEVMM_FUZZ: "1", ...(strict ? { FUZZ_STRICT: "1" } : {}) },
    });
    let tail = "";
    const keep = (chunk) => {
      tail = (tail + chunk).slice(-4000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const batch = { target, seed, runs: 0, bytes: 0, outcomes: {}, failures: [], known: [], done: false };
    let last;
    let firstShrink;
    let buffered = "";
    let hung = false;
    let timer;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        child.kill("SIGKILL");
      }, caseTimeoutMs);
    };
    arm();
    child.stdio[3].on("data", (chunk) => {
      arm();
      buffered += chunk;
      let nl = buffered.indexOf("\n");
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf("\n");
        let ev;
        try {
          ev = JSON.parse(line);
        } catch {
          continue;
        }
        if (ev.ev === "case") {
          last = ev;
          if (ev.shrinking && firstShrink === undefined) firstShrink = ev.i;
          if (ev.case) batch.lastCase = ev.case;
        } else if (ev.ev === "fail") {
          batch.failures.push({
            kind: "oracle",
            target,
            seed: ev.seed,
            path: ev.path,
            signature: ev.signature,
            error: ev.error,
            cause: ev.cause,
            stack: ev.stack,
            case: ev.case,
          });
        } else if (ev.ev === "known") {
          batch.known.push({
            target,
            seed,
            path: String(ev.i),
            signature: ev.signature,
            note: ev.note,
            error: ev.error,
            case: ev.case,
          });
        } else if (ev.ev === "done") {
          batch.done = true;
          batch.runs = ev.runs;
          batch.bytes = ev.bytes;
          batch.outcomes = ev.outcomes;
        } else if (ev.ev === "crash") {
          batch.childError = `${ev.error}\n${ev.stack ?? ""}`;
        }
      }
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (!batch.done) {
        // the case that was running; when fast-check was shrinking, the original failing case
        const index = firstShrink !== undefined ? firstShrink - 1 : last?.i;
        const casePath = path ?? (index === undefined ? undefined : String(index));
        const how = hung
          ? `hung (no progress for ${caseTimeoutMs / 1000} s)`
          : signal
            ? `killed by ${signal}`
            : `exited with status ${code}`;
        batch.failures.push({
          kind: hung ? "hang" : "crash",
          target,
          seed,
          path: casePath,
          signature: `${target}: child ${hung ? "hung" : signal ? `died of ${signal}` : `exited ${code}`}`,
          error: `the fuzz child ${how}${batch.childError ? `: ${batch.childError}` : ""}`,
          stack: tail.trim(),
          case: batch.lastCase,
        });
        // cases before the one that failed ran fine
        batch.runs = index ?? 0;
      }
      resolve(batch);
    });
  });
}

function printFailure(f) {
  out(`\nFAIL ${f.kind} [${f.signature}]`);
  out(`  ${f.error}`);
  if (f.cause) out(`  cause: ${f.cause}`);
  out(`  replay: npm run fuzz -- --replay ${f.target}:${f.seed}:${f.path ?? ""}`);
  if (f.case) out(`  case: ${f.case.length > 2000 ? `${f.case.slice(0, 2000)}...` : f.case}`);
  if (f.stack) {
    const lines = f.stack.split("\n").slice(0, 12);
    for (const l of lines) out(`    ${l}`);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const entry = await bundle();
  if (opts.replay) {
    const [target, seed, path] = opts.replay.split(":");
    if (!ALL_TARGETS.includes(target) || !/^\d+$/.test(seed ?? "")) usage("--replay wants TARGET:SEED:PATH");
    out(`fuzz: replaying ${target} seed ${seed} path ${path || "(whole batch)"}`);
    const b = await runBatch(
      entry,
      target,
      Number(seed),
      path ? 1 : opts.batch,
      600_000,
      opts.caseTimeoutMs,
      opts.strict,
      path || undefined,
    );
    for (const k of b.known) out(`known bug [${k.signature}]: ${k.error}\n  ${k.note}\n  case: ${k.case}`);
    for (const f of b.failures) printFailure(f);
    out(b.failures.length ? "fuzz: the case fails" : `fuzz: passed (${JSON.stringify(b.outcomes)})`);
    process.exit(b.failures.length ? 1 : 0);
  }
  const t0 = Date.now();
  const deadline = t0 + opts.timeMs;
  out(
    `fuzz: seed ${opts.seed}, targets ${opts.targets.join(",")}, ` +
      `${Number.isFinite(opts.timeMs) ? `${opts.timeMs / 1000} s` : "no time limit"}, ` +
      `${Number.isFinite(opts.runs) ? `${opts.runs} cases` : "no case limit"}, ${opts.jobs} job(s)`,
  );
  const totals = Object.fromEntries(
    opts.targets.map((t) => [t, { batches: 0, runs: 0, bytes: 0, outcomes: {} }]),
  );
  const failures = [];
  const known = new Map();
  let started = 0;
  let scheduled = 0;
  const next = () => {
    const left = deadline - Date.now();
    if (left < 500 || scheduled >= opts.runs) return undefined;
    const target = opts.targets[started % opts.targets.length];
    const runs = Math.min(opts.batch, opts.runs - scheduled);
    scheduled += runs;
    const seed = batchSeed(opts.seed, started++);
    return { target, seed, runs, timeMs: left };
  };
  const worker = async () => {
    for (let job = next(); job; job = next()) {
      const b = await runBatch(
        entry,
        job.target,
        job.seed,
        job.runs,
        job.timeMs,
        opts.caseTimeoutMs,
        opts.strict,
      );
      for (const k of b.known) {
        const seen = known.get(k.signature);
        if (seen) seen.count++;
        else {
          known.set(k.signature, { ...k, count: 1 });
          out(`\nknown bug [${k.signature}] (not failing the run; --strict does)`);
          out(`  ${k.note}`);
          out(`  replay: npm run fuzz -- --strict --replay ${k.target}:${k.seed}:${k.path}`);
        }
      }
      const t = totals[job.target];
      t.batches++;
      t.runs += b.runs;
      t.bytes += b.bytes;
      for (const [k, n] of Object.entries(b.outcomes)) t.outcomes[k] = (t.outcomes[k] ?? 0) + n;
      for (const f of b.failures) {
        failures.push(f);
        printFailure(f);
      }
      // a batch cut short by time ran fewer cases than it was given
      scheduled -= job.runs - b.runs - b.failures.length;
    }
  };
  await Promise.all(Array.from({ length: opts.jobs }, worker));
  const seconds = (Date.now() - t0) / 1000;
  out(`\nfuzz: ${seconds.toFixed(1)} s, seed ${opts.seed}`);
  let runs = 0;
  let bytes = 0;
  for (const [name, t] of Object.entries(totals)) {
    runs += t.runs;
    bytes += t.bytes;
    const top = Object.entries(t.outcomes)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ");
    out(
      `  ${name.padEnd(8)} ${String(t.runs).padStart(7)} runs ${String(t.bytes).padStart(10)} bytes  ${top}`,
    );
  }
  const signatures = new Map();
  for (const f of failures) signatures.set(f.signature, (signatures.get(f.signature) ?? 0) + 1);
  out(
    `  total    ${String(runs).padStart(7)} runs ${String(bytes).padStart(10)} bytes, ${failures.length} failure(s)`,
  );
  for (const [s, n] of signatures) out(`    ${n} x ${s}`);
  for (const [s, k] of known) out(`    ${k.count} x known: ${s}`);
  if (opts.json) {
    writeFileSync(
      opts.json,
      `${JSON.stringify({ seed: opts.seed, seconds, runs, bytes, totals, failures, known: [...known.values()] }, null, 2)}\n`,
    );
  }
  process.exit(failures.length ? 1 : 0);
}

await main();
