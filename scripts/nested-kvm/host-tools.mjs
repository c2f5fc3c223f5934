// Makes sure the host has what the nested lane runs: QEMU, a static busybox for the initramfs, depmod,
// and apt/dpkg to fetch the kernel. Installs the Debian packages when something is missing (CI is root).
import { closeSync, openSync, readSync } from "node:fs";
import { elfLinkage } from "./elf.mjs";
import { runStep, StepError, which } from "./exec.mjs";

const APT_ENV = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
// Other apt users (unattended upgrades, a parallel job) hold the lock for a while: wait, do not fail.
const APT_LOCK = ["-o", "DPkg::Lock::Timeout=300"];

function readHead(path, n = 4096) {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

export function staticBusybox() {
  for (const p of ["/bin/busybox", "/usr/bin/busybox", which("busybox")]) {
    if (!p) continue;
    try {
      if (elfLinkage(readHead(p)) === "static") return p;
    } catch {}
  }
  return null;
}

function missingPackages(withQemu = true) {
  const missing = [];
  if (withQemu && !which("qemu-system-x86_64")) missing.push("qemu-system-x86");
  if (!staticBusybox()) missing.push("busybox-static");
  if (!which("depmod")) missing.push("kmod");
  return missing;
}

export function aptUpdate(log) {
  log("apt-get update");
  runStep("refresh the package lists (apt-get update)", "apt-get", [...APT_LOCK, "update", "-q"], {
    env: APT_ENV,
    inherit: true,
  });
}

/**
 * @param {(msg: string) => void} log
 * @param {{ qemu?: boolean }} [opts] qemu: false when the lane boots no QEMU (the Linux lane)
 * @returns {{ qemu: string, busybox: string, depmod: string }}
 */
export function ensureHostTools(log, opts = {}) {
  const withQemu = opts.qemu !== false;
  for (const t of ["apt-get", "dpkg"]) {
    if (!which(t))
      throw new StepError("find the host tools", `${t} is missing: the nested lane needs a Debian host`);
  }
  const missing = missingPackages(withQemu);
  if (missing.length) {
    if (process.getuid?.() !== 0) {
      throw new StepError(
        "install the host tools",
        `missing Debian packages ${missing.join(", ")} and not root: run \`apt-get install ${missing.join(" ")}\``,
      );
    }
    aptUpdate(log);
    log(`apt-get install ${missing.join(" ")}`);
    runStep(
      `install ${missing.join(", ")}`,
      "apt-get",
      [...APT_LOCK, "install", "-y", "-q", "--no-install-recommends", ...missing],
      { env: APT_ENV, inherit: true },
    );
    const still = missingPackages(withQemu);
    if (still.length)
      throw new StepError("install the host tools", `still missing after apt-get: ${still.join(", ")}`);
  }
  return { qemu: which("qemu-system-x86_64"), busybox: staticBusybox(), depmod: which("depmod") };
}
