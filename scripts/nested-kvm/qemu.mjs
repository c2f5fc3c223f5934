// Boots the nested-KVM guest under QEMU TCG and follows it: streams the guest command's output (a file
// on the share) to the host, watches the console for the /init's stage markers, enforces a hard
// timeout, and never leaves QEMU running behind the host process.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseMarkers } from "./text.mjs";

/** The QEMU command line: TCG with emulated SVM + nested paging, host root and share over virtio-9p. */
export function qemuArgs({
  vmlinuz,
  initrd,
  shareDir,
  consoleLog,
  memory = "2G",
  smp = 1,
  cpu = "qemu64,+svm,+npt",
}) {
  for (const [what, v] of [
    ["share", shareDir],
    ["console log", consoleLog],
  ]) {
    // QEMU's option parser splits on ","; a path containing one would silently mean something else.
    if (v.includes(",")) throw new Error(`nested-kvm: the ${what} path may not contain a comma: ${v}`);
  }
  return [
    ...["-accel", "tcg", "-cpu", cpu, "-m", memory, "-smp", String(smp)],
    // No default devices, no display, no monitor, console to a file: QEMU never touches the terminal
    // or stdin, so it behaves the same under CI with no stdin as in an interactive shell.
    ...["-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot"],
    ...["-serial", `file:${consoleLog}`],
    ...["-kernel", vmlinuz, "-initrd", initrd],
    ...["-virtfs", `local,path=${shareDir},mount_tag=host0,security_model=none,id=host0`],
    ...[
      "-virtfs",
      "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hostroot",
    ],
    ...["-append", "console=ttyS0 quiet loglevel=3 panic=-1"],
  ];
}

class Tail {
  constructor(path) {
    this.path = path;
    this.offset = 0;
    this.fd = -1;
  }
  /** New bytes since the last call (empty when the file does not exist yet). */
  read() {
    if (this.fd < 0) {
      if (!existsSync(this.path)) return Buffer.alloc(0);
      this.fd = openSync(this.path, "r");
    }
    const chunks = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = readSync(this.fd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks);
  }
  close() {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Runs the guest to completion.
 * @returns {Promise<{ rc: number | null, timedOut: boolean, qemuExit: { code: number | null, signal: string | null },
 *   qemuStderr: string, consoleText: string, output: string, stages: Map<string, number>, fail: string | null,
 *   startedAt: number, endedAt: number }>}
 */
export function runGuest({
  qemu,
  args,
  shareDir,
  consoleLog,
  timeoutMs,
  onOutput,
  onConsole,
  killGraceMs = 3000,
}) {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    const child = spawn(qemu, args, { stdio: ["ignore", "pipe", "pipe"] });
    let qemuStderr = "";
    child.stdout.on("data", (d) => {
      qemuStderr += d;
    });
    child.stderr.on("data", (d) => {
      qemuStderr += d;
    });
    const outTail = new Tail(join(shareDir, "out"));
    const consoleTail = new Tail(consoleLog);
    let consoleText = "";
    let output = "";
    const stages = new Map();
    let fail = null;
    let timedOut = false;
    let killTimer;

    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    };
    // Last line of defence: whatever way the host process ends, QEMU goes with it.
    process.on("exit", kill);

    const poll = () => {
      const out = outTail.read();
      if (out.length) {
        output += out.toString("utf8");
        onOutput(out);
      }
      const con = consoleTail.read();
      if (con.length) {
        const text = con.toString("utf8");
        consoleText += text;
        onConsole?.(text);
        for (const m of parseMarkers(consoleText)) {
          if (m.kind === "stage") {
            const name = m.value.split(" ")[0];
            if (!stages.has(name)) stages.set(name, performance.now());
          } else fail ??= m.value;
        }
      }
    };
    const timer = setInterval(poll, 100);

    const deadline = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      killTimer = setTimeout(kill, killGraceMs);
    }, timeoutMs);

    child.on("error", (e) => {
      clearInterval(timer);
      clearTimeout(deadline);
      process.off("exit", kill);
      reject(new Error(`nested-kvm: could not start ${qemu}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      const endedAt = performance.now();
      clearInterval(timer);
      clearTimeout(deadline);
      clearTimeout(killTimer);
      process.off("exit", kill);
      poll();
      outTail.close();
      consoleTail.close();
      let rc = null;
      const rcFile = join(shareDir, "rc");
      if (existsSync(rcFile) && statSync(rcFile).size > 0) {
        const n = Number.parseInt(readFileSync(rcFile, "utf8").trim(), 10);
        if (Number.isInteger(n)) rc = n;
      }
      resolve({
        rc,
        timedOut,
        qemuExit: { code, signal },
        qemuStderr,
        consoleText,
        output,
        stages,
        fail,
        startedAt,
        endedAt,
      });
    });
  });
}
