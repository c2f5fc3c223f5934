// What `nodevmm info` reports about the host: /dev/kvm (present, accessible), what the KVM
// backend's probeKvm() says (API version, capabilities, binding), whether the soft backend loads,
// and the CPU vendor and virtualization flags from /proc/cpuinfo.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";

/**
 * What probeHost() finds (and `nodevmm info` prints): /dev/kvm, the KVM backend's probe, the soft backend,
 * and the host CPU.
 */
export interface HostInfo {
  /** /dev/kvm: whether it exists and this process may open it read-write (else why not). */
  kvmDevice: { path: string; present: boolean; readWrite: boolean; error?: string };
  /** whatever the KVM backend's probeKvm() returned (API version, capabilities, binding, ...) */
  kvmProbe?: unknown;
  /** Why the KVM backend could not be probed, when it could not. */
  kvmProbeError?: string;
  /** KVM_CHECK_EXTENSION for the capabilities nodevmm cares about (0: unsupported) */
  kvmCapabilities?: Record<string, number>;
  /** Whether the soft backend loads (else why not). */
  soft: { available: boolean; error?: string };
  /** The host CPU from /proc/cpuinfo: vendor, model, and whether it has VT-x (vmx) or AMD-V (svm). */
  cpu: { vendor?: string; model?: string; vmx: boolean; svm: boolean };
  /** The Node.js version (process.version). */
  node: string;
  /** The host platform and architecture, e.g. "linux-x64". */
  platform: string;
}

const describe = (e: unknown): string => {
  // a backend missing from this build (not yet compiled, or removed) is not a crash worth a stack
  if ((e as { code?: string })?.code === "ERR_MODULE_NOT_FOUND") {
    const missing = (e as Error).message.match(/Cannot find module '([^']+)'/)?.[1];
    return `module not found${missing ? ` (${missing})` : ""}`;
  }
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
};

function cpuInfo(): HostInfo["cpu"] {
  let text = "";
  try {
    text = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return { vmx: false, svm: false };
  }
  const field = (name: string) => text.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1]?.trim();
  const flags = ` ${field("flags") ?? ""} `;
  const cpu: HostInfo["cpu"] = { vmx: flags.includes(" vmx "), svm: flags.includes(" svm ") };
  const vendor = field("vendor_id");
  const model = field("model name");
  if (vendor) cpu.vendor = vendor;
  if (model) cpu.model = model;
  return cpu;
}

/** Probes the host for what the backends need (never throws: what fails is reported in the result). */
export async function probeHost(): Promise<HostInfo> {
  // the device lib/kvm opens (NODEVMM_KVM_DEVICE overrides it, as for tests of the error paths)
  const path = process.env.NODEVMM_KVM_DEVICE || "/dev/kvm";
  const kvmDevice: HostInfo["kvmDevice"] = { path, present: existsSync(path), readWrite: false };
  if (kvmDevice.present) {
    try {
      accessSync(path, constants.R_OK | constants.W_OK);
      kvmDevice.readWrite = true;
    } catch (e) {
      kvmDevice.error = (e as NodeJS.ErrnoException).code ?? describe(e);
    }
  }
  const info: HostInfo = {
    kvmDevice,
    soft: { available: false },
    cpu: cpuInfo(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
  try {
    const mod = (await import("./backends/kvm.js")) as { probeKvm?: () => unknown };
    if (typeof mod.probeKvm !== "function") info.kvmProbeError = "the KVM backend does not export probeKvm()";
    else info.kvmProbe = await mod.probeKvm();
  } catch (e) {
    info.kvmProbeError = describe(e);
  }
  if (kvmDevice.readWrite) {
    try {
      const kvm = await import("../kvm/index.js");
      const k = kvm.Kvm.open();
      try {
        const caps: Record<string, number> = {};
        for (const [name, cap] of Object.entries(kvm.KVM_CAP)) caps[name] = k.checkExtension(cap);
        info.kvmCapabilities = caps;
      } finally {
        k.close();
      }
    } catch (e) {
      info.kvmProbeError ??= describe(e);
    }
  }
  try {
    const mod = (await import("./backends/soft.js")) as { createSoftBackend?: unknown };
    info.soft.available = typeof mod.createSoftBackend === "function";
    if (!info.soft.available) info.soft.error = "the soft backend does not export createSoftBackend()";
  } catch (e) {
    info.soft.error = describe(e);
  }
  return info;
}
