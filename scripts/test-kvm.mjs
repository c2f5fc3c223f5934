// `npm run test:kvm`: the real-KVM suite (test/kvm). On a host whose /dev/kvm works it runs vitest
// directly; otherwise (or with NODEVMM_NESTED=1) it boots a QEMU TCG guest with emulated SVM, loads
// kvm_amd there and runs the suite inside with the host's own node and this checkout (see
// ../shared/nested-kvm.md). `node scripts/test-kvm.mjs test/kvm/smp-threads.test.ts ...` runs only
// those files (vitest filters); `node scripts/test-kvm.mjs -- <cmd...>` runs <cmd> instead of the suite.
//
// Environment: NODEVMM_NESTED=1 (or --nested) forces the nested VM; NODEVMM_TEST_KVM_TIMEOUT bounds
// the run in seconds (default 600 on the host, 1200 for the whole QEMU run), after which everything
// is killed; NODEVMM_NESTED_VERBOSE=1 prints the guest console live; NODEVMM_NESTED_SMP,
// NODEVMM_NESTED_MEMORY and NODEVMM_NESTED_CPU set QEMU's -smp, -m and -cpu.
// Exit code: the command's, or 2 when the lane itself failed (setup error, timeout).
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureLinuxGuest } from "./linux-lane/guest.mjs";
import { ensureHostTools } from "./nested-kvm/host-tools.mjs";
import { ensureInitramfs } from "./nested-kvm/initramfs.mjs";
import { bootImage, ensureKernel } from "./nested-kvm/kernel.mjs";
import { probeKvm } from "./nested-kvm/kvm-probe.mjs";
import { qemuArgs, runGuest } from "./nested-kvm/qemu.mjs";
import { countsLine, shQuote, testCounts, vitestSummary } from "./nested-kvm/text.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CACHE = join(REPO, ".cache", "nested-kvm");
const LANE_FAILED = 2;

const log = (msg) => console.error(`test:kvm: ${msg}`);
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

function parseArgs(argv) {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const cmd = dash < 0 ? [] : argv.slice(dash + 1);
  const usage = "usage: test-kvm.mjs [--nested] [test files or vitest filters...] [-- <cmd...>]";
  const filters = [];
  for (const a of own) {
    if (a === "--nested") continue;
    if (a.startsWith("-")) throw new Error(`unknown option ${a} (${usage})`);
    filters.push(a);
  }
  if (dash >= 0 && cmd.length === 0) throw new Error("nothing after --: give a command to run");
  if (dash >= 0 && filters.length > 0)
    throw new Error(`test filters and a command do not go together (${usage})`);
  return { forceNested: own.includes("--nested") || process.env.NODEVMM_NESTED === "1", cmd, filters };
}

function defaultSuite(filters) {
  if (!existsSync(join(REPO, "test", "kvm")))
    throw new Error("test/kvm does not exist: there is no KVM suite to run");
  const vitest = [process.execPath, join(REPO, "node_modules", "vitest", "vitest.mjs"), "run"];
  return [...vitest, ...(filters.length > 0 ? filters : ["test/kvm"])];
}

/** Seconds the whole run may take: NODEVMM_TEST_KVM_TIMEOUT, else `fallback`. */
function timeoutSeconds(fallback) {
  const raw = process.env.NODEVMM_TEST_KVM_TIMEOUT;
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!(n > 0))
    throw new Error(
      `NODEVMM_TEST_KVM_TIMEOUT must be a positive number of seconds, got ${JSON.stringify(raw)}`,
    );
  return n;
}

