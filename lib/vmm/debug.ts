// Guest debugging for a Machine, the same on both backends: software breakpoints (INT3 patched
// into guest memory, the original bytes shown to readers), hardware breakpoints, watchpoints,
// single steps, and guest-linear memory access through the guest's page tables. What each backend
// does underneath lives in a DebugDriver: debug-soft.ts (the software VT-x: exception bitmap, the
// monitor trap flag, EPT permissions) and debug-kvm.ts (KVM_SET_GUEST_DEBUG, DR0-DR7).
// A stop shows up as a run that ended with reason "debug" (or "stopped" for a step completed by an
// exit the host emulated); takeStop() says what it was and which vCPU it was on. Addresses are
// linear as one vCPU sees them (its CR3): the `vcpu` arguments (default 0) say which, as gdb's
// selected thread does.

import { cpuMode } from "../inspect/segments.js";
import { VmmError } from "./errors.js";
import type { Machine } from "./machine.js";

export type WatchKind = "write" | "read" | "access";

export type DebugStop = (
  | { kind: "breakpoint"; address: bigint; hardware: boolean }
  | { kind: "step" }
  | { kind: "watch"; address: bigint; watch: WatchKind }
) & {
  /** the vCPU that hit it or stepped (absent: vCPU 0) */
  vcpu?: number;
};

/** A debug request the machine cannot do (unmapped address, no free debug register, ...). */
export class DebugError extends VmmError {
  override name = "DebugError";
}

export interface HardwarePoint {
  linear: bigint;
  /** guest-physical address of the first byte when the point was set */
  gpa: number;
  length: number;
  kind: "exec" | WatchKind;
}

/** What a backend does for the debugger. */
export interface DebugDriver {
  /** guest #BP exits to the host (our INT3s) */
  trapBreakpoints(on: boolean): void;
  /** the next entry of vCPU `vcpu` stops after one instruction (the others do not run meanwhile where the backend can hold them) */
  setSingleStep(on: boolean, vcpu?: number): void;
  /** vCPUs this backend debugs (breakpoints trapped, steps, registers): all of the machine's */
  readonly vcpus: number;
  /**
   * Why this backend cannot have software breakpoints on this machine (undefined: it can): checked
   * before an INT3 is placed
   */
  readonly breakpointsRefused?: string | undefined;
  /** whether the backend can watch/break on this; checked before a point is added */
  supports(point: Omit<HardwarePoint, "gpa">, active: readonly HardwarePoint[]): boolean;
  /** the complete set of hardware breakpoints and watchpoints from now on */
  setHardware(points: readonly HardwarePoint[]): void;
  /** the host wrote guest code bytes (decoded-instruction caches must forget them) */
  codeWritten(gpa: number, length: number): void;
  /** the machine's exit handlers back, and the vCPUs' debug state cleared (unless the machine is closed: `gone`) */
  close(gone?: boolean): void;
}

/** What a driver asks of the debugger when its exits arrive. */
export interface DebugHost {
  readonly vm: Machine;
  isSoftwareBreakpoint(linear: bigint): boolean;
  /** an INT3 that stands for a hardware breakpoint gdb asked for (backends without enough of their own) */
  isHardwareInt3(linear: bigint): boolean;
  /** the guest-linear address of the next instruction of a vCPU (default 0) */
  linearRip(vcpu?: number): bigint;
  hardware(): readonly HardwarePoint[];
}

interface SoftwareBreakpoint {
  gpa: number;
  original: number;
  /** Z0 and Z1 at one address (soft backend: both INT3) count separately */
  refs: number;
  hardware: boolean;
}

export class MachineDebug implements DebugHost {
  readonly vm: Machine;
  #driver!: DebugDriver;
  readonly #sw = new Map<bigint, SoftwareBreakpoint>();
  readonly #hw: HardwarePoint[] = [];
  #stop: DebugStop | undefined;

  private constructor(vm: Machine) {
    this.vm = vm;
  }

