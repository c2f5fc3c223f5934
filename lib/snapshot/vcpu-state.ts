// A vCPU's architectural state in a snapshot. The part every backend has comes through the
// backend-neutral API (registers, segment caches, control registers, the MSRs listed below). The
// soft backend adds what its VT-x keeps: the VMCS guest-state area and pending-injection fields
// (activity state = HLT or wait-for-SIPI, STI/MOV-SS shadow, an event about to be injected, pending
// debug exceptions, SYSENTER, DR7, PAT), the NMI, INIT and SIPI latched on its logical processor,
// the interpreter's FPU/SSE state, DR0-DR6 and the TSC offset. The KVM backend adds what KVM keeps
// (kvm-vcpu.ts: XSAVE area, XCRs, vCPU events, MP state, LAPIC, debug registers, IA32_TSC). Both
// add the architectural record (arch-state.ts) the other backend resumes from.

import { MTRR_MSRS } from "../cpu/msr.js";
import type { Regs, SpecialRegs } from "../types/regs.js";
import type { VcpuBackend } from "../vmm/backend.js";
import {
  type ArchVcpuState,
  SOFT_FPU_BYTES,
  SOFT_XMM_BYTES,
  type SoftVcpuState,
} from "../vmm/backends/soft/saved-state.js";
import type { SoftVcpu } from "../vmm/backends/soft/vcpu.js";
import type { Vcpu } from "../vmm/vcpu.js";
import { F } from "../vmx/index.js";
import { checkArch } from "./arch-state.js";
import { SnapshotError } from "./errors.js";
import {
  applyArchOnKvm,
  applyKvmVcpu,
  captureKvmVcpu,
  checkKvmVcpu,
  type KvmVcpuState,
  kvmVcpuOf,
} from "./kvm-vcpu.js";

export type { SoftVcpuState } from "../vmm/backends/soft/saved-state.js";

/**
 * MSRs saved through getMsr/setMsr, when the vCPU has them. EFER, FS/GS base and the APIC base
 * travel in the special registers; the TSC follows the machine clock (saved apart).
 */
export const SAVED_MSRS: readonly number[] = [
  0x174,
  0x175,
  0x176, // SYSENTER
  0x1a0, // MISC_ENABLE
  0x1d9, // DEBUGCTL
  0x277, // PAT
  ...MTRR_MSRS,
  0xc0000081,
  0xc0000082,
  0xc0000083,
  0xc0000084, // STAR LSTAR CSTAR SFMASK
  0xc0000102, // KERNEL_GS_BASE
  0xc0000103, // TSC_AUX
  0x3b, // TSC_ADJUST (on soft the TSC offset is this; written after the clock is restored)
  0x48, // SPEC_CTRL (where CPUID.7.0:EDX[26] offers it)
];

export interface VcpuState {
  index: number;
  regs: Regs;
  sregs: SpecialRegs;
  msrs: [number, bigint][];
  /** present when the snapshot came from the soft backend */
  soft?: SoftVcpuState;
  /** present when the snapshot came from KVM */
  kvm?: KvmVcpuState;
  /** x87/SSE, events, debug registers and TSC in a form both backends take (absent in older snapshots) */
  arch?: ArchVcpuState;
}

/** What a soft vCPU does for snapshots, on the machine's thread or in its own (SoftVcpu, SoftThreadVcpu). */
export type SoftSavedStateAccess = Pick<SoftVcpu, "captureSoftState" | "applySoftState">;

export function softSavedStateOf(backend: VcpuBackend): SoftSavedStateAccess | undefined {
  const b = backend as Partial<SoftSavedStateAccess>;
  return typeof b.captureSoftState === "function" && typeof b.applySoftState === "function"
    ? (b as SoftSavedStateAccess)
    : undefined;
}

export function captureVcpu(vcpu: Vcpu): VcpuState {
  const msrs: [number, bigint][] = [];
  for (const index of SAVED_MSRS) {
    const v = vcpu.getMsr(index);
    if (v !== undefined) msrs.push([index, v]);
  }
  const state: VcpuState = { index: vcpu.index, regs: vcpu.getRegs(), sregs: vcpu.getSregs(), msrs };
  const kvm = kvmVcpuOf(vcpu.backend);
  if (kvm) {
    const k = captureKvmVcpu(kvm);
    state.kvm = k.kvm;
    state.arch = k.arch;
  }
  const soft = softSavedStateOf(vcpu.backend);
  if (soft) {
    const saved = soft.captureSoftState();
    state.arch = saved.arch;
    state.soft = saved.soft;
  }
  return state;
}

