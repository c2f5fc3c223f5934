// The debugger on KVM, through KVM_SET_GUEST_DEBUG as QEMU's gdbstub uses it: USE_SW_BP turns
// the guest's #BP into KVM_EXIT_DEBUG (exception 3) so our INT3s reach the host, SINGLESTEP traps
// after each instruction (exception 1, DR6.BS), and USE_HW_BP loads DR0-DR3/DR7 for hardware
// breakpoints and write or access watchpoints (x86 has no read-only data breakpoints; lengths 1,
// 2, 4, 8, aligned). #BP and #DB the guest raises itself are injected back into it.
//
// Where the "hardware" is itself emulated, debug-register hits may never come: KVM under QEMU's
// TCG (emulated SVM) loads DR7 on VMRUN without arming QEMU's breakpoint hooks. A probe (a
// one-page VM whose store to a watched byte must end in KVM_EXIT_DEBUG) finds that out once per
// process; there, execution breakpoints and write watchpoints are checked after every single step
// instead (a write watchpoint then fires when the watched bytes change, the way gdb's own software
// watchpoints do), and read/access watchpoints are refused. Where INT3 does not reach the host
// either (the same emulator raises it as a software interrupt the #BP intercept never sees), the
// guest is stepped while breakpoints are set and stops before an INT3 of ours would execute; gdb
// steps over a breakpoint it resumes from with the breakpoint removed, so none executes.
//
// Several vCPUs (each in a thread of its own, kvm-threads.ts): every vCPU gets the same guest
// debug state (USE_SW_BP, so that an INT3 of ours exits whichever vCPU runs it; DR0-DR3/DR7), and
// a stop names the vCPU whose exit it was. A step of one vCPU holds the others out of the guest
// (holdVcpu) until it is done. KVM_SET_GUEST_DEBUG waits for a KVM_RUN in progress on that vCPU, so
// it is only issued while the vCPUs are parked: between runs, and on the vCPU whose exit is being
// handled. Where points would be checked by stepping (above), several vCPUs cannot be covered:
// a vCPU's single-step flag does not survive the INIT/SIPI that starts it (KVM sets TF only at the
// RIP the flag was set at), so an AP would run into our INT3 as its own #BP (a triple fault,
// seen in the nested-KVM lane). There, with more than one vCPU, breakpoints and watchpoints are
// refused with that reason (gdb then falls back to its own watchpoints, which step); threads,
// registers, memory, steps of one vCPU and Ctrl-C work as elsewhere.

import type { KvmBinding } from "../kvm/binding.js";
import {
  KVM_GUESTDBG_ENABLE,
  KVM_GUESTDBG_SINGLESTEP,
  KVM_GUESTDBG_USE_HW_BP,
  KVM_GUESTDBG_USE_SW_BP,
} from "../kvm/constants.js";
import { KVM_SET_GUEST_DEBUG } from "../kvm/ioctls.js";
import { Kvm } from "../kvm/kvm.js";
import { LAYOUTS } from "../kvm/layouts.js";
import { ioctl } from "../kvm/syscall.js";
import type { KvmVcpu } from "../kvm/vcpu.js";
import type { DebugExit } from "../types/exits.js";
import type { KvmVcpuBackend } from "./backends/kvm.js";
import type { DebugDriver, DebugHost, DebugStop, HardwarePoint } from "./debug.js";
import { holdVcpu } from "./kvm-threads.js";
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

export interface GuestDebugProbe {
  /** a data breakpoint in DR0 ends KVM_RUN with KVM_EXIT_DEBUG (#DB) */
  hardware: boolean;
  /** with KVM_GUESTDBG_USE_SW_BP, the guest's INT3 ends KVM_RUN with KVM_EXIT_DEBUG (#BP) */
  int3: boolean;
}

const probed = new Map<string, GuestDebugProbe>();

/**
 * What of KVM_SET_GUEST_DEBUG works on this host, found by running a scratch one-page real-mode
 * VM once per binding kind: under QEMU TCG's emulated SVM neither does (QEMU arms no breakpoint
 * hooks for the DR7 that VMRUN loads, and raises INT3 as a software interrupt that the #BP
 * intercept never sees). A failure of the probe itself counts as "does not work".
 */
