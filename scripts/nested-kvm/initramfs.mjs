// Builds the guest's initramfs (busybox + /init + the kernel's modules) and caches it next to the
// kernel, named by a hash of its inputs so a changed /init or busybox rebuilds it.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { buildCpio } from "./cpio.mjs";

const INIT_TEMPLATE = join(dirname(fileURLToPath(import.meta.url)), "init.sh");
const FORMAT = 1; // bump when the archive layout changes

/**
 * @param {{ dir: string, modules: string[] }} kernel from ensureKernel
 * @param {string} busybox path of a static busybox
 * @returns {{ path: string, fresh: boolean }}
 */
export function ensureInitramfs(kernel, busybox) {
  const init = readFileSync(INIT_TEMPLATE);
  const bb = readFileSync(busybox);
  const modules = kernel.modules.map((name) => ({
    name,
    data: readFileSync(join(kernel.dir, "modules", `${name}.ko`)),
  }));
  const h = createHash("sha256").update(`format ${FORMAT}\n`).update(init).update(bb);
  for (const m of modules) h.update(m.name).update(m.data);
  const path = join(kernel.dir, `initrd-${h.digest("hex").slice(0, 16)}.img`);
  if (existsSync(path)) return { path, fresh: false };

  const entries = [
    ...["bin", "dev", "proc", "sys", "share", "lower", "newroot", "lib", "lib/modules"].map((p) => ({
      type: "dir",
      path: p,
    })),
    // The kernel opens /dev/console before /init mounts devtmpfs; without the node, /init's output is lost.
    { type: "char", path: "dev/console", major: 5, minor: 1, mode: 0o600 },
    { type: "file", path: "bin/busybox", data: bb, mode: 0o755 },
    { type: "symlink", path: "bin/sh", target: "busybox" },
    { type: "file", path: "init", data: init, mode: 0o755 },
    { type: "file", path: "modules.list", data: `${kernel.modules.join("\n")}\n` },
    ...modules.map((m) => ({ type: "file", path: `lib/modules/${m.name}.ko`, data: m.data })),
  ];
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, gzipSync(buildCpio(entries), { level: 1 }));
  renameSync(tmp, path);
  // Archives built from an older /init or busybox are never used again.
  for (const f of readdirSync(kernel.dir)) {
    if (/^initrd-[0-9a-f]{16}\.img$/.test(f) && join(kernel.dir, f) !== path)
      rmSync(join(kernel.dir, f), { force: true });
  }
  return { path, fresh: true };
}
