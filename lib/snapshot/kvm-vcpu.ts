// A KVM vCPU's state as KVM itself keeps it, for resuming on KVM: the XSAVE area (KVM_GET_XSAVE,
// or KVM_GET_FPU where KVM lacks KVM_CAP_XSAVE), the XCRs, kvm_vcpu_events (pending and injected
// exception, interrupt, NMI, interrupt shadow, SIPI vector), the MP state, the local APIC page
// (in-kernel irqchip), the debug registers and IA32_TSC. Restored in QEMU's order (regs, XSAVE,
// XCRs, sregs, MSRs, MP state, LAPIC, events, debug registers), after the registers vcpu-state.ts
// puts back through the backend-neutral API.

import { decodeVcpuEvents, KVM_CAP, KVM_VCPUEVENT_VALID, type KvmFpu, type KvmVcpu } from "../kvm/index.js";
import type { VcpuBackend } from "../vmm/backend.js";
import type { KvmVcpuBackend } from "../vmm/backends/kvm.js";
import { type ArchVcpuState, FX_BYTES, fxBytesOf, kvmArch, kvmEventsOf } from "./arch-state.js";
import { SnapshotError } from "./errors.js";

export const MSR_TSC = 0x10;

export interface KvmVcpuState {
  /** kvm_xsave (4 KiB), base64; absent without KVM_CAP_XSAVE */
  xsave?: string;
  /** the FXSAVE-layout image of KVM_GET_FPU when there was no XSAVE, base64 */
  fx?: string;
  xcrs: [number, bigint][];
  /** kvm_vcpu_events as read, base64 */
  events: string;
  mpState: number;
  /** the 1 KiB kvm_lapic_state, base64 */
  lapic?: string;
  debugRegs: { db: bigint[]; dr6: bigint; dr7: bigint };
  tsc?: bigint;
}

const b64 = (a: Uint8Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));

/** the lib/kvm vCPU of a KVM backend's vCPU; undefined on the soft backend */
export function kvmVcpuOf(backend: VcpuBackend): KvmVcpu | undefined {
  const v = (backend as Partial<KvmVcpuBackend>).kvmVcpu;
  return v && typeof v.getRegs === "function" ? v : undefined;
}

function hasCap(vcpu: KvmVcpu, cap: number): boolean {
  try {
    return vcpu.vm.checkExtension(cap) > 0;
  } catch {
    return false;
  }
}

/** kvm_fpu as the FXSAVE legacy area (x87 + SSE part of it) */
function fxFromFpu(f: KvmFpu): Uint8Array {
  const img = new Uint8Array(FX_BYTES);
  const dv = new DataView(img.buffer);
  dv.setUint16(0, f.fcw, true);
  dv.setUint16(2, f.fsw, true);
  img[4] = f.ftwx;
  dv.setUint16(6, f.lastOpcode, true);
  dv.setBigUint64(8, f.lastIp, true);
  dv.setBigUint64(16, f.lastDp, true);
  dv.setUint32(24, f.mxcsr, true);
  dv.setUint32(28, 0xffff, true);
  for (let i = 0; i < 8; i++) img.set(f.fpr.subarray(16 * i, 16 * i + 10), 32 + 16 * i);
  img.set(f.xmm.subarray(0, 256), 160);
  return img;
}

function fpuFromFx(fx: Uint8Array): KvmFpu {
  const dv = new DataView(fx.buffer, fx.byteOffset, fx.byteLength);
  const fpr = new Uint8Array(128);
  for (let i = 0; i < 8; i++) fpr.set(fx.subarray(32 + 16 * i, 32 + 16 * i + 10), 16 * i);
  return {
    fpr,
    fcw: dv.getUint16(0, true),
    fsw: dv.getUint16(2, true),
    ftwx: fx[4]!,
    lastOpcode: dv.getUint16(6, true),
    lastIp: dv.getBigUint64(8, true),
    lastDp: dv.getBigUint64(16, true),
    xmm: fx.slice(160, 160 + 256),
    mxcsr: dv.getUint32(24, true),
  };
}

/** Completes an I/O or MMIO instruction the loop answered (KVM finishes it at the next KVM_RUN). */
export function settleKvm(vcpu: KvmVcpu): void {
  if (vcpu.hasPendingExit) {
    throw new SnapshotError(
      "vcpus",
      `vCPU ${vcpu.index} has coalesced writes not yet handed to their devices: run on until they are`,
    );
  }
  // KVM API: with immediate_exit set, KVM_RUN completes the pending operation and returns EINTR
  // before the guest runs
  vcpu.immediateExit = true;
  try {
    vcpu.run();
  } finally {
    vcpu.immediateExit = false;
  }
}

export function captureKvmVcpu(vcpu: KvmVcpu): { kvm: KvmVcpuState; arch: ArchVcpuState } {
  let xsave: Uint8Array | undefined;
  if (hasCap(vcpu, KVM_CAP.XSAVE)) {
    try {
      xsave = vcpu.getXsave();
    } catch {
      xsave = undefined; // a guest with state beyond 4 KiB (AMX) needs KVM_GET_XSAVE2: fall back
    }
  }
  const fx = xsave ? xsave.subarray(0, FX_BYTES) : fxFromFpu(vcpu.getFpu());
  const xcrs = hasCap(vcpu, KVM_CAP.XCRS) ? vcpu.getXcrs() : [];
  const events = vcpu.getVcpuEvents();
  const mpState = vcpu.getMpState();
  let lapic: Uint8Array | undefined;
  try {
    lapic = vcpu.getLapic();
  } catch {
    lapic = undefined; // no in-kernel irqchip
  }
  const d = vcpu.getDebugRegs();
  const debugRegs = { db: [...d.db], dr6: d.dr6, dr7: d.dr7 };
  const tsc = vcpu.getMsr(MSR_TSC);
  const kvm: KvmVcpuState = { xcrs, events: b64(events.raw), mpState, debugRegs };
  if (xsave) kvm.xsave = b64(xsave);
  else kvm.fx = b64(fx);
  if (lapic) kvm.lapic = b64(lapic);
  if (tsc !== undefined) kvm.tsc = tsc;
  return { kvm, arch: kvmArch(fx, events, mpState, debugRegs, tsc) };
}