export function probeGuestDebug(binding: KvmBinding): GuestDebugProbe {
  const known = probed.get(binding.kind);
  if (known) return known;
  const result: GuestDebugProbe = { hardware: false, int3: false };
  let kvm: Kvm | undefined;
  try {
    kvm = Kvm.open({ binding });
    const vm = kvm.createVm();
    vm.setTssAddress(0xfffbd000);
    vm.setIdentityMapAddress(0xfffbc000);
    const ram = vm.allocateMemory(0, 0x1000);
    ram.bytes.set([0xa2, 0x00, 0x08, 0xf4], 0x100); // mov [0x800], al; hlt
    ram.bytes.set([0xcc, 0xf4], 0x180); // int3; hlt
    ram.bytes.set([0xf4], 0x200); // the guest's own #BP handler: hlt
    ram.bytes.set([0x00, 0x02, 0x00, 0x00], 4 * 3); // IVT entry 3 -> 0000:0200
    const vcpu = vm.createVcpu(0);
    const s = vcpu.getSregs();
    vcpu.setSregs({ ...s, cs: { ...s.cs, base: 0n, selector: 0 } });
    const runAt = (rip: bigint, opts: Parameters<typeof guestDebugStruct>[0]) => {
      vcpu.setRegs({ ...vcpu.getRegs(), rip, rflags: 2n, rsp: 0xf00n });
      ioctl(binding, vcpu.fd, KVM_SET_GUEST_DEBUG, guestDebugStruct(opts));
      return vcpu.run();
    };
    const hw = runAt(0x100n, {
      swBreakpoints: false,
      singleStep: false,
      points: [{ linear: 0x800n, gpa: 0x800, length: 1, kind: "write" }],
    });
    result.hardware = hw.kind === "debug" && hw.exception === 1;
    const bp = runAt(0x180n, { swBreakpoints: true, singleStep: false, points: [] });
    result.int3 = bp.kind === "debug" && bp.exception === 3;
  } catch {
    // as probed so far
  } finally {
    kvm?.close();
  }
  probed.set(binding.kind, result);
  return result;
}

export class KvmDebugDriver implements DebugDriver {
  readonly #host: DebugHost;
  readonly #report: (s: DebugStop) => void;
  readonly #backends: readonly KvmVcpuBackend[];
  readonly #vcpus: readonly KvmVcpu[];
  readonly #prevDebug: ExitHandler<DebugExit> | undefined;
  #sw = false;
  #step = false;
  /** the vCPU that steps (the others are held meanwhile) */
  #stepVcpu = 0;
  #points: readonly HardwarePoint[] = [];
  /** false: the debug registers do not fire here, points are checked after single steps */
  readonly #hardwareFires: boolean;
  /** false: INT3 does not reach the host here, our breakpoints are checked after single steps */
  readonly #int3Traps: boolean;
  /** emulated write watchpoints: the watched bytes as last seen */
  #watched = new Map<HardwarePoint, Uint8Array>();
  /** every vCPU: each has the guest debug state and is a thread to gdb */
  readonly vcpus: number;
  readonly breakpointsRefused: string | undefined;

