// The guest kernel: Debian's current linux-image (the package linux-image-amd64 depends on), fetched
// with apt-get download, unpacked with dpkg -x, depmod'ed, and cached by kernel release under
// .cache/nested-kvm/kernel-<release>/ with only what the guest needs (vmlinuz + the modules it loads).
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { bzImagePayload, hasPvhEntry } from "./bzimage.mjs";
import { runStep, StepError, which } from "./exec.mjs";
import { aptUpdate } from "./host-tools.mjs";
import {
  LINUX_LANE_MODULES,
  parseModulesBuiltin,
  parseModulesDep,
  resolveLoadOrder,
  WANTED_MODULES,
} from "./modules.mjs";

const META_PACKAGE = "linux-image-amd64";

const APT_LISTS = "/var/lib/apt/lists";

/**
 * The versioned package linux-image-amd64 depends on, or null when apt-cache does not know it. The
 * answer is remembered until apt's package lists change: apt-cache takes seconds on a loaded machine,
 * and a cached run should go straight to booting.
 */
function kernelPackage(cacheRoot) {
  const memo = join(cacheRoot, "kernel-package.json");
  let listsMtime = -1;
  try {
    listsMtime = statSync(APT_LISTS).mtimeMs;
    const m = JSON.parse(readFileSync(memo, "utf8"));
    if (m.listsMtime === listsMtime && m.name && m.release) return { name: m.name, release: m.release };
  } catch {}
  const r = spawnSync("apt-cache", ["depends", "--important", META_PACKAGE], { encoding: "utf8" });
  if (r.status !== 0) return null;
  const m = /Depends:\s*(linux-image-(\d\S*))/.exec(r.stdout);
  if (!m) return null;
  const pkg = { name: m[1], release: m[2] };
  writeFileSync(memo, `${JSON.stringify({ ...pkg, listsMtime })}\n`);
  return pkg;
}

function readManifest(dir) {
  try {
    const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
    return { ...m, dir, vmlinuz: join(dir, "vmlinuz") };
  } catch {
    return null;
  }
}

function cachedKernels(cacheRoot) {
  if (!existsSync(cacheRoot)) return [];
  return readdirSync(cacheRoot)
    .filter((d) => d.startsWith("kernel-"))
    .map((d) => readManifest(join(cacheRoot, d)))
    .filter(Boolean);
}