  /**
   * Attaches the debugger to `vm` (its exit handlers are wrapped until close()): every vCPU, on
   * soft (on the machine's thread or in threads of their own) and on KVM. Breakpoints, watchpoints
   * and steps are changed while the machine is stopped (between runs).
   */
  static async attach(vm: Machine): Promise<MachineDebug> {
    const d = new MachineDebug(vm);
    if (vm.backend.kind === "soft") {
      const { SoftDebugDriver } = await import("./debug-soft.js");
      d.#driver = new SoftDebugDriver(d, (s) => d.#report(s));
    } else {
      const { KvmDebugDriver } = await import("./debug-kvm.js");
      d.#driver = new KvmDebugDriver(d, (s) => d.#report(s));
    }
    return d;
  }

  #report(stop: DebugStop): void {
    // vCPUs in threads of their own may stop together before the run ends: a breakpoint stop
    // gives way to another kind (its vCPU is still before the INT3 and hits it again when resumed;
    // a watchpoint's access or a step has happened), else the first stays
    if (this.#stop === undefined || (this.#stop.kind === "breakpoint" && stop.kind !== "breakpoint")) {
      this.#stop = stop;
    }
  }

  /** What stopped the last run (a breakpoint, a step, a watchpoint), once; undefined if none. */
  takeStop(): DebugStop | undefined {
    const s = this.#stop;
    this.#stop = undefined;
    return s;
  }

  /** how many vCPUs (0 .. n-1) the debugger can stop, step and inspect on this backend */
  get vcpus(): number {
    return this.#driver.vcpus;
  }

  setSingleStep(on: boolean, vcpu = 0): void {
    this.#checkVcpu(vcpu);
    // a closed machine's vCPUs are gone (their threads too): nothing is left to step
    if (this.vm.closed) return;
    this.#driver.setSingleStep(on, vcpu);
  }

  linearRip(vcpu = 0): bigint {
    return this.vm.vcpu(vcpu).linearRip();
  }

  #checkVcpu(vcpu: number): void {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.#driver.vcpus) {
      throw new DebugError(
        `vCPU ${String(vcpu)} cannot be debugged here (debuggable: 0..${this.#driver.vcpus - 1})`,
      );
    }
  }

  hardware(): readonly HardwarePoint[] {
    return this.#hw;
  }

  isSoftwareBreakpoint(linear: bigint): boolean {
    return this.#sw.has(linear);
  }

  isHardwareInt3(linear: bigint): boolean {
    return this.#sw.get(linear)?.hardware ?? false;
  }

  /** guest-physical address of a linear one (the guest's page tables), or a DebugError */
  translate(linear: bigint, vcpu = 0): number {
    this.#checkVcpu(vcpu);
    const t = this.vm.vcpu(vcpu).translate(linear);
    if (t.physical === undefined || !this.vm.memory.find(Number(t.physical), 1)) {
      throw new DebugError(`linear address 0x${linear.toString(16)} is not mapped to guest RAM`);
    }
    return Number(t.physical);
  }

  /** Reads guest-linear memory up to the first unmapped byte; INT3s we placed read as the original bytes. */
  readLinear(linear: bigint, length: number, vcpu = 0): Uint8Array {
    const out = new Uint8Array(length);
    let n = 0;
    while (n < length) {
      let gpa: number;
      try {
        gpa = this.translate(linear + BigInt(n), vcpu);
      } catch {
        break;
      }
      const chunk = Math.min(length - n, 4096 - (gpa % 4096));
      const region = this.vm.memory.find(gpa, chunk);
      if (!region) break;
      out.set(this.vm.memory.view(gpa, chunk), n);
      n += chunk;
    }
    for (const [addr, bp] of this.#sw) {
      const off = addr - linear;
      if (off >= 0n && off < BigInt(n)) out[Number(off)] = bp.original;
    }
    return out.subarray(0, n);
  }

  /** Writes guest-linear memory (all or nothing); bytes under our INT3s update the saved originals. */
  writeLinear(linear: bigint, data: Uint8Array, vcpu = 0): void {
    const pieces: { gpa: number; from: number; n: number }[] = [];
    for (let n = 0; n < data.length; ) {
      const gpa = this.translate(linear + BigInt(n), vcpu);
      const chunk = Math.min(data.length - n, 4096 - (gpa % 4096));
      pieces.push({ gpa, from: n, n: chunk });
      n += chunk;
    }
    for (const p of pieces) {
      const bytes = data.slice(p.from, p.from + p.n);
      for (let i = 0; i < p.n; i++) {
        const bp = this.#sw.get(linear + BigInt(p.from + i));
        if (bp) {
          bp.original = bytes[i]!;
          bytes[i] = 0xcc;
        }
      }
      this.vm.memory.write(p.gpa, bytes);
      this.#driver.codeWritten(p.gpa, p.n);
    }
  }

  insertSoftwareBreakpoint(linear: bigint, hardware = false, vcpu = 0): void {
    const bp = this.#sw.get(linear);
    if (bp) {
      bp.refs++;
      return;
    }
    const refused = this.#driver.breakpointsRefused;
    if (refused !== undefined) throw new DebugError(refused);
    const gpa = this.translate(linear, vcpu);
    const original = this.vm.memory.readU8(gpa);
    this.vm.memory.writeU8(gpa, 0xcc);
    this.#driver.codeWritten(gpa, 1);
    this.#sw.set(linear, { gpa, original, refs: 1, hardware });
    if (this.#sw.size === 1) this.#driver.trapBreakpoints(true);
  }

  removeSoftwareBreakpoint(linear: bigint): boolean {
    const bp = this.#sw.get(linear);
    if (!bp) return false;
    if (--bp.refs > 0) return true;
    this.#sw.delete(linear);
    // the guest may have rewritten the byte meanwhile: only our own INT3 is put back
    if (this.vm.memory.readU8(bp.gpa) === 0xcc) this.vm.memory.writeU8(bp.gpa, bp.original);
    this.#driver.codeWritten(bp.gpa, 1);
    if (this.#sw.size === 0) this.#driver.trapBreakpoints(false);
    return true;
  }

  /** Adds a hardware breakpoint or watchpoint; false when this backend cannot have it. */
  insertHardware(linear: bigint, length: number, kind: HardwarePoint["kind"], vcpu = 0): boolean {
    if (!this.#driver.supports({ linear, length, kind }, this.#hw)) return false;
    this.#hw.push({ linear, length, kind, gpa: this.translate(linear, vcpu) });
    this.#driver.setHardware(this.#hw);
    return true;
  }

  removeHardware(linear: bigint, length: number, kind: HardwarePoint["kind"]): boolean {
    const i = this.#hw.findIndex((p) => p.linear === linear && p.length === length && p.kind === kind);
    if (i < 0) return false;
    this.#hw.splice(i, 1);
    this.#driver.setHardware(this.#hw);
    return true;
  }

  /** Removes every breakpoint and watchpoint and stops stepping (gdb detached); the debugger stays attached. */
  clear(): void {
    if (this.vm.closed) {
      this.#sw.clear();
      this.#hw.length = 0;
      this.#stop = undefined;
      return;
    }
    for (const addr of [...this.#sw.keys()]) {
      const bp = this.#sw.get(addr)!;
      bp.refs = 1;
      this.removeSoftwareBreakpoint(addr);
    }
    this.#hw.length = 0;
    this.#driver.setHardware(this.#hw);
    this.#driver.setSingleStep(false);
    this.#stop = undefined;
  }

  /** clear(), and the machine's own exit handlers back. */
  close(): void {
    this.clear();
    this.#driver.close(this.vm.closed);
  }

  /** the mode the vCPU is in (gdb's view of addresses depends on it) */
  mode(vcpu = 0): ReturnType<typeof cpuMode> {
    this.#checkVcpu(vcpu);
    const v = this.vm.vcpu(vcpu);
    return cpuMode(v.getSregs(), v.getRegs().rflags);
  }
}
