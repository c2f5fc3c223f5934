// The part of a vCPU's state that both backends hold but keep in their own shapes: x87/SSE (the
// FXSAVE image, which KVM's XSAVE area begins with and the interpreter can produce and load),
// pending and blocked events (VMX interruptibility and activity state on soft, kvm_vcpu_events
// and the MP state on KVM), the debug registers and the TSC. Every snapshot carries it, so a
// snapshot resumes on the other backend; a snapshot resumed on the backend that made it also
// carries that backend's own record (vcpu-state.ts), which wins there.

import type { Interpreter } from "../cpu/interpreter.js";
import { fxImage, loadFxImage } from "../cpu/x87.js";
import { KVM_MP_STATE, KVM_VCPUEVENT_VALID, KVM_X86_SHADOW_INT, type KvmVcpuEvents } from "../kvm/index.js";
import { F, type LogicalProcessor } from "../vmx/index.js";
import { SnapshotError } from "./errors.js";

/** bytes of the FXSAVE image kept: the legacy area's x87, MXCSR and XMM0-15 */
export const FX_BYTES = 160 + 16 * 16;

export type Activity = "active" | "hlt" | "wait-sipi";

/** An event on its way into the guest at the next entry (VMX entry interruption information). */
export interface InjectedEvent {
  /** VMX interruption type: 0 external interrupt, 2 NMI, 3 hardware exception, 4 software interrupt, 6 software exception */
  type: number;
  vector: number;
  errorCode?: number;
  instructionLength: number;
}

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

const b64 = (a: Uint8Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");

export function fxBytesOf(text: string): Uint8Array {
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== FX_BYTES)
    throw new SnapshotError("vcpus", `FXSAVE image is ${bytes.length} bytes, want ${FX_BYTES}`);
  return new Uint8Array(bytes);
}

export function checkArch(a: unknown, bad: (what: string) => SnapshotError): ArchVcpuState {
  const s = a as ArchVcpuState;
  if (!s || typeof s !== "object" || typeof s.fx !== "string") throw bad("architectural state missing");
  if (!["active", "hlt", "wait-sipi"].includes(s.activity)) throw bad(`activity state ${String(s.activity)}`);
  if (
    !s.dr ||
    !Array.isArray(s.dr.db) ||
    s.dr.db.length !== 4 ||
    s.dr.db.some((v) => typeof v !== "bigint")
  ) {
    throw bad("debug registers malformed");
  }
  const inj = s.injected;
  if (
    inj !== undefined &&
    (!Number.isInteger(inj?.type) || !Number.isInteger(inj.vector) || inj.vector > 255)
  ) {
    throw bad("injected event malformed");
  }
  fxBytesOf(s.fx);
  return s;
}

// ---- soft backend: the interpreter and the VMCS guest-state area

const INTR_VALID = 1n << 31n;
const INTR_HAS_ERROR = 1n << 11n;