function decompressModule(src) {
  const raw = readFileSync(src);
  if (src.endsWith(".ko")) return raw;
  if (src.endsWith(".ko.gz")) return gunzipSync(raw);
  const tool = src.endsWith(".ko.xz") ? "xz" : src.endsWith(".ko.zst") ? "zstd" : null;
  if (!tool) throw new StepError("unpack a kernel module", `unknown module file type: ${src}`);
  if (!which(tool)) {
    throw new StepError(
      "unpack a kernel module",
      `${src} is compressed and ${tool} is missing (apt-get install ${tool === "xz" ? "xz-utils" : "zstd"})`,
    );
  }
  const r = spawnSync(tool, ["-dc", src], { maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new StepError("unpack a kernel module", `${tool} -dc ${src} failed`);
  return r.stdout;
}

function build(cacheRoot, pkg, depmod, log) {
  const tmp = mkdtempSync(join(cacheRoot, "tmp-kernel-"));
  try {
    log(`apt-get download ${pkg.name}`);
    const download = () =>
      runStep(`download the kernel package ${pkg.name}`, "apt-get", ["download", "-q", pkg.name], {
        cwd: tmp,
      });
    try {
      download();
    } catch {
      // Stale package lists point at a file the mirror no longer has: refresh once and retry.
      aptUpdate(log);
      download();
    }
    const deb = readdirSync(tmp).find((f) => f.endsWith(".deb"));
    if (!deb) throw new StepError(`download the kernel package ${pkg.name}`, "apt-get download left no .deb");
    const root = join(tmp, "root");
    log(`dpkg -x ${deb}`);
    runStep(`unpack ${deb}`, "dpkg", ["-x", join(tmp, deb), root]);
    const base = [root, join(root, "usr")].find((b) => existsSync(join(b, "lib/modules", pkg.release)));
    if (!base) throw new StepError(`unpack ${deb}`, `no lib/modules/${pkg.release} inside the package`);
    const vmlinuz = join(root, "boot", `vmlinuz-${pkg.release}`);
    if (!existsSync(vmlinuz))
      throw new StepError(`unpack ${deb}`, `no boot/vmlinuz-${pkg.release} inside the package`);
    log(`depmod ${pkg.release}`);
    runStep(`run depmod for ${pkg.release}`, depmod, ["-b", base, pkg.release]);
    const modDir = join(base, "lib/modules", pkg.release);
    const dep = parseModulesDep(readFileSync(join(modDir, "modules.dep"), "utf8"));
    const builtinPath = join(modDir, "modules.builtin");
    const builtin = existsSync(builtinPath)
      ? parseModulesBuiltin(readFileSync(builtinPath, "utf8"))
      : new Set();
    let order;
    let linuxOrder;
    try {
      order = resolveLoadOrder(dep, builtin, WANTED_MODULES);
      linuxOrder = resolveLoadOrder(dep, builtin, LINUX_LANE_MODULES);
    } catch (e) {
      throw new StepError(`find the guest's modules in ${pkg.name}`, /** @type {Error} */ (e).message);
    }
    const stage = join(tmp, "stage");
    mkdirSync(join(stage, "modules"), { recursive: true });
    copyFileSync(vmlinuz, join(stage, "vmlinuz"));
    for (const m of order)
      writeFileSync(join(stage, "modules", `${m.name}.ko`), decompressModule(join(modDir, m.path)));
    const manifest = {
      release: pkg.release,
      package: pkg.name,
      modules: order.map((m) => m.name),
      wanted: [...WANTED_MODULES],
      // what the Linux lane's guest loads, in order (scripts/linux-lane)
      linuxModules: linuxOrder.map((m) => m.name),
    };
    writeFileSync(join(stage, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    const dir = join(cacheRoot, `kernel-${pkg.release}`);
    rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(stage, dir);
    } catch (e) {
      // A concurrent run cached the same kernel first: use its copy.
      if (!readManifest(dir)) throw e;
    }
    return readManifest(dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * @returns {{ release: string, package: string, modules: string[], dir: string, vmlinuz: string, fresh: boolean }}
 */
export function ensureKernel({ cacheRoot, depmod, log }) {
  mkdirSync(cacheRoot, { recursive: true });
  let pkg = kernelPackage(cacheRoot);
  if (!pkg) {
    const cached = cachedKernels(cacheRoot);
    if (cached.length) {
      log(`apt-cache does not know ${META_PACKAGE}; using the cached kernel ${cached[0].release}`);
      return { ...cached[0], fresh: false };
    }
    aptUpdate(log);
    pkg = kernelPackage(cacheRoot);
    if (!pkg)
      throw new StepError(
        `find the kernel package`,
        `apt-cache knows no ${META_PACKAGE} (check apt sources)`,
      );
  }
  const hit = readManifest(join(cacheRoot, `kernel-${pkg.release}`));
  // a cache made before a module was wanted is made again (offline, build() falls back to it)
  if (hit && WANTED_MODULES.every((m) => hit.wanted?.includes(m))) return { ...hit, fresh: false };
  let built;
  try {
    built = build(cacheRoot, pkg, depmod, log);
  } catch (e) {
    // Offline, or the mirror moved on: a kernel cached earlier still does the job.
    const older = cachedKernels(cacheRoot);
    if (!older.length) throw e;
    log(`${/** @type {Error} */ (e).message}\nusing the cached kernel ${older[0].release} instead`);
    return { ...older[0], fresh: false };
  }
  // Older kernels' folders are dead weight once a newer ABI is cached.
  for (const k of cachedKernels(cacheRoot))
    if (k.release !== pkg.release) rmSync(k.dir, { recursive: true, force: true });
  return { ...built, fresh: true };
}

function decompress(kind, payload) {
  if (kind === "gzip") return gunzipSync(payload);
  const tool = kind === "xz" ? "xz" : kind === "zstd" ? "zstd" : null;
  if (!tool) throw new Error(`unknown compression`);
  if (!which(tool)) throw new Error(`${tool} is missing`);
  // The kernel appends the decompressed size after the stream: read only the first stream.
  const args = tool === "xz" ? ["-dc", "--single-stream"] : ["-dc"];
  const r = spawnSync(tool, args, { input: payload, maxBuffer: 1024 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${tool} -dc failed: ${r.stderr.toString().trim()}`);
  return r.stdout;
}

/**
 * The image QEMU should boot: the ELF vmlinux unwrapped from the bzImage when it has a PVH entry (boots
 * about twice as fast under TCG), else the bzImage itself. The outcome is cached next to the kernel.
 * @returns {{ path: string, pvh: boolean, why?: string }}
 */
export function bootImage(kernel) {
  const vmlinux = join(kernel.dir, "vmlinux");
  const unusable = join(kernel.dir, "vmlinux.unusable");
  if (existsSync(vmlinux)) return { path: vmlinux, pvh: true };
  if (existsSync(unusable))
    return { path: kernel.vmlinuz, pvh: false, why: readFileSync(unusable, "utf8").trim() };
  let why;
  try {
    const { kind, payload } = bzImagePayload(readFileSync(kernel.vmlinuz));
    const elf = decompress(kind, payload);
    if (hasPvhEntry(elf)) {
      const tmp = `${vmlinux}.tmp-${process.pid}`;
      writeFileSync(tmp, elf);
      renameSync(tmp, vmlinux);
      return { path: vmlinux, pvh: true };
    }
    why = "the kernel has no PVH entry note";
  } catch (e) {
    why = `could not unwrap the bzImage: ${/** @type {Error} */ (e).message}`;
  }
  writeFileSync(unusable, `${why}\n`);
  return { path: kernel.vmlinuz, pvh: false, why };
}