/** Checks the shape before anything is written (a bad record must not half-restore the vCPU). */
export function checkVcpuState(s: unknown, i: number): VcpuState {
  const v = s as VcpuState;
  const bad = (what: string) => new SnapshotError("vcpus", `vCPU ${i}: ${what}`);
  if (!v || typeof v !== "object") throw bad("not a record");
  if (!v.regs || typeof v.regs.rip !== "bigint") throw bad("registers missing");
  if (!v.sregs || typeof v.sregs.cr0 !== "bigint" || !v.sregs.cs) throw bad("special registers missing");
  if (!Array.isArray(v.msrs) || v.msrs.some((m) => !Array.isArray(m) || typeof m[1] !== "bigint")) {
    throw bad("MSR list malformed");
  }
  if (v.soft) {
    if (!v.soft.vmcs || typeof v.soft.vmcs !== "object") throw bad("VMCS fields missing");
    for (const [name, value] of Object.entries(v.soft.vmcs)) {
      if (!(name in F) || typeof value !== "bigint") throw bad(`VMCS field ${name} unknown or not a number`);
    }
    if (typeof v.soft.fpu !== "string" || typeof v.soft.xmm !== "string") throw bad("FPU/SSE state missing");
    const fpuBytes = Buffer.from(v.soft.fpu, "base64").length;
    const xmmBytes = Buffer.from(v.soft.xmm, "base64").length;
    if (fpuBytes !== SOFT_FPU_BYTES || xmmBytes !== SOFT_XMM_BYTES) {
      throw bad(`FPU/SSE state is ${fpuBytes}+${xmmBytes} bytes, want ${SOFT_FPU_BYTES}+${SOFT_XMM_BYTES}`);
    }
    const p = v.soft.pending;
    if (
      p !== undefined &&
      (typeof p !== "object" ||
        p === null ||
        typeof p.nmi !== "boolean" ||
        typeof p.init !== "boolean" ||
        !Number.isInteger(p.sipiVector) ||
        p.sipiVector < -1 ||
        p.sipiVector > 0xff)
    ) {
      throw bad("pending NMI/INIT/SIPI malformed");
    }
  }
  if (v.kvm !== undefined) checkKvmVcpu(v.kvm, bad);
  if (v.arch !== undefined) checkArch(v.arch, bad);
  return v;
}

/**
 * Puts a saved state on a vCPU of this machine. `notes` collects what the target cannot take (a
 * soft state on KVM, an MSR the target lacks). The machine clock must be restored first (TSC).
 */
export function applyVcpu(vcpu: Vcpu, s: VcpuState, notes: string[]): void {
  try {
    vcpu.setSregs(s.sregs);
    vcpu.setRegs(s.regs);
  } catch (e) {
    throw new SnapshotError("vcpus", `vCPU ${s.index}: ${e instanceof Error ? e.message : String(e)}`);
  }
  for (const [index, value] of s.msrs) {
    try {
      vcpu.setMsr(index, value);
    } catch {
      notes.push(`vCPU ${s.index}: MSR 0x${index.toString(16)} not restored (this backend refuses it)`);
    }
  }
  const kvm = kvmVcpuOf(vcpu.backend);
  if (kvm) {
    try {
      if (s.kvm) applyKvmVcpu(kvm, s.kvm, notes);
      else if (s.arch) applyArchOnKvm(kvm, s.arch, notes);
      else notes.push(`vCPU ${s.index}: saved without FPU/SSE and event state (they are reset)`);
    } catch (e) {
      throw new SnapshotError("vcpus", `vCPU ${s.index}: ${e instanceof Error ? e.message : String(e)}`);
    }
    return;
  }
  const soft = softSavedStateOf(vcpu.backend);
  if (!soft) {
    notes.push(`vCPU ${s.index}: FPU/SSE and event state not applied on this backend`);
    return;
  }
  let own: string[];
  try {
    // a soft record wins over the architectural one (exact); without either the state stays reset
    own = soft.applySoftState({ soft: s.soft, arch: s.soft ? undefined : s.arch });
  } catch (e) {
    throw new SnapshotError("vcpus", `vCPU ${s.index}: ${e instanceof Error ? e.message : String(e)}`);
  }
  for (const note of own) notes.push(`vCPU ${s.index}: ${note}`);
}