export function softArch(lp: LogicalProcessor, tsc: bigint | undefined): ArchVcpuState {
  const cpu = lp.cpu as unknown as Interpreter;
  const fx = fxImage(cpu, 16);
  const intr = lp.vmread(F.GUEST_INTERRUPTIBILITY_INFO);
  const act = lp.vmread(F.GUEST_ACTIVITY_STATE);
  const info = lp.vmread(F.VM_ENTRY_INTR_INFO_FIELD);
  const dr = (cpu as unknown as { dr: Float64Array }).dr;
  const state: ArchVcpuState = {
    fx: b64(fx),
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

export function applySoftArch(lp: LogicalProcessor, s: ArchVcpuState): void {
  const cpu = lp.cpu as unknown as Interpreter;
  loadFxImage(cpu, fxBytesOf(s.fx), 16);
  const intr = (s.stiShadow ? 1n : 0n) | (s.movSsShadow ? 2n : 0n) | (s.nmiMasked ? 8n : 0n);
  lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, intr);
  lp.vmwrite(F.GUEST_ACTIVITY_STATE, s.activity === "hlt" ? 1n : s.activity === "wait-sipi" ? 3n : 0n);
  lp.nmiPending = s.nmiPending;
  const dr = (cpu as unknown as { dr: Float64Array }).dr;
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

// ---- KVM: kvm_vcpu_events, the MP state, the FXSAVE part of the XSAVE area

/** software interrupt / software exception / privileged software exception (INT n, INT3/INTO, ICEBP) */
const SOFT_TYPES = new Set([4, 5, 6]);

export function kvmArch(
  fx: Uint8Array,
  ev: KvmVcpuEvents,
  mpState: number,
  dr: { db: bigint[]; dr6: bigint; dr7: bigint },
  tsc: bigint | undefined,
): ArchVcpuState {
  const state: ArchVcpuState = {
    fx: b64(fx.subarray(0, FX_BYTES)),
    stiShadow: (ev.interrupt.shadow & KVM_X86_SHADOW_INT.STI) !== 0,
    movSsShadow: (ev.interrupt.shadow & KVM_X86_SHADOW_INT.MOV_SS) !== 0,
    nmiMasked: ev.nmi.masked,
    nmiPending: ev.nmi.pending,
    activity:
      mpState === KVM_MP_STATE.HALTED
        ? "hlt"
        : mpState === KVM_MP_STATE.UNINITIALIZED || mpState === KVM_MP_STATE.INIT_RECEIVED
          ? "wait-sipi"
          : "active",
    dr,
  };
  if (tsc !== undefined) state.tsc = tsc;
  // KVM re-executes a software interrupt's instruction rather than injecting it with a length
  if (ev.exception.injected) {
    state.injected = {
      type: 3,
      vector: ev.exception.nr,
      instructionLength: 0,
      ...(ev.exception.hasErrorCode ? { errorCode: ev.exception.errorCode } : {}),
    };
  } else if (ev.nmi.injected) {
    state.injected = { type: 2, vector: 2, instructionLength: 0 };
  } else if (ev.interrupt.injected && !ev.interrupt.soft) {
    state.injected = { type: 0, vector: ev.interrupt.nr, instructionLength: 0 };
  }
  return state;
}

/** The kvm_vcpu_events and MP state an ArchVcpuState stands for; `base` is the vCPU's current events. */
export function kvmEventsOf(
  s: ArchVcpuState,
  base: KvmVcpuEvents,
): { events: KvmVcpuEvents; mpState: number } {
  const inj = s.injected;
  const events: KvmVcpuEvents = {
    ...base,
    exception: { injected: false, nr: 0, hasErrorCode: false, errorCode: 0 },
    interrupt: {
      injected: false,
      nr: 0,
      soft: false,
      shadow: (s.stiShadow ? KVM_X86_SHADOW_INT.STI : 0) | (s.movSsShadow ? KVM_X86_SHADOW_INT.MOV_SS : 0),
    },
    nmi: { injected: false, pending: s.nmiPending, masked: s.nmiMasked },
    flags: KVM_VCPUEVENT_VALID.NMI_PENDING | KVM_VCPUEVENT_VALID.SHADOW,
  };
  if (inj && (inj.type === 3 || SOFT_TYPES.has(inj.type))) {
    if (inj.type === 3) {
      events.exception = {
        injected: true,
        nr: inj.vector,
        hasErrorCode: inj.errorCode !== undefined,
        errorCode: inj.errorCode ?? 0,
      };
    }
    // a software interrupt/exception not yet delivered: RIP still points at its instruction, which
    // KVM executes again
  } else if (inj?.type === 2) {
    events.nmi.injected = true;
  } else if (inj?.type === 0) {
    events.interrupt.injected = true;
    events.interrupt.nr = inj.vector;
  }
  const mpState =
    s.activity === "hlt"
      ? KVM_MP_STATE.HALTED
      : s.activity === "wait-sipi"
        ? KVM_MP_STATE.INIT_RECEIVED
        : KVM_MP_STATE.RUNNABLE;
  return { events, mpState };
}
