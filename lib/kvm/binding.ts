// The system-call binding lib/kvm runs on: the native addon (build/Release/nodevmm.node) or koffi
// calling libc. NODEVMM_BINDING=addon|koffi selects; by default the addon, else koffi.

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BindingKind, KvmBinding } from "./binding-api.js";
import { KvmUnavailableError } from "./errors.js";
import { createKoffiBinding, isVcpuFd } from "./koffi-binding.js";

export type {
  AddonKickTarget,
  BindingKind,
  IoctlArg,
  KickTarget,
  KoffiKickTarget,
  KvmBinding,
} from "./binding-api.js";

/** The addon's C table of the KVM ABI (sizes, offsetof, request numbers). */
export interface AbiTable {
  /** Each struct's size and field offsets, from sizeof/offsetof. */
  structs: Record<string, { size: number; fields: Record<string, number> }>;
  /** Each ioctl's request number, from the kernel headers. */
  ioctls: Record<string, number>;
}

interface AddonModule extends Omit<KvmBinding, "kind" | "crossThreadKick"> {
  layout: AbiTable;
  kickSignal: number;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, "utf8")).name === "nodevmm") return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("nodevmm: cannot find the package root");
    dir = up;
  }
}

/** Path of the built addon (also loadable with require() from a worker thread), or undefined. */
export function addonPath(): string | undefined {
  const p = join(packageRoot(), "build", "Release", "nodevmm.node");
  return existsSync(p) ? p : undefined;
}

let addonModule: AddonModule | null | undefined;
/** why the built addon could not be loaded (another Node's build, a missing library) */
let addonLoadError: string | undefined;
function loadAddonModule(): AddonModule | null {
  if (addonModule !== undefined) return addonModule;
  const p = addonPath();
  addonModule = null;
  if (p) {
    try {
      addonModule = createRequire(import.meta.url)(p) as AddonModule;
    } catch (e) {
      // koffi still works: a broken build must not take the KVM backend with it
      addonLoadError = e instanceof Error ? e.message.split("\n")[0] : String(e);
    }
  }
  return addonModule;
}

/** The addon's ABI table, or undefined when the addon is not built. */
export function addonAbiTable(): AbiTable | undefined {
  return loadAddonModule()?.layout;
}

const cache = new Map<BindingKind, KvmBinding>();

function makeAddon(): KvmBinding | undefined {
  const m = loadAddonModule();
  const path = addonPath();
  if (!m || !path) return undefined;
  return {
    kind: "addon",
    crossThreadKick: true,
    open: m.open,
    close: m.close,
    ioctl: m.ioctl,
    mmap: m.mmap,
    mmapAnonymous: m.mmapAnonymous,
    munmap: m.munmap,
    eventfd: m.eventfd,
    run: m.run,
    kick: m.kick,
    kickTarget(vcpuFd) {
      if (!Number.isInteger(vcpuFd) || vcpuFd < 0) throw new TypeError("vcpuFd must be a file descriptor");
      if (!isVcpuFd(vcpuFd)) throw new TypeError(`fd ${vcpuFd} is not a KVM vCPU`);
      return { binding: "addon", addonPath: path, vcpuFd };
    },
    setUserMemoryRegion: m.setUserMemoryRegion,
    getDirtyLog: m.getDirtyLog,
  };
}

/** Which bindings can be loaded here. */
export function availableBindings(): BindingKind[] {
  const out: BindingKind[] = [];
  if (loadAddonModule()) out.push("addon");
  try {
    createRequire(import.meta.url).resolve("koffi");
    out.push("koffi");
  } catch {
    // koffi not installed
  }
  return out;
}

/**
 * The binding to use: `kind`, else NODEVMM_BINDING, else the addon when built, else koffi.
 * Throws KvmUnavailableError("no-binding") when the requested one cannot be loaded.
 */
export function loadBinding(kind?: BindingKind): KvmBinding {
  const env = process.env.NODEVMM_BINDING;
  if (!kind && env !== undefined && env !== "") {
    if (env !== "addon" && env !== "koffi") {
      throw new TypeError(`NODEVMM_BINDING must be "addon" or "koffi", not ${JSON.stringify(env)}`);
    }
    kind = env;
  }
  const want: BindingKind[] = kind ? [kind] : ["addon", "koffi"];
  for (const k of want) {
    const hit = cache.get(k);
    if (hit) return hit;
    const b = k === "addon" ? makeAddon() : makeKoffiSafe();
    if (b) {
      cache.set(k, b);
      return b;
    }
  }
  throw new KvmUnavailableError(
    "no-binding",
    kind === "addon" ? "the nodevmm addon is not built" : "no KVM binding could be loaded",
    kind === "addon"
      ? "run `node scripts/build-addon.mjs`, or set NODEVMM_BINDING=koffi"
      : "install koffi or build the addon",
  );
}

/** Which binding loadBinding() gives here, and why that one; kind undefined when none loads. */
export interface BindingChoice {
  /** The binding, or undefined when none loads. */
  kind: BindingKind | undefined;
  /** Why this one (NODEVMM_BINDING, the addon missing, ...), or why none loads. */
  reason: string;
}

/** What scripts/build-addon.mjs wrote at install: whether the addon was built, and why not. */
function installStatus(): { built?: boolean; reason?: string } | undefined {
  try {
    return JSON.parse(readFileSync(join(packageRoot(), "build", "addon-status.json"), "utf8"));
  } catch {
    return undefined;
  }
}

/** Why the addon is not in use, in a few words (for `nodevmm info`). */
function addonAbsence(): string {
  if (addonLoadError !== undefined) return `the native addon did not load (${addonLoadError})`;
  const status = installStatus();
  if (status && status.built === false && status.reason) return `no native addon: ${status.reason}`;
  if (status?.built === true)
    return "no native addon: it was built at install, but build/Release/nodevmm.node is gone";
  return "no native addon: it was not built (install scripts did not run, e.g. npm install --ignore-scripts)";
}

/** Which binding loads here and why; never throws (`nodevmm info` prints it). */
export function describeBinding(): BindingChoice {
  const env = process.env.NODEVMM_BINDING;
  let b: KvmBinding;
  try {
    b = loadBinding();
  } catch (e) {
    return { kind: undefined, reason: e instanceof Error ? e.message : String(e) };
  }
  if (env === "addon" || env === "koffi") return { kind: b.kind, reason: `NODEVMM_BINDING=${env}` };
  if (b.kind === "addon") return { kind: "addon", reason: `native addon at ${addonPath()}` };
  return {
    kind: "koffi",
    reason: `${addonAbsence()}; \`npm rebuild nodevmm\` with python3, make and g++ builds it`,
  };
}

function makeKoffiSafe(): KvmBinding | undefined {
  try {
    return createKoffiBinding();
  } catch (e) {
    if (process.env.NODEVMM_DEBUG) console.error(e);
    return undefined;
  }
}
