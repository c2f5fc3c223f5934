// `nodevmm info`: can this host run guests on KVM, and if not, why; which system-call binding KVM
// would run on (the native addon or koffi) and why that one; what the soft backend says.

import { type BindingChoice, describeBinding } from "../kvm/binding.js";
import { type HostInfo, probeHost } from "../vmm/host-info.js";
import type { CliStreams } from "./run.js";

function formatValue(v: unknown): string {
  if (typeof v === "bigint") return `0x${v.toString(16)}`;
  if (Array.isArray(v)) return v.map(formatValue).join(", ");
  if (v && typeof v === "object") {
    return Object.entries(v)
      .map(([k, x]) => `${k}=${formatValue(x)}`)
      .join(" ");
  }
  return String(v);
}

export function formatHostInfo(info: HostInfo, binding?: BindingChoice): string {
  const d = info.kvmDevice;
  const lines = [
    `${d.path}: ${d.present ? (d.readWrite ? "present, read-write access" : `present, not accessible (${d.error})`) : "missing"}`,
  ];
  if (binding) lines.push(`binding: ${binding.kind ?? "none"} (${binding.reason})`);
  if (info.kvmProbe !== undefined) {
    const probe = info.kvmProbe;
    if (probe && typeof probe === "object") {
      for (const [k, v] of Object.entries(probe)) lines.push(`kvm ${k}: ${formatValue(v)}`);
    } else {
      lines.push(`kvm: ${formatValue(probe)}`);
    }
  } else {
    lines.push(`kvm backend: unavailable (${info.kvmProbeError})`);
  }
  if (info.kvmCapabilities) {
    const caps = Object.entries(info.kvmCapabilities);
    const yes = caps.filter(([, v]) => v !== 0).map(([k, v]) => (v === 1 ? k : `${k}=${v}`));
    const no = caps.filter(([, v]) => v === 0).map(([k]) => k);
    lines.push(`kvm capabilities: ${yes.join(" ") || "none"}`);
    if (no.length) lines.push(`kvm missing capabilities: ${no.join(" ")}`);
  }
  lines.push(`soft backend: ${info.soft.available ? "available" : `unavailable (${info.soft.error})`}`);
  lines.push(`cpu vendor: ${info.cpu.vendor ?? "unknown"}${info.cpu.model ? ` (${info.cpu.model})` : ""}`);
  lines.push(
    `cpu virtualization flags: ${[info.cpu.vmx ? "vmx" : "", info.cpu.svm ? "svm" : ""].filter(Boolean).join(" ") || "none"}`,
  );
  lines.push(`node: ${info.node} ${info.platform}`);
  return `${lines.join("\n")}\n`;
}

export async function infoCommand(opts: { json?: boolean }, io: CliStreams): Promise<number> {
  const info = await probeHost();
  const binding = describeBinding();
  if (opts.json) {
    io.stdout.write(
      `${JSON.stringify({ ...info, binding }, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 2)}\n`,
    );
  } else {
    io.stdout.write(formatHostInfo(info, binding));
  }
  return 0;
}
