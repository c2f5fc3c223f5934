// The debugger on the software VT-x, done as a VT-x hypervisor does it: INT3s reach the host
// through the exception bitmap (#BP, vector 3), single steps through the monitor trap flag, and
// watchpoints through EPT: a watched page loses write (or read) permission, the guest's accesses
// to it come back as EPT violations carrying the exact address, width and direction; the host
// completes each on RAM as it would a device's MMIO, and when one touched a watched range in the
// watched direction stops after its instruction retires (MTF). Exact on every access width;
// accesses elsewhere on the page cost an exit each.
// Several vCPUs: each has its own VMCS (exception bitmap, MTF) and all share the EPT. While one
// vCPU steps (or vCPUs finish an instruction that hit a watchpoint) the others are held (not
// runnable to the loop's turns; in worker threads they wait before the guest's next instruction),
// so a step is one instruction of that vCPU and nothing else, and a watchpoint stops every vCPU
// where the access left them.
// Everything goes through the soft vCPU's debug methods (SoftVcpu.setDebugControls, held, ...),
// which a vCPU in a worker thread (SoftThreadVcpu) does the same way, as calls while it is parked:
// the exit handlers here run while the vCPU whose exit it is is parked, and the others are only
// held or flushed (words they look at) while they may be in the guest.

import type { MmioExit, UnknownExit } from "../types/exits.js";
import { ExitReason } from "../vmx/index.js";
import type { SoftVcpu } from "./backends/soft/vcpu.js";
import type { SoftBackend } from "./backends/soft.js";
import type { DebugDriver, DebugHost, DebugStop, HardwarePoint } from "./debug.js";
import type { ExitContext, ExitHandler, StopRun } from "./loop.js";

const PAGE = 4096;
const EPT_R = 1;
const EPT_X = 4;
const EPT_LARGE = 0x80;
const TWO32 = 2 ** 32;
const BP_VECTOR = 3;

const debugStop = (message: string): StopRun => ({ reason: "debug", message });

/** What the debugger asks of a soft vCPU: SoftVcpu's, and a SoftThreadVcpu's that does them in its thread. */
type DebugVcpu = Pick<
  SoftVcpu,
  | "setDebugControls"
  | "exitVector"
  | "reflectBreakpoint"
  | "flushEpt"
  | "eptPointer"
  | "attachHostChunks"
  | "invalidateCode"
  | "held"
>;

export class SoftDebugDriver implements DebugDriver {
  readonly #host: DebugHost;
  readonly #report: (s: DebugStop) => void;
  readonly #all: readonly DebugVcpu[];
  readonly #backend: SoftBackend;
  readonly vcpus: number;
  readonly #prevUnknown: ExitHandler<UnknownExit> | undefined;
  readonly #prevMmio: ExitHandler<MmioExit> | undefined;
  readonly #offExit: () => void;
  #stepping = false;
  /** the vCPU that steps */
  #stepVcpu = 0;
  #stepFrom = 0n;
  /** MTF as set in each vCPU's VMCS (changed only on parked vCPUs) */
  readonly #mtf: boolean[];
  /** a watched range was accessed: the stop comes after its instruction (MTF), per vCPU */
  readonly #pendingWatch = new Map<number, DebugStop>();
  /** the vCPUs finishing an instruction that hit a watchpoint (MTF on, the others held) */
  readonly #finishing = new Set<number>();
  /** watched guest-physical pages and the EPT permissions they keep */
  #pages = new Map<number, number>();
  /** the EPT got a new page table (a 2-MiB mapping split): vCPU threads map it before they run */
  #allocated = false;