  constructor(host: DebugHost, report: (s: DebugStop) => void) {
    this.#host = host;
    this.#report = report;
    const vm = host.vm;
    this.vcpus = vm.vcpuCount;
    this.#backends = Array.from({ length: this.vcpus }, (_, i) => vm.vcpu(i).backend as KvmVcpuBackend);
    this.#vcpus = this.#backends.map((b) => b.kvmVcpu);
    const probe = probeGuestDebug(this.#vcpus[0]!.binding);
    this.#hardwareFires = probe.hardware;
    this.#int3Traps = probe.int3;
    this.breakpointsRefused =
      this.vcpus > 1 && !this.#int3Traps
        ? "breakpoints on a machine of several vCPUs need KVM to trap INT3, which this host's KVM does not (an emulated CPU): the debugger would have to single-step every vCPU, and a vCPU started by INIT/SIPI does not stay stepped; use one vCPU or the soft backend"
        : undefined;
    this.#prevDebug = vm.setExitHandler("debug", (exit, ctx) => this.#debug(exit, ctx));
  }

  /** whether breakpoints and watchpoints are checked by stepping rather than by DR0-DR3 and INT3 */
  get emulates(): { hardware: boolean; int3: boolean } {
    return { hardware: !this.#hardwareFires, int3: !this.#int3Traps };
  }

  /** points checked after every step (see the head of this file) */
  get #stepping(): boolean {
    return (!this.#hardwareFires && this.#points.length > 0) || (!this.#int3Traps && this.#sw);
  }

  /** the guest debug state of every vCPU (all parked: see the head of this file) */
  #apply(): void {
    for (let i = 0; i < this.vcpus; i++) {
      const dv = guestDebugStruct({
        swBreakpoints: this.#sw,
        singleStep: (this.#step && i === this.#stepVcpu) || this.#stepping,
        points: this.#hardwareFires ? this.#points : [],
      });
      const v = this.#vcpus[i]!;
      ioctl(v.binding, v.fd, KVM_SET_GUEST_DEBUG, dv);
    }
  }

  trapBreakpoints(on: boolean): void {
    this.#sw = on;
    this.#apply();
  }
  setSingleStep(on: boolean, vcpu = 0): void {
    this.#step = on;
    if (on) this.#stepVcpu = vcpu;
    // one vCPU steps, the others stay parked until it is done
    if (this.vcpus > 1) {
      for (let i = 0; i < this.vcpus; i++) holdVcpu(this.#backends[i]!, on && i !== vcpu);
    }
    this.#apply();
  }
  supports(point: Omit<HardwarePoint, "gpa">, active: readonly HardwarePoint[]): boolean {
    if (active.length >= 4 || point.kind === "read") return false;
    // emulated by stepping every vCPU, which several cannot have (see the head of this file)
    if (!this.#hardwareFires && this.vcpus > 1) return false;
    if (point.kind === "exec") return true;
    if (!this.#hardwareFires && point.kind !== "write") return false;
    return DR7_LEN[point.length] !== undefined && point.linear % BigInt(point.length) === 0n;
  }
  setHardware(points: readonly HardwarePoint[]): void {
    this.#points = [...points];
    const watched = new Map<HardwarePoint, Uint8Array>();
    for (const p of this.#points) {
      if (p.kind === "write")
        watched.set(p, this.#watched.get(p) ?? this.#host.vm.memory.read(p.gpa, p.length));
    }
    this.#watched = watched;
    this.#apply();
  }
  codeWritten(): void {}
  close(gone = false): void {
    if (this.#prevDebug) this.#host.vm.setExitHandler("debug", this.#prevDebug);
    this.#sw = false;
    this.#points = [];
    if (gone) return;
    this.setSingleStep(false);
  }

  #debug(exit: DebugExit, ctx: ExitContext): ReturnType<ExitHandler> {
    const vcpu = ctx.vcpuIndex;
    if (exit.exception === 3) {
      if (this.#host.isSoftwareBreakpoint(exit.pc)) {
        const hardware = this.#host.isHardwareInt3(exit.pc);
        this.#report({ kind: "breakpoint", address: exit.pc, hardware, vcpu });
        return { reason: "debug", message: `breakpoint at 0x${exit.pc.toString(16)}` };
      }
      this.#inject(vcpu, 3);
      return undefined;
    }
    if (exit.exception === 1) {
      if (this.#stepping) {
        const hit = this.#emulatedHit(exit.pc);
        if (hit) {
          this.#report({ ...hit, vcpu });
          return { reason: "debug", message: hit.kind === "watch" ? "watchpoint" : "breakpoint" };
        }
      }
      const slot = this.#hardwareFires ? [0, 1, 2, 3].find((i) => (exit.dr6 >> BigInt(i)) & 1n) : undefined;
      const p = slot === undefined ? undefined : this.#points[slot];
      if (p) {
        this.#report(
          p.kind === "exec"
            ? { kind: "breakpoint", address: p.linear, hardware: true, vcpu }
            : { kind: "watch", address: p.linear, watch: p.kind, vcpu },
        );
        return { reason: "debug", message: "hardware breakpoint" };
      }
      // DR6.BS marks the step; emulated CPUs (QEMU TCG under nested KVM) may leave it out
      if (this.#step && vcpu === this.#stepVcpu && (exit.dr6 & DR6_BS || slot === undefined)) {
        this.#report({ kind: "step", vcpu });
        return { reason: "debug", message: "single step" };
      }
      if (this.#stepping) return undefined; // a step of ours: on to the next instruction
      this.#inject(vcpu, 1);
      return undefined;
    }
    return this.#prevDebug?.(exit, ctx);
  }

  /** after a step: an execution point at the next instruction, or watched bytes that changed */
  #emulatedHit(pc: bigint): DebugStop | undefined {
    // stopped before the INT3 we placed there executes (the guest would take #BP itself)
    if (!this.#int3Traps && this.#host.isSoftwareBreakpoint(pc)) {
      return { kind: "breakpoint", address: pc, hardware: this.#host.isHardwareInt3(pc) };
    }
    if (this.#hardwareFires) return undefined;
    for (const p of this.#points) {
      if (p.kind === "exec" && p.linear === pc)
        return { kind: "breakpoint", address: p.linear, hardware: true };
    }
    for (const [p, before] of this.#watched) {
      const now = this.#host.vm.memory.read(p.gpa, p.length);
      if (!now.every((b, i) => b === before[i])) {
        this.#watched.set(p, now);
        return { kind: "watch", address: p.linear, watch: "write" };
      }
    }
    return undefined;
  }

  /** a #BP or #DB of the guest's own goes back to it (KVM re-executes INT3 as a soft exception) */
  #inject(vcpu: number, vector: number): void {
    const v = this.#vcpus[vcpu]!;
    const ev = v.getVcpuEvents();
    ev.exception = { injected: true, nr: vector, hasErrorCode: false, errorCode: 0 };
    v.setVcpuEvents(ev);
  }
}
