// What a soft vCPU's saved state is, read from and written to its logical processor: the VMCS
// guest-state area and the fields outside it that hold guest state, the interpreter's x87/SSE
// state and debug registers, and the NMI/INIT/SIPI latched on the processor. It is plain,
// structured-cloneable data, so that a vCPU in a worker thread (thread-worker.ts) hands it over as
// it is. lib/snapshot stores it in the formats below and re-exports them.

import type { Interpreter } from "../../../cpu/interpreter.js";
import { fxImage, loadFxImage } from "../../../cpu/x87.js";
import { F, FIELDS, type LogicalProcessor } from "../../../vmx/index.js";

/** bytes of the FXSAVE image kept: the legacy area's x87, MXCSR and XMM0-15 */
export const FX_BYTES = 160 + 16 * 16;
/** bytes of the interpreter's x87 registers (8 x f64) and XMM0-15 (16 x 16) in a SoftVcpuState */
export const SOFT_FPU_BYTES = 8 * 8;
export const SOFT_XMM_BYTES = 16 * 16;

export type Activity = "active" | "hlt" | "wait-sipi";

/** An event on its way into the guest at the next entry (VMX entry interruption information). */
export interface InjectedEvent {
  /** VMX interruption type: 0 external interrupt, 2 NMI, 3 hardware exception, 4 software interrupt, 6 software exception */
  type: number;
  vector: number;
  errorCode?: number;
  instructionLength: number;
}

/** The part of a vCPU's state both backends hold (see lib/snapshot/arch-state.ts). */
export interface ArchVcpuState {
  /** the FXSAVE image's first FX_BYTES bytes (FCW, FSW, abridged FTW, FOP, FIP, FDP, MXCSR, ST0-7, XMM0-15), base64 */
  fx: string;
  /** interrupts blocked by STI / by MOV SS or POP SS for one instruction */
  stiShadow: boolean;
  movSsShadow: boolean;
  /** NMIs blocked (an NMI handler runs) / one latched, not yet taken */
  nmiMasked: boolean;
  nmiPending: boolean;
  activity: Activity;
  injected?: InjectedEvent;
  /** DR0-DR3, DR6, DR7 */
  dr: { db: bigint[]; dr6: bigint; dr7: bigint };
  /** IA32_TSC when saved (undefined when the vCPU would not say) */
  tsc?: bigint;
}

/** The soft vCPU's own record: exact, taken when the soft backend resumes. */
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
  /** PKRU (absent in older snapshots: 0) */
  pkru?: number;
  /** DR0-DR7 as the interpreter keeps them */
  dr: number[];
  /** events latched on the logical processor, not yet taken (absent in older snapshots: none) */
  pending?: { nmi: boolean; init: boolean; sipiVector: number };
}

/** What SoftVcpu.captureSoftState gives and applySoftState takes (either part may be absent there). */
export interface SoftSavedState {
  soft: SoftVcpuState;
  arch: ArchVcpuState;
}

/** VMCS fields outside the guest-state area that hold guest state (pending injection, CR shadows). */
const SOFT_CONTROL_FIELDS = [
  "VM_ENTRY_INTR_INFO_FIELD",
  "VM_ENTRY_EXCEPTION_ERROR_CODE",
  "VM_ENTRY_INSTRUCTION_LEN",
  "CR0_READ_SHADOW",
  "CR4_READ_SHADOW",
] as const;

const GUEST_FIELDS = FIELDS.filter((f) => f.type === 2 && f.name !== "VMCS_LINK_POINTER").map((f) => f.name);

/** the VMCS fields a SoftVcpuState may name (anything else in a record is refused) */
export function isSavedVmcsField(name: string): boolean {
  return name in F;
}

const INTR_VALID = 1n << 31n;
const INTR_HAS_ERROR = 1n << 11n;

const b64 = (a: ArrayBufferView): string =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

function bytesOf(text: string, want: number, what: string): Uint8Array {
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== want) throw new RangeError(`${what} is ${bytes.length} bytes, want ${want}`);
  // a copy of its own: typed arrays over it must start at offset 0
  return new Uint8Array(bytes);
}

/** The FXSAVE image an ArchVcpuState carries; RangeError when it is not FX_BYTES long. */
export function fxBytesOf(text: string): Uint8Array {
  return bytesOf(text, FX_BYTES, "FXSAVE image");
}

const interpreterOf = (lp: LogicalProcessor) => lp.cpu as unknown as Interpreter;

/** The architectural record of the vCPU on `lp`; `tsc` is its IA32_TSC now. */
export function softArch(lp: LogicalProcessor, tsc: bigint | undefined): ArchVcpuState {
  const cpu = interpreterOf(lp);
  const intr = lp.vmread(F.GUEST_INTERRUPTIBILITY_INFO);
  const act = lp.vmread(F.GUEST_ACTIVITY_STATE);
  const info = lp.vmread(F.VM_ENTRY_INTR_INFO_FIELD);
  const dr = cpu.dr;
  const state: ArchVcpuState = {
    fx: b64(fxImage(cpu, 16)),
    stiShadow: (intr & 1n) !== 0n,
    movSsShadow: (intr & 2n) !== 0n,
    nmiMasked: (intr & 8n) !== 0n,
    nmiPending: lp.nmiPending,
    activity: act === 1n ? "hlt" : act === 3n ? "wait-sipi" : "active",
    dr: {
      db: [0, 1, 2, 3].map((i) => BigInt.asUintN(64, BigInt(dr[i]!))),
      dr6: BigInt(dr[6]!),
      dr7: lp.vmread(F.GUEST_DR7),
    },
  };
  if (tsc !== undefined) state.tsc = tsc;
  if (info & INTR_VALID) {
    state.injected = {
      type: Number((info >> 8n) & 7n),
      vector: Number(info & 0xffn),
      instructionLength: Number(lp.vmread(F.VM_ENTRY_INSTRUCTION_LEN)),
      ...(info & INTR_HAS_ERROR ? { errorCode: Number(lp.vmread(F.VM_ENTRY_EXCEPTION_ERROR_CODE)) } : {}),
    };
  }
  return state;
}