function runDirect(cmd, cwd, timeoutS) {
  return new Promise((res) => {
    // Its own process group, so a hung run (a vCPU blocked in KVM_RUN inside a vitest worker) can be
    // killed together with every worker it started.
    const child = spawn(cmd[0], cmd.slice(1), {
      cwd,
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    });
    // passed through as it comes, and kept for the closing count line
    let output = "";
    child.stdout.on("data", (buf) => {
      process.stdout.write(buf);
      output += buf.toString("utf8");
      if (output.length > 1 << 20) output = output.slice(-(1 << 19));
    });
    const killGroup = (sig) => {
      try {
        process.kill(-child.pid, sig);
      } catch {}
    };
    const onExit = () => killGroup("SIGKILL");
    process.on("exit", onExit);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => killGroup(sig));
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      killGroup("SIGTERM");
      setTimeout(() => killGroup("SIGKILL"), 3000).unref();
    }, timeoutS * 1000);
    child.on("error", (e) => {
      clearTimeout(deadline);
      log(`could not start ${cmd[0]}: ${e.message}`);
      res(LANE_FAILED);
    });
    child.on("close", (code, signal) => {
      clearTimeout(deadline);
      // Workers may outlive the main process; none may stay behind.
      killGroup("SIGKILL");
      process.off("exit", onExit);
      printCounts(output, "on this host's /dev/kvm");
      if (timedOut) {
        log(`the command did not finish within ${timeoutS} s and was killed (NODEVMM_TEST_KVM_TIMEOUT)`);
        res(LANE_FAILED);
      } else res(code ?? 128 + (signal === "SIGINT" ? 2 : 15));
    });
  });
}

/** The lane's closing line: how many tests ran and how many were skipped (for CI logs and notes). */
function printCounts(output, where) {
  const counts = testCounts(vitestSummary(output));
  if (counts) log(countsLine(counts, where));
}

/** Environment the guest command sees: a CI-like shell with the host's node first on PATH. */
function guestEnv() {
  const env = {
    PATH: [
      dirname(process.execPath),
      "/usr/local/sbin",
      "/usr/local/bin",
      "/usr/sbin",
      "/usr/bin",
      "/sbin",
      "/bin",
    ].join(":"),
    HOME: process.env.HOME || "/root",
    CI: "true",
    TERM: "dumb",
    LANG: process.env.LANG || "C.UTF-8",
    NODEVMM_IN_NESTED_KVM: "1",
  };
  for (const [k, v] of Object.entries(process.env)) {
    const wanted =
      (k.startsWith("NODEVMM_") && !k.startsWith("NODEVMM_NESTED")) ||
      k === "NO_COLOR" ||
      k === "FORCE_COLOR";
    if (wanted && v !== undefined) env[k] = v;
  }
  return env;
}

/**
 * The Linux lane's kernel and initramfs for test/kvm/linux.test.ts (handed over in the environment,
 * which reaches the nested guest too); without them that test skips and says why.
 */