export function checkKvmVcpu(k: unknown, bad: (what: string) => SnapshotError): KvmVcpuState {
  const s = k as KvmVcpuState;
  if (!s || typeof s !== "object") throw bad("KVM state malformed");
  if (typeof s.events !== "string" || !Number.isInteger(s.mpState))
    throw bad("KVM events or MP state missing");
  if (s.xsave === undefined && s.fx === undefined) throw bad("KVM FPU state missing");
  if (!Array.isArray(s.xcrs) || s.xcrs.some((x) => !Array.isArray(x) || typeof x[1] !== "bigint")) {
    throw bad("XCR list malformed");
  }
  if (!s.debugRegs || !Array.isArray(s.debugRegs.db) || s.debugRegs.db.length !== 4) {
    throw bad("debug registers malformed");
  }
  const sizes: [string | undefined, number, string][] = [
    [s.xsave, 4096, "XSAVE area"],
    [s.events, 64, "kvm_vcpu_events"],
    [s.lapic, 1024, "LAPIC page"],
  ];
  for (const [text, want, what] of sizes) {
    if (text !== undefined && Buffer.from(text, "base64").length !== want)
      throw bad(`${what} is not ${want} bytes`);
  }
  if (s.fx !== undefined) fxBytesOf(s.fx);
  return s;
}

/** Puts KVM's own record back on a KVM vCPU (after sregs, regs and MSRs). */
export function applyKvmVcpu(vcpu: KvmVcpu, s: KvmVcpuState, notes: string[]): void {
  if (s.xsave !== undefined && hasCap(vcpu, KVM_CAP.XSAVE)) vcpu.setXsave(unb64(s.xsave));
  else if (s.xsave !== undefined) vcpu.setFpu(fpuFromFx(unb64(s.xsave).subarray(0, FX_BYTES)));
  else vcpu.setFpu(fpuFromFx(fxBytesOf(s.fx!)));
  if (s.xcrs.length > 0) vcpu.setXcrs(s.xcrs);
  if (s.tsc !== undefined) setTsc(vcpu, s.tsc, notes);
  vcpu.setMpState(s.mpState);
  if (s.lapic !== undefined) {
    try {
      vcpu.setLapic(unb64(s.lapic));
    } catch {
      notes.push(`vCPU ${vcpu.index}: local APIC not restored (no in-kernel irqchip)`);
    }
  }
  // the saved struct as it was; GET leaves NMI_PENDING and SIPI_VECTOR out of the flags, and without
  // them SET would drop a latched NMI (QEMU adds them likewise)
  const events = decodeVcpuEvents(unb64(s.events));
  events.flags |= KVM_VCPUEVENT_VALID.NMI_PENDING | KVM_VCPUEVENT_VALID.SIPI_VECTOR;
  vcpu.setVcpuEvents(events);
  vcpu.setDebugRegs({
    db: s.debugRegs.db as [bigint, bigint, bigint, bigint],
    dr6: s.debugRegs.dr6,
    dr7: s.debugRegs.dr7,
  });
}

/**
 * IA32_TSC from user space. KVM treats a host write within a second (in TSC cycles) of what its
 * last write predicts as a vCPU "synchronizing" with the others and keeps the old offset, ignoring
 * the value (kvm_synchronize_tsc); a fresh VM's vCPU was written 0 at creation, so a saved TSC of
 * a few seconds would be dropped. A first write far from any plausible value leaves that window,
 * and the second one sets the saved value.
 */
function setTsc(vcpu: KvmVcpu, tsc: bigint, notes: string[]): void {
  try {
    vcpu.setMsr(MSR_TSC, BigInt.asUintN(64, tsc + (1n << 62n)));
    vcpu.setMsr(MSR_TSC, tsc);
  } catch {
    notes.push(`vCPU ${vcpu.index}: IA32_TSC not restored (KVM refused it)`);
  }
}

/**
 * The architectural record of another backend on a KVM vCPU: x87/SSE into the XSAVE area's legacy
 * part (XSTATE_BV then says x87 and SSE are in use), events, MP state and debug registers.
 */
export function applyArchOnKvm(vcpu: KvmVcpu, s: ArchVcpuState, notes: string[]): void {
  const fx = fxBytesOf(s.fx);
  if (hasCap(vcpu, KVM_CAP.XSAVE)) {
    const area = vcpu.getXsave();
    area.set(fx.subarray(0, 24), 0);
    area.set(fx.subarray(24, 28), 24); // MXCSR; MXCSR_MASK stays the host's
    area.set(fx.subarray(32, FX_BYTES), 32);
    area[512] = (area[512] ?? 0) | 0x3; // XSTATE_BV: x87, SSE
    vcpu.setXsave(area);
  } else {
    vcpu.setFpu(fpuFromFx(fx));
  }
  if (s.tsc !== undefined) setTsc(vcpu, s.tsc, notes);
  const { events, mpState } = kvmEventsOf(s, vcpu.getVcpuEvents());
  vcpu.setMpState(mpState);
  vcpu.setVcpuEvents(events);
  vcpu.setDebugRegs({
    db: s.dr.db as [bigint, bigint, bigint, bigint],
    dr6: s.dr.dr6,
    dr7: s.dr.dr7,
  });
}