/** Puts an architectural record (one saved on another backend) on the vCPU on `lp`. */
export function applySoftArch(lp: LogicalProcessor, s: ArchVcpuState): void {
  const cpu = interpreterOf(lp);
  const fx = fxBytesOf(s.fx);
  loadFxImage(cpu, fx, 16);
  const intr = (s.stiShadow ? 1n : 0n) | (s.movSsShadow ? 2n : 0n) | (s.nmiMasked ? 8n : 0n);
  lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, intr);
  lp.vmwrite(F.GUEST_ACTIVITY_STATE, s.activity === "hlt" ? 1n : s.activity === "wait-sipi" ? 3n : 0n);
  lp.nmiPending = s.nmiPending;
  const dr = cpu.dr;
  s.dr.db.forEach((v, i) => {
    dr[i] = Number(v);
  });
  dr[6] = Number(s.dr.dr6);
  dr[7] = Number(s.dr.dr7);
  lp.vmwrite(F.GUEST_DR7, s.dr.dr7);
  const inj = s.injected;
  if (inj) {
    const info =
      INTR_VALID |
      (BigInt(inj.type & 7) << 8n) |
      BigInt(inj.vector & 0xff) |
      (inj.errorCode !== undefined ? INTR_HAS_ERROR : 0n);
    lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, info);
    lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, BigInt(inj.errorCode ?? 0));
    lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, BigInt(inj.instructionLength));
  } else {
    lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0n);
  }
}

/** The vCPU on `lp` as both records; `tsc` is its IA32_TSC now. */
export function captureSoftVcpu(lp: LogicalProcessor, tsc: bigint | undefined): SoftSavedState {
  const vmcs: Record<string, bigint> = {};
  for (const name of [...GUEST_FIELDS, ...SOFT_CONTROL_FIELDS]) vmcs[name] = lp.vmread(F[name]);
  const x = lp.cpu.getExtendedState();
  const soft: SoftVcpuState = {
    vmcs,
    fpu: b64(x.fpu),
    fpuTop: x.fpuTop,
    fpuTag: x.fpuTag,
    fpuCw: x.fpuCw,
    fpuSw: x.fpuSw,
    xmm: b64(x.xmm),
    mxcsr: x.mxcsr,
    pkru: x.pkru ?? 0,
    dr: [...interpreterOf(lp).dr],
    pending: { nmi: lp.nmiPending, init: lp.initPending, sipiVector: lp.sipiVector },
  };
  return { soft, arch: softArch(lp, tsc) };
}

/**
 * Puts a saved state on the vCPU on `lp`: the soft record when there is one (exact), else the
 * architectural one. Returns what could not be carried over, or what the guest will see differently.
 * RangeError for a record whose x87/SSE images have the wrong size (nothing of the record is
 * written before they are checked).
 */
export function applySoftVcpu(
  lp: LogicalProcessor,
  s: { soft?: SoftVcpuState | undefined; arch?: ArchVcpuState | undefined },
): string[] {
  const notes: string[] = [];
  const soft = s.soft;
  if (!soft) {
    if (s.arch) {
      applySoftArch(lp, s.arch);
      notes.push("the TSC follows this machine's clock (IA32_TSC is not carried over to soft)");
    } else {
      notes.push("saved without FPU/SSE and event state (they are reset)");
    }
    return notes;
  }
  const fpu = bytesOf(soft.fpu, SOFT_FPU_BYTES, "x87 state");
  const xmm = bytesOf(soft.xmm, lp.cpu.getExtendedState().xmm.byteLength, "XMM state");
  for (const name of Object.keys(soft.vmcs)) {
    if (!isSavedVmcsField(name)) throw new RangeError(`VMCS field ${name} unknown`);
  }
  for (const [name, value] of Object.entries(soft.vmcs)) lp.vmwrite(F[name as keyof typeof F], value);
  lp.cpu.setExtendedState({
    fpu: new Float64Array(fpu.buffer),
    fpuTop: soft.fpuTop,
    fpuTag: soft.fpuTag,
    fpuCw: soft.fpuCw,
    fpuSw: soft.fpuSw,
    xmm: new Int32Array(xmm.buffer),
    mxcsr: soft.mxcsr,
    pkru: soft.pkru ?? 0,
  });
  const dr = interpreterOf(lp).dr;
  if (soft.dr.length === dr.length) dr.set(soft.dr);
  lp.nmiPending = soft.pending?.nmi ?? false;
  lp.initPending = soft.pending?.init ?? false;
  lp.sipiVector = soft.pending?.sipiVector ?? -1;
  if ((soft.vmcs.GUEST_ACTIVITY_STATE ?? 0n) === 1n) {
    notes.push(
      "restored halted; it wakes at the next interrupt, but until then the loop sees host-timer exits, not HLT",
    );
  }
  return notes;
}
