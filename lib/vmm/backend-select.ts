// Opening a backend. The KVM and soft backends are loaded with dynamic import() so that a missing
// or broken backend module (or native binding) is a clear BackendUnavailableError for that backend
// only; "auto" tries KVM first and records why it fell back.

import type { BackendKind, InterruptController, MachineBackend } from "./backend.js";
import { BackendUnavailableError, MachineConfigError, VmmError } from "./errors.js";

/** What a {@link BackendFactory} is asked to build. */
export interface BackendFactoryOptions {
  /** Guest RAM to provide, in bytes (MachineOptions.memoryMiB times 2^20). */
  memoryBytes: number;
  /** the platform interrupt controller (i8259 pair) a soft backend injects interrupts from */
  interruptController?: InterruptController;
  /** vCPUs the machine will create (a soft backend states the CPU topology in CPUID from it) */
  vcpus?: number;
  /** soft backend: each vCPU runs in a worker thread of its own (lib/vmm/backends/soft/threads.ts) */
  vcpuThreads?: boolean;
  /** soft backend, with vcpuThreads: at most this many worker threads, the vCPUs moving between them */
  vcpuThreadCount?: number;
}

/**
 * Builds a custom backend (`createMachine({ backend: factory })`); the machine then runs on it as on KVM or
 * soft.
 */
export type BackendFactory = (opts: BackendFactoryOptions) => MachineBackend | Promise<MachineBackend>;
/** `MachineOptions.backend`: "auto" (KVM when usable, else soft), "kvm", "soft", or a factory of your own. */
export type BackendRequest = "auto" | BackendKind | BackendFactory;

/** Which backend a machine got and why (`vm.backendInfo`). */
export interface BackendInfo {
  /** The backend in use. */
  kind: BackendKind;
  /** What was asked for ("custom": a BackendFactory). */
  requested: "auto" | BackendKind | "custom";
  /** "auto" only: why KVM was not used */
  fallbackReason?: string;
  /** one line for humans: "kvm" / "soft (KVM unavailable: /dev/kvm: permission denied)" */
  message: string;
}

interface KvmModule {
  createKvmBackend(opts: { memoryBytes: number; vcpus?: number }): MachineBackend | Promise<MachineBackend>;
}
interface SoftModule {
  createSoftBackend(opts: {
    memoryBytes: number;
    interruptController?: InterruptController;
    vcpus?: number;
    threadModule?: string;
  }): MachineBackend | Promise<MachineBackend>;
  softWorkerUrl?(): Promise<string>;
}

// Literal specifiers, so that the CLI's bundler (scripts/build-cli.mjs) follows them: in the bundle a
// backend's modules are still evaluated only when that backend is opened.
const importKvm = () => import("./backends/kvm.js");
const importSoft = () => import("./backends/soft.js");

const describe = (e: unknown): string => {
  // a backend missing from this build (not yet compiled, or removed) is not a crash worth a stack
  if ((e as { code?: string })?.code === "ERR_MODULE_NOT_FOUND") {
    const missing = (e as Error).message.match(/Cannot find module '([^']+)'/)?.[1];
    return `module not found${missing ? ` (${missing})` : ""}`;
  }
  // nodevmm's own errors are written for people; an engine error's class says it is a bug
  if (e instanceof VmmError) return e.message;
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
};

async function importModule<T>(
  kind: BackendKind,
  load: () => Promise<unknown>,
  exportName: string,
): Promise<T> {
  let mod: Record<string, unknown>;
  try {
    mod = (await load()) as Record<string, unknown>;
  } catch (e) {
    throw new BackendUnavailableError(`the ${kind} backend module failed to load (${describe(e)})`, kind, e);
  }
  if (typeof mod[exportName] !== "function") {
    throw new BackendUnavailableError(`the ${kind} backend module does not export ${exportName}()`, kind);
  }
  return mod as T;
}

export async function openKvmBackend(memoryBytes: number, vcpus = 1): Promise<MachineBackend> {
  const mod = await importModule<KvmModule>("kvm", importKvm, "createKvmBackend");
  try {
    return await mod.createKvmBackend({ memoryBytes, vcpus });
  } catch (e) {
    if (e instanceof BackendUnavailableError) throw e;
    throw new BackendUnavailableError(`KVM unavailable: ${describe(e)}`, "kvm", e);
  }
}

export async function openSoftBackend(
  memoryBytes: number,
  interruptController?: InterruptController,
  vcpus = 1,
  vcpuThreads = false,
  threads?: number,
): Promise<MachineBackend> {
  const mod = await importModule<SoftModule>("soft", importSoft, "createSoftBackend");
  try {
    const threadModule = vcpuThreads && mod.softWorkerUrl ? await mod.softWorkerUrl() : undefined;
    return await mod.createSoftBackend({
      memoryBytes,
      vcpus,
      ...(interruptController ? { interruptController } : {}),
      ...(threadModule === undefined ? {} : { threadModule }),
      ...(threadModule === undefined || threads === undefined ? {} : { threads }),
    });
  } catch (e) {
    if (e instanceof BackendUnavailableError) throw e;
    throw new BackendUnavailableError(`the soft backend failed to start: ${describe(e)}`, "soft", e);
  }
}

/** How each backend is opened; replaceable so that the "auto" fallback can be exercised anywhere. */
export interface BackendOpeners {
  kvm(memoryBytes: number, vcpus?: number): Promise<MachineBackend>;
  soft(
    memoryBytes: number,
    interruptController?: InterruptController,
    vcpus?: number,
    vcpuThreads?: boolean,
    threads?: number,
  ): Promise<MachineBackend>;
}

const defaultOpeners: BackendOpeners = { kvm: openKvmBackend, soft: openSoftBackend };

export async function openBackend(
  request: BackendRequest,
  opts: BackendFactoryOptions,
  openers: BackendOpeners = defaultOpeners,
): Promise<{ backend: MachineBackend; info: BackendInfo }> {
  if (typeof request === "function") {
    const backend = await request(opts);
    return {
      backend,
      info: { kind: backend.kind, requested: "custom", message: `${backend.kind} (custom)` },
    };
  }
  switch (request) {
    case "kvm": {
      const backend = await openers.kvm(opts.memoryBytes, opts.vcpus);
      return { backend, info: { kind: "kvm", requested: "kvm", message: "kvm" } };
    }
    case "soft": {
      const backend = await openers.soft(
        opts.memoryBytes,
        opts.interruptController,
        opts.vcpus,
        opts.vcpuThreads,
        opts.vcpuThreadCount,
      );
      return { backend, info: { kind: "soft", requested: "soft", message: "soft" } };
    }
    case "auto": {
      let fallbackReason: string;
      try {
        const backend = await openers.kvm(opts.memoryBytes, opts.vcpus);
        return { backend, info: { kind: "kvm", requested: "auto", message: "kvm" } };
      } catch (e) {
        fallbackReason = e instanceof Error ? e.message : String(e);
      }
      try {
        const backend = await openers.soft(
          opts.memoryBytes,
          opts.interruptController,
          opts.vcpus,
          opts.vcpuThreads,
          opts.vcpuThreadCount,
        );
        return {
          backend,
          info: { kind: "soft", requested: "auto", fallbackReason, message: `soft (${fallbackReason})` },
        };
      } catch (e) {
        throw new BackendUnavailableError(
          `no backend available: ${fallbackReason}; and ${e instanceof Error ? e.message : String(e)}`,
          "soft",
          e,
        );
      }
    }
    default:
      throw new MachineConfigError(
        `backend must be "auto", "kvm", "soft" or a factory, got ${String(request)}`,
      );
  }
}
