// A vCPU's architectural state in a snapshot. The part every backend has comes through the
// backend-neutral API (registers, segment caches, control registers, the MSRs listed below). The
// soft backend adds what its VT-x keeps: the VMCS guest-state area and pending-injection fields
// (activity state = HLT or wait-for-SIPI, STI/MOV-SS shadow, an event about to be injected, pending
// debug exceptions, SYSENTER, DR7, PAT), the NMI, INIT and SIPI latched on its logical processor,
// the interpreter's FPU/SSE state, DR0-DR6 and the TSC offset. The KVM backend adds what KVM keeps
// (kvm-vcpu.ts: XSAVE area, XCRs, vCPU events, MP state, LAPIC, debug registers, IA32_TSC). Both
// add the architectural record (arch-state.ts) the other backend resumes from.

import type { Regs, SpecialRegs } from "../types/regs.js";
import type { VcpuBackend } from "../vmm/backend.js";
import type { Vcpu } from "../vmm/vcpu.js";
import { F, FIELDS, type LogicalProcessor } from "../vmx/index.js";
import { type ArchVcpuState, applySoftArch, checkArch, softArch } from "./arch-state.js";
import { SnapshotError } from "./errors.js";
import {
  applyArchOnKvm,
  applyKvmVcpu,
  captureKvmVcpu,
  checkKvmVcpu,
  type KvmVcpuState,
  kvmVcpuOf,
  MSR_TSC,
} from "./kvm-vcpu.js";

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
  0x2ff, // MTRR_DEF_TYPE
  ...Array.from({ length: 16 }, (_, i) => 0x200 + i), // variable MTRRs
  0x250,
  0x258,
  0x259,
  0x268,
  0x269,
  0x26a,
  0x26b,
  0x26c,
  0x26d,
  0x26e,
  0x26f, // fixed MTRRs
  0xc0000081,
  0xc0000082,
  0xc0000083,
  0xc0000084, // STAR LSTAR CSTAR SFMASK
  0xc0000102, // KERNEL_GS_BASE
  0xc0000103, // TSC_AUX
  0x3b, // TSC_ADJUST (on soft the TSC offset is this; written after the clock is restored)
];

/** VMCS fields outside the guest-state area that hold guest state (pending injection, CR shadows). */
const SOFT_CONTROL_FIELDS = [
  "VM_ENTRY_INTR_INFO_FIELD",
  "VM_ENTRY_EXCEPTION_ERROR_CODE",
  "VM_ENTRY_INSTRUCTION_LEN",
  "CR0_READ_SHADOW",
  "CR4_READ_SHADOW",
] as const;

export interface SoftVcpuState {
  /** VMCS fields by name (the guest-state area plus SOFT_CONTROL_FIELDS) */
  vmcs: Record<string, bigint>;
  /** the interpreter's x87 registers (8 x f64) and XMM registers, base64 of their bytes */
  fpu: string;
  fpuTop: number;
  fpuTag: number;
  fpuCw: number;
  fpuSw: number;
  xmm: string;
  mxcsr: number;
  /** DR0-DR7 as the interpreter keeps them */
  dr: number[];
  /** events latched on the logical processor, not yet taken (absent in older snapshots: none) */
  pending?: { nmi: boolean; init: boolean; sipiVector: number };
}

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

/** the soft backend's vCPU exposes its logical processor (lib/vmm/backends/soft/vcpu.ts) */
function softLp(backend: VcpuBackend): LogicalProcessor | undefined {
  const lp = (backend as { lp?: LogicalProcessor }).lp;
  return lp && typeof lp.vmread === "function" ? lp : undefined;
}

const GUEST_FIELDS = FIELDS.filter((f) => f.type === 2 && f.name !== "VMCS_LINK_POINTER").map((f) => f.name);

const b64 = (a: ArrayBufferView): string =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

function fromB64<T extends Float64Array | Int32Array>(
  text: string,
  make: (b: ArrayBuffer) => T,
  want: number,
): T {
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== want)
    throw new SnapshotError("vcpus", `FPU/SSE state is ${bytes.length} bytes, want ${want}`);
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return make(copy);
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
  const lp = softLp(vcpu.backend);
  if (lp) {
    state.arch = softArch(lp, vcpu.getMsr(MSR_TSC));
    const vmcs: Record<string, bigint> = {};
    for (const name of [...GUEST_FIELDS, ...SOFT_CONTROL_FIELDS]) vmcs[name] = lp.vmread(F[name]);
    const x = lp.cpu.getExtendedState();
    const dr = (lp.cpu as { dr?: Float64Array }).dr;
    state.soft = {
      vmcs,
      fpu: b64(x.fpu),
      fpuTop: x.fpuTop,
      fpuTag: x.fpuTag,
      fpuCw: x.fpuCw,
      fpuSw: x.fpuSw,
      xmm: b64(x.xmm),
      mxcsr: x.mxcsr,
      dr: dr ? [...dr] : [],
      pending: { nmi: lp.nmiPending, init: lp.initPending, sipiVector: lp.sipiVector },
    };
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
  const lp = softLp(vcpu.backend);
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
  if (!lp) {
    notes.push(`vCPU ${s.index}: FPU/SSE and event state not applied on this backend`);
    return;
  }
  if (!s.soft) {
    if (s.arch) {
      applySoftArch(lp, s.arch);
      notes.push(
        `vCPU ${s.index}: the TSC follows this machine's clock (IA32_TSC is not carried over to soft)`,
      );
    } else {
      notes.push(`vCPU ${s.index}: saved without FPU/SSE and event state (they are reset)`);
    }
    return;
  }
  for (const [name, value] of Object.entries(s.soft.vmcs)) lp.vmwrite(F[name as keyof typeof F], value);
  lp.cpu.setExtendedState({
    fpu: fromB64(s.soft.fpu, (b) => new Float64Array(b), 64),
    fpuTop: s.soft.fpuTop,
    fpuTag: s.soft.fpuTag,
    fpuCw: s.soft.fpuCw,
    fpuSw: s.soft.fpuSw,
    xmm: fromB64(s.soft.xmm, (b) => new Int32Array(b), lp.cpu.getExtendedState().xmm.byteLength),
    mxcsr: s.soft.mxcsr,
  });
  const dr = (lp.cpu as { dr?: Float64Array }).dr;
  if (dr && s.soft.dr.length === dr.length) dr.set(s.soft.dr);
  lp.nmiPending = s.soft.pending?.nmi ?? false;
  lp.initPending = s.soft.pending?.init ?? false;
  lp.sipiVector = s.soft.pending?.sipiVector ?? -1;
  if ((s.soft.vmcs.GUEST_ACTIVITY_STATE ?? 0n) === 1n) {
    notes.push(
      `vCPU ${s.index}: restored halted; it wakes at the next interrupt, but until then the loop sees host-timer exits, not HLT`,
    );
  }
}
