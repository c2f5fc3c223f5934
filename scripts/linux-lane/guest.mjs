// The Linux lane's guest: Debian's kernel (cached with the nested-KVM lane's, which also keeps the
// virtio-mmio modules) and an initramfs of Debian's static busybox, this lane's /init and those
// modules. Cached next to the kernel, named by a hash of its inputs.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { buildCpio } from "../nested-kvm/cpio.mjs";
import { ensureHostTools } from "../nested-kvm/host-tools.mjs";
import { ensureKernel } from "../nested-kvm/kernel.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "..", "..");
export const CACHE = join(REPO, ".cache", "nested-kvm");
const FORMAT = 1; // bump when the archive layout changes

/**
 * Fetches (first time) and returns the kernel and initramfs the Linux lane boots.
 * @param {(msg: string) => void} log
 * @returns {{ kernel: string, initrd: string, release: string }}
 */
export function ensureLinuxGuest(log) {
  const tools = ensureHostTools(log, { qemu: false });
  const kernel = ensureKernel({ cacheRoot: CACHE, depmod: tools.depmod, log });
  if (!kernel.linuxModules)
    throw new Error(`the cached kernel ${kernel.release} has no virtio-mmio module list (offline?)`);
  const init = readFileSync(join(HERE, "init.sh"));
  const bb = readFileSync(tools.busybox);
  const modules = kernel.linuxModules.map((name) => ({
    name,
    data: readFileSync(join(kernel.dir, "modules", `${name}.ko`)),
  }));
  const h = createHash("sha256").update(`linux-lane ${FORMAT}\n`).update(init).update(bb);
  for (const m of modules) h.update(m.name).update(m.data);
  const initrd = join(kernel.dir, `linux-lane-${h.digest("hex").slice(0, 16)}.img`);
  if (!existsSync(initrd)) {
    log(`building ${initrd}`);
    const entries = [
      ...["bin", "dev", "proc", "sys", "lib", "lib/modules"].map((p) => ({ type: "dir", path: p })),
      { type: "char", path: "dev/console", major: 5, minor: 1, mode: 0o600 },
      { type: "file", path: "bin/busybox", data: bb, mode: 0o755 },
      { type: "symlink", path: "bin/sh", target: "busybox" },
      { type: "file", path: "init", data: init, mode: 0o755 },
      { type: "file", path: "modules.list", data: `${kernel.linuxModules.join("\n")}\n` },
      ...modules.map((m) => ({ type: "file", path: `lib/modules/${m.name}.ko`, data: m.data })),
    ];
    const tmp = `${initrd}.tmp-${process.pid}`;
    writeFileSync(tmp, gzipSync(buildCpio(entries), { level: 6 }));
    renameSync(tmp, initrd);
  }
  return { kernel: kernel.vmlinuz, initrd, release: kernel.release };
}