  constructor(host: DebugHost, report: (s: DebugStop) => void) {
    this.#host = host;
    this.#report = report;
    const vm = host.vm;
    this.vcpus = vm.vcpuCount;
    this.#backend = vm.backend as SoftBackend;
    this.#all = Array.from({ length: this.vcpus }, (_, i) => vm.vcpu(i).backend as unknown as DebugVcpu);
    this.#mtf = new Array<boolean>(this.vcpus).fill(false);
    this.#prevUnknown = vm.setExitHandler("unknown", (exit, ctx) => this.#unknown(exit, ctx));
    this.#prevMmio = vm.setExitHandler("mmio", (exit, ctx) => this.#mmio(exit, ctx));
    this.#offExit = vm.on("exit", (exit, info) => {
      // a step over an instruction the host completed (OUT, HLT, MMIO): no MTF exit follows it
      const v = this.#stepVcpu;
      if (this.#stepping && info.index === v && exit.kind !== "unknown" && exit.kind !== "intr") {
        if (this.#finishing.size === 0 && host.linearRip(v) !== this.#stepFrom) {
          this.#report({ kind: "step", vcpu: v });
          vm.stop();
        }
      }
    });
  }

  trapBreakpoints(on: boolean): void {
    for (const v of this.#all) v.setDebugControls({ trapBreakpoints: on });
  }

  setSingleStep(on: boolean, vcpu = 0): void {
    this.#stepping = on;
    if (on) {
      this.#stepVcpu = vcpu;
      this.#stepFrom = this.#host.linearRip(vcpu);
    }
    this.#applyMtf();
  }

  /**
   * MTF on the vCPUs finishing an instruction that hit a watchpoint, else on the one that steps;
   * the other vCPUs held meanwhile
   */
  #applyMtf(): void {
    const only: ReadonlySet<number> | undefined =
      this.#finishing.size > 0 ? this.#finishing : this.#stepping ? new Set([this.#stepVcpu]) : undefined;
    if (this.vcpus > 1) {
      for (let i = 0; i < this.vcpus; i++) if (only && !only.has(i)) this.#all[i]!.held = true;
    }
    for (let i = 0; i < this.vcpus; i++) {
      const on = only?.has(i) ?? false;
      if (this.#mtf[i] === on) continue;
      this.#all[i]!.setDebugControls({ monitorTrap: on });
      this.#mtf[i] = on;
    }
    if (this.vcpus > 1) {
      for (let i = 0; i < this.vcpus; i++) if (!only || only.has(i)) this.#all[i]!.held = false;
    }
  }

  supports(point: Omit<HardwarePoint, "gpa">): boolean {
    // execution breakpoints are INT3s here (exact and unlimited); watchpoints of any width
    return point.kind !== "exec" && point.length > 0 && point.length <= 0x100000;
  }

  setHardware(points: readonly HardwarePoint[]): void {
    const want = new Map<number, number>();
    for (const p of points) {
      if (p.kind === "exec") continue;
      const keep = p.kind === "write" ? EPT_R | EPT_X : EPT_X;
      for (let page = p.gpa - (p.gpa % PAGE); page < p.gpa + p.length; page += PAGE) {
        want.set(page, (want.get(page) ?? 7) & keep);
      }
    }
    for (const page of this.#pages.keys()) if (!want.has(page)) this.#setPermissions(page, 7);
    for (const [page, perms] of want) this.#setPermissions(page, perms);
    this.#pages = want;
    this.#shareAllocations();
    // cached translations carry the old permissions (on every vCPU: the EPT is theirs together)
    this.#flushAll();
  }

  #flushAll(): void {
    for (const v of this.#all) v.flushEpt();
  }

  /** page tables allocated on this thread reach the vCPU threads' memory (set while every vCPU is parked) */
  #shareAllocations(): void {
    if (!this.#allocated) return;
    this.#allocated = false;
    const host = this.#backend.host;
    if (!this.#host.vm.hasVcpuThread) return;
    const chunks = host.sharedChunks();
    for (const v of this.#all) v.attachHostChunks(chunks);
  }

  codeWritten(gpa: number, length: number): void {
    for (const v of this.#all) v.invalidateCode(gpa, length);
  }

  close(gone = false): void {
    const vm = this.#host.vm;
    if (this.#prevUnknown) vm.setExitHandler("unknown", this.#prevUnknown);
    if (this.#prevMmio) vm.setExitHandler("mmio", this.#prevMmio);
    this.#offExit();
    this.#pendingWatch.clear();
    this.#finishing.clear();
    if (gone) return;
    this.setSingleStep(false);
    this.trapBreakpoints(false);
    this.setHardware([]);
  }

  #unknown(exit: UnknownExit, ctx: ExitContext): ReturnType<ExitHandler> {
    const vcpu = ctx.vcpuIndex;
    const v = this.#all[vcpu]!;
    if (exit.code === ExitReason.MonitorTrapFlag) {
      // the instruction that touched a watched range retired
      if (this.#finishing.delete(vcpu)) this.#applyMtf();
      const watch = this.#pendingWatch.get(vcpu);
      this.#pendingWatch.delete(vcpu);
      if (watch) {
        this.#report({ ...watch, vcpu });
        return debugStop("watchpoint");
      }
      if (this.#stepping && vcpu === this.#stepVcpu) {
        this.#report({ kind: "step", vcpu });
        return debugStop("single step");
      }
      return undefined;
    }
    if (exit.code === ExitReason.ExceptionNmi && v.exitVector() === BP_VECTOR) {
      const rip = this.#host.linearRip(vcpu);
      if (this.#host.isSoftwareBreakpoint(rip)) {
        this.#report({ kind: "breakpoint", address: rip, hardware: this.#host.isHardwareInt3(rip), vcpu });
        return debugStop(`breakpoint at 0x${rip.toString(16)}`);
      }
      // the guest's own INT3: delivered to it as if we were not there
      v.reflectBreakpoint();
      return undefined;
    }
    return this.#prevUnknown?.(exit, ctx);
  }

  #mmio(exit: MmioExit, ctx: ExitContext): ReturnType<ExitHandler> {
    const gpa = exit.address;
    const page = gpa - (gpa % PAGE);
    if (!this.#pages.has(page)) return this.#prevMmio?.(exit, ctx);
    // an access to a watched RAM page: the host completes it on RAM, as it completes a device's,
    // and the page stays closed, so each access of the instruction (a read-modify-write's read and
    // write, both sides of a MOVS) comes here on its own and is matched by its direction; a match
    // stops the run once the instruction has retired (MTF)
    const vcpu = ctx.vcpuIndex;
    const memory = this.#host.vm.memory;
    if (exit.write) memory.write(gpa, exit.data.subarray(0, exit.length));
    else exit.data.set(memory.read(gpa, exit.length));
    if (this.#pendingWatch.has(vcpu)) return undefined;
    for (const p of this.#host.hardware()) {
      if (p.kind === "exec" || gpa >= p.gpa + p.length || gpa + exit.length <= p.gpa) continue;
      if (p.kind === "write" ? !exit.write : p.kind === "read" && exit.write) continue;
      this.#pendingWatch.set(vcpu, { kind: "watch", address: p.linear, watch: p.kind });
      this.#finishing.add(vcpu);
      this.#applyMtf();
      break;
    }
    return undefined;
  }

  /** Sets the EPT permissions of one 4-KiB page, splitting a 2-MiB mapping into a page table first. */
  #setPermissions(gpa: number, perms: number): void {
    const mem = this.#backend.host;
    const read = (at: number) => mem.readU32(at) + mem.readU32(at + 4) * TWO32;
    const write = (at: number, v: number) => {
      mem.writeU32(at, v % TWO32);
      mem.writeU32(at + 4, Math.floor(v / TWO32));
    };
    const addr = (entry: number) => entry - (entry % PAGE) - Math.floor(entry / 2 ** 52) * 2 ** 52;
    let table = Number(this.#all[0]!.eptPointer() & 0xffffffffff000n);
    for (const shift of [39, 30]) {
      const e = read(table + (Math.floor(gpa / 2 ** shift) % 512) * 8);
      if (!(e & 7)) return;
      table = addr(e);
    }
    const pdeAt = table + (Math.floor(gpa / 2 ** 21) % 512) * 8;
    let pde = read(pdeAt);
    if (!(pde & 7)) return;
    if (pde & EPT_LARGE) {
      const pt = mem.allocatePage();
      this.#allocated = true;
      const base = addr(pde);
      const low = (pde % PAGE) & 0x7f;
      for (let i = 0; i < 512; i++) write(pt + i * 8, base + i * PAGE + low);
      pde = pt + 7;
      write(pdeAt, pde);
    }
    const pteAt = addr(pde) + (Math.floor(gpa / PAGE) % 512) * 8;
    const pte = read(pteAt);
    write(pteAt, pte - (pte & 7) + perms);
  }
}
