// The debugger on KVM, through KVM_SET_GUEST_DEBUG as QEMU's gdbstub uses it: USE_SW_BP turns
// the guest's #BP into KVM_EXIT_DEBUG (exception 3) so our INT3s reach the host, SINGLESTEP traps
// after each instruction (exception 1, DR6.BS), and USE_HW_BP loads DR0-DR3/DR7 for hardware
// breakpoints and write or access watchpoints (x86 has no read-only data breakpoints; lengths 1,
// 2, 4, 8, aligned). #BP and #DB the guest raises itself are injected back into it.
// Untested here without /dev/kvm: written against the KVM API (Documentation/virt/kvm/api.rst).

import {
  KVM_GUESTDBG_ENABLE,
  KVM_GUESTDBG_SINGLESTEP,
  KVM_GUESTDBG_USE_HW_BP,
  KVM_GUESTDBG_USE_SW_BP,
} from "../kvm/constants.js";
import { KVM_SET_GUEST_DEBUG } from "../kvm/ioctls.js";
import { LAYOUTS } from "../kvm/layouts.js";
import { ioctl } from "../kvm/syscall.js";
import type { KvmVcpu } from "../kvm/vcpu.js";
import type { DebugExit } from "../types/exits.js";
import type { KvmVcpuBackend } from "./backends/kvm.js";
import type { DebugDriver, DebugHost, DebugStop, HardwarePoint } from "./debug.js";
import type { ExitContext, ExitHandler } from "./loop.js";

const DR6_BS = 1n << 14n;
const DR7_RW = { exec: 0n, write: 1n, access: 3n, read: 3n } as const;
const DR7_LEN: Record<number, bigint> = { 1: 0n, 2: 1n, 4: 3n, 8: 2n };

/** DR7 for hardware points in slots 0-3: global enable, R/W and LEN per slot. */
export function dr7For(points: readonly Pick<HardwarePoint, "kind" | "length">[]): bigint {
  let dr7 = 0n;
  points.slice(0, 4).forEach((p, i) => {
    const slot = BigInt(i);
    const len = p.kind === "exec" ? 0n : (DR7_LEN[p.length] ?? 0n);
    dr7 |= (2n << (2n * slot)) | (DR7_RW[p.kind] << (16n + 4n * slot)) | (len << (18n + 4n * slot));
  });
  return dr7;
}

/** The kvm_guest_debug struct for KVM_SET_GUEST_DEBUG. */
export function guestDebugStruct(opts: {
  swBreakpoints: boolean;
  singleStep: boolean;
  points: readonly HardwarePoint[];
}): DataView {
  const f = LAYOUTS.kvm_guest_debug.fields;
  const dv = new DataView(new ArrayBuffer(LAYOUTS.kvm_guest_debug.size));
  let control = 0;
  if (opts.swBreakpoints) control |= KVM_GUESTDBG_USE_SW_BP;
  if (opts.singleStep) control |= KVM_GUESTDBG_SINGLESTEP;
  if (opts.points.length > 0) control |= KVM_GUESTDBG_USE_HW_BP;
  if (control) control |= KVM_GUESTDBG_ENABLE;
  dv.setUint32(f.control, control >>> 0, true);
  opts.points.slice(0, 4).forEach((p, i) => {
    dv.setBigUint64(f["arch.debugreg"] + 8 * i, BigInt.asUintN(64, p.linear), true);
  });
  dv.setBigUint64(f["arch.debugreg"] + 8 * 7, dr7For(opts.points), true);
  return dv;
}

export class KvmDebugDriver implements DebugDriver {
  readonly #host: DebugHost;
  readonly #report: (s: DebugStop) => void;
  readonly #vcpu: KvmVcpu;
  readonly #prevDebug: ExitHandler<DebugExit> | undefined;
  #sw = false;
  #step = false;
  #points: readonly HardwarePoint[] = [];

  constructor(host: DebugHost, report: (s: DebugStop) => void) {
    this.#host = host;
    this.#report = report;
    this.#vcpu = (host.vm.vcpu(0).backend as KvmVcpuBackend).kvmVcpu;
    this.#prevDebug = host.vm.setExitHandler("debug", (exit, ctx) => this.#debug(exit, ctx));
  }

  #apply(): void {
    const dv = guestDebugStruct({ swBreakpoints: this.#sw, singleStep: this.#step, points: this.#points });
    ioctl(this.#vcpu.binding, this.#vcpu.fd, KVM_SET_GUEST_DEBUG, dv);
  }

  trapBreakpoints(on: boolean): void {
    this.#sw = on;
    this.#apply();
  }
  setSingleStep(on: boolean): void {
    this.#step = on;
    this.#apply();
  }
  supports(point: Omit<HardwarePoint, "gpa">, active: readonly HardwarePoint[]): boolean {
    if (active.length >= 4 || point.kind === "read") return false;
    if (point.kind === "exec") return true;
    return DR7_LEN[point.length] !== undefined && point.linear % BigInt(point.length) === 0n;
  }
  setHardware(points: readonly HardwarePoint[]): void {
    this.#points = [...points];
    this.#apply();
  }
  codeWritten(): void {}
  close(): void {
    if (this.#prevDebug) this.#host.vm.setExitHandler("debug", this.#prevDebug);
    this.#sw = false;
    this.#step = false;
    this.#points = [];
    this.#apply();
  }

  #debug(exit: DebugExit, ctx: ExitContext): ReturnType<ExitHandler> {
    if (exit.exception === 3) {
      if (this.#host.isSoftwareBreakpoint(exit.pc)) {
        this.#report({ kind: "breakpoint", address: exit.pc, hardware: this.#host.isHardwareInt3(exit.pc) });
        return { reason: "debug", message: `breakpoint at 0x${exit.pc.toString(16)}` };
      }
      this.#inject(3);
      return undefined;
    }
    if (exit.exception === 1) {
      const slot = [0, 1, 2, 3].find((i) => (exit.dr6 >> BigInt(i)) & 1n);
      const p = slot === undefined ? undefined : this.#points[slot];
      if (p) {
        this.#report(
          p.kind === "exec"
            ? { kind: "breakpoint", address: p.linear, hardware: true }
            : { kind: "watch", address: p.linear, watch: p.kind },
        );
        return { reason: "debug", message: "hardware breakpoint" };
      }
      if (this.#step && exit.dr6 & DR6_BS) {
        this.#report({ kind: "step" });
        return { reason: "debug", message: "single step" };
      }
      this.#inject(1);
      return undefined;
    }
    return this.#prevDebug?.(exit, ctx);
  }

  /** a #BP or #DB of the guest's own goes back to it (KVM re-executes INT3 as a soft exception) */
  #inject(vector: number): void {
    const ev = this.#vcpu.getVcpuEvents();
    ev.exception = { injected: true, nr: vector, hasErrorCode: false, errorCode: 0 };
    this.#vcpu.setVcpuEvents(ev);
  }
}