function offerLinuxGuest() {
  if (process.env.NODEVMM_LINUX_KERNEL && process.env.NODEVMM_LINUX_INITRD) return;
  try {
    const g = ensureLinuxGuest(log);
    process.env.NODEVMM_LINUX_KERNEL = g.kernel;
    process.env.NODEVMM_LINUX_INITRD = g.initrd;
  } catch (e) {
    log(`no Linux guest for test/kvm/linux.test.ts: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function runNested(cmd, cwd) {
  const timeoutS = timeoutSeconds(1200);
  const t0 = performance.now();
  const tools = ensureHostTools(log);
  const kernel = ensureKernel({ cacheRoot: CACHE, depmod: tools.depmod, log });
  const initrd = ensureInitramfs(kernel, tools.busybox);
  offerLinuxGuest();
  const image = bootImage(kernel);
  if (!image.pvh) log(`booting the bzImage (slower): ${image.why}`);
  const prepared = performance.now();
  log(
    `kernel ${kernel.release} (${kernel.fresh ? "downloaded" : "cached"}), initramfs ${initrd.fresh ? "built" : "cached"}; prepared in ${secs(prepared - t0)}`,
  );

  mkdirSync(CACHE, { recursive: true });
  // The share lives in the checkout, not under /tmp, so the guest can keep its own /tmp.
  const share = mkdtempSync(join(CACHE, "run-"));
  const consoleLog = join(CACHE, `console-${process.pid}.log`);
  const cleanup = () => {
    rmSync(share, { recursive: true, force: true });
    rmSync(consoleLog, { force: true });
  };
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      // The exit handlers kill QEMU and remove the share.
      log(`${sig}: stopping QEMU`);
      process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGHUP" ? 1 : 15));
    });
  }

  writeFileSync(join(share, "guest.env"), `SHARE_PATH=${shQuote(share)}\n`);
  const exports = Object.entries(guestEnv()).map(([k, v]) => `export ${k}=${shQuote(v)}`);
  writeFileSync(
    join(share, "run.sh"),
    [`cd ${shQuote(cwd)} || exit 125`, ...exports, `exec ${cmd.map(shQuote).join(" ")}`, ""].join("\n"),
  );

  const args = qemuArgs({
    vmlinuz: image.path,
    initrd: initrd.path,
    shareDir: share,
    consoleLog,
    memory: process.env.NODEVMM_NESTED_MEMORY || "2G",
    smp: Number(process.env.NODEVMM_NESTED_SMP || 1),
    cpu: process.env.NODEVMM_NESTED_CPU || undefined,
  });
  log(
    `booting the nested-KVM guest (QEMU TCG, -cpu ${args[args.indexOf("-cpu") + 1]}; timeout ${timeoutS} s)`,
  );
  const verbose = process.env.NODEVMM_NESTED_VERBOSE === "1";
  const r = await runGuest({
    qemu: tools.qemu,
    args,
    shareDir: share,
    consoleLog,
    timeoutMs: timeoutS * 1000,
    onOutput: (buf) => process.stdout.write(buf),
    onConsole: verbose ? (text) => process.stderr.write(text) : undefined,
  });

  const at = (stage) => r.stages.get(stage);
  const span = (a, b) => (a !== undefined && b !== undefined ? secs(Math.max(0, b - a)) : "n/a");
  const end = r.endedAt;
  log(
    `timings: prepare ${secs(prepared - t0)}, boot to /init ${span(r.startedAt, at("init"))}, ` +
      `mounts+modules ${span(at("init"), at("run"))}, command ${span(at("run"), at("done"))}, ` +
      `shutdown ${span(at("done"), end)}, total ${secs(end - t0)}`,
  );
  const summary = vitestSummary(r.output);
  if (summary.length) for (const l of ["vitest summary (inside the nested-KVM guest):", ...summary]) log(l);

  if (r.rc !== null) {
    log(`guest command exited with ${r.rc}`);
    printCounts(r.output, "inside the nested-KVM guest (kvm_amd under QEMU TCG)");
    return r.rc;
  }
  // No exit code came back: explain where the guest stopped.
  if (existsSync(consoleLog)) copyFileSync(consoleLog, join(CACHE, "last-failed-console.log"));
  const lastStage = [...r.stages.keys()].at(-1) ?? "kernel boot (before /init)";
  if (r.timedOut) log(`QEMU did not finish within ${timeoutS} s and was killed (last stage: ${lastStage})`);
  else if (r.fail) log(`guest setup failed: ${r.fail}`);
  else
    log(
      `the guest stopped without an exit code (QEMU exit ${r.qemuExit.code ?? r.qemuExit.signal}; last stage: ${lastStage})`,
    );
  if (r.qemuStderr.trim()) log(`QEMU said:\n${r.qemuStderr.trim()}`);
  const tail = r.consoleText.replaceAll("\r", "").trimEnd().split("\n").slice(-25).join("\n");
  if (tail)
    log(`guest console (last lines; full log in .cache/nested-kvm/last-failed-console.log):\n${tail}`);
  return LANE_FAILED;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    log(/** @type {Error} */ (e).message);
    return LANE_FAILED;
  }
  try {
    const cmd = opts.cmd.length ? opts.cmd : defaultSuite(opts.filters);
    // The suite's path is relative to the checkout; a user's command runs where the user is.
    const cwd = opts.cmd.length ? process.cwd() : REPO;
    if (!opts.forceNested) {
      const kvm = await probeKvm();
      if (kvm.usable) {
        log(`${kvm.reason}: running on the host`);
        offerLinuxGuest();
        return await runDirect(cmd, cwd, timeoutSeconds(600));
      }
      log(`${kvm.reason}: running inside a nested-KVM QEMU guest`);
    } else log("NODEVMM_NESTED=1: running inside a nested-KVM QEMU guest");
    return await runNested(cmd, cwd);
  } catch (e) {
    log(/** @type {Error} */ (e).message);
    return LANE_FAILED;
  }
}

process.exitCode = await main();
