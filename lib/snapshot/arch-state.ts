// The part of a vCPU's state that both backends hold but keep in their own shapes: x87/SSE (the
// FXSAVE image, which KVM's XSAVE area begins with and the interpreter can produce and load),
// pending and blocked events (VMX interruptibility and activity state on soft, kvm_vcpu_events
// and the MP state on KVM), the debug registers and the TSC. Every snapshot carries it, so a
// snapshot resumes on the other backend; a snapshot resumed on the backend that made it also
// carries that backend's own record (vcpu-state.ts), which wins there.

import { KVM_MP_STATE, KVM_VCPUEVENT_VALID, KVM_X86_SHADOW_INT, type KvmVcpuEvents } from "../kvm/index.js";
import { type ArchVcpuState, FX_BYTES } from "../vmm/backends/soft/saved-state.js";
import { SnapshotError } from "./errors.js";

// the soft vCPU reads and writes this record itself (lib/vmm/backends/soft/saved-state.ts), in its
// thread when it runs in one
export type { Activity, ArchVcpuState, InjectedEvent } from "../vmm/backends/soft/saved-state.js";
export { FX_BYTES };

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
