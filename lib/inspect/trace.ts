// One line per VM exit: kind, port/address, size, data, RIP, and the backend's own view (KVM exit
// code, or the VMX basic exit reason with its qualification and instruction length).

import { kvmExitName, vmxExitReasonName } from "../types/exit-names.js";
import type { RawExit, VmExit } from "../types/exits.js";

/** What formatExit() adds to an exit's line besides the exit itself. */
export interface TraceInfo {
  /** sequence number of the exit */
  index?: number;
  /** RIP at the exit, shown when given. */
  rip?: bigint;
  /** The vCPU's index, shown when given. */
  vcpu?: number;
  /** the access found no device or handler */
  unhandled?: boolean;
}

const MAX_DATA_BYTES = 16;

function le(data: Uint8Array, offset: number, size: number): string {
  let s = "";
  for (let i = size - 1; i >= 0; i--) s += (data[offset + i] ?? 0).toString(16).padStart(2, "0");
  return s;
}

function formatData(data: Uint8Array, size: number, count: number): string {
  const n = Math.min(count, Math.max(1, Math.floor(MAX_DATA_BYTES / size)));
  const values: string[] = [];
  for (let i = 0; i < n; i++) values.push(`0x${le(data, i * size, size)}`);
  let s = values.join(",");
  if (count > n) s += `,…(+${count - n})`;
  if (size === 1 && count === 1) {
    const b = data[0] ?? 0;
    if (b >= 0x20 && b < 0x7f) s += ` '${String.fromCharCode(b)}'`;
  }
  return s;
}

/** The backend's own view of an exit: "kvm IO(2)", or "vmx 30 IO_INSTRUCTION qual=0x... len=1". */
export function formatRaw(raw: RawExit): string {
  if (raw.backend === "kvm") return `kvm ${kvmExitName(raw.code)}(${raw.code})`;
  const entryFail = raw.exitReasonField & 0x80000000 ? " entry-failure" : "";
  return `vmx ${raw.reason} ${vmxExitReasonName(raw.reason)}${entryFail} qual=0x${raw.qualification.toString(16)} len=${raw.instructionLength}`;
}

/** An exit's kind-specific detail: port/address, size, direction and data; fail/error reasons; and so on. */
export function formatExitDetail(exit: VmExit): string {
  switch (exit.kind) {
    case "io": {
      const head = `io ${exit.direction} port=0x${exit.port.toString(16).padStart(4, "0")} size=${exit.size}`;
      const count = exit.count > 1 ? ` count=${exit.count}` : "";
      return `${head}${count} data=${formatData(exit.data, exit.size, Math.max(1, exit.count))}`;
    }
    case "mmio":
      return `mmio ${exit.write ? "write" : "read"} addr=0x${exit.address.toString(16)} len=${exit.length} data=0x${le(exit.data, 0, Math.min(exit.length, 8))}`;
    case "fail-entry":
      return `fail-entry reason=0x${exit.reason.toString(16)}`;
    case "internal-error":
      return `internal-error suberror=${exit.suberror}${exit.message ? ` ${exit.message}` : ""}`;
    case "system-event":
      return `system-event type=${exit.type}`;
    case "debug":
      return `debug exception=${exit.exception} pc=0x${exit.pc.toString(16)} dr6=0x${exit.dr6.toString(16)} dr7=0x${exit.dr7.toString(16)}`;
    case "hypercall":
      return `hypercall nr=0x${exit.nr.toString(16)} args=[${exit.args.map((a) => `0x${a.toString(16)}`).join(",")}] ret=0x${BigInt.asUintN(64, exit.ret).toString(16)}`;
    case "cpuid":
      return `cpuid leaf=0x${exit.leaf.toString(16)} subleaf=0x${exit.subleaf.toString(16)}`;
    case "msr":
      return `msr ${exit.write ? "write" : "read"} index=0x${exit.index.toString(16)} value=0x${exit.value.toString(16)}`;
    case "unknown":
      return `unknown code=${exit.code}`;
    default:
      return exit.kind;
  }
}

/** e.g. "#3 io out port=0x03f8 size=1 data=0x48 'H' rip=0x7c05 [kvm IO(2)]" */
export function formatExit(exit: VmExit, info: TraceInfo = {}): string {
  const parts: string[] = [];
  if (info.index !== undefined) parts.push(`#${info.index}`);
  if (info.vcpu !== undefined) parts.push(`cpu${info.vcpu}`);
  parts.push(formatExitDetail(exit));
  if (info.unhandled) parts.push("(unregistered)");
  if (info.rip !== undefined) parts.push(`rip=0x${info.rip.toString(16)}`);
  parts.push(`[${formatRaw(exit.raw)}]`);
  return parts.join(" ");
}
