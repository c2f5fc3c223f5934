// The debugger on the software VT-x, done as a VT-x hypervisor does it: INT3s reach the host
// through the exception bitmap (#BP, vector 3), single steps through the monitor trap flag, and
// watchpoints through EPT: a watched page loses write (or read) permission, the guest's accesses
// to it come back as EPT violations carrying the exact address and width; the host opens the page
// for that one instruction (MTF), closes it again, and stops there when the access touched a
// watched range. Exact on every access width; accesses elsewhere on the page cost two exits each.
// Several vCPUs: each has its own VMCS (exception bitmap, MTF) and all share the EPT. While one
// vCPU steps (or has a watched page open for one instruction) the others are held (not runnable
// to the loop's turns), so a step is one instruction of that vCPU and nothing else.

import type { MmioExit, UnknownExit } from "../types/exits.js";
import { ExitReason, F, Proc } from "../vmx/index.js";
import type { SoftVcpu } from "./backends/soft/vcpu.js";
import type { DebugDriver, DebugHost, DebugStop, HardwarePoint } from "./debug.js";
import type { ExitContext, ExitHandler, StopRun } from "./loop.js";

const PAGE = 4096;
const EPT_R = 1;
const EPT_X = 4;
const EPT_LARGE = 0x80;
const TWO32 = 2 ** 32;
const BP_VECTOR = 3;
/** VM-entry interruption information: valid, software exception (type 6), vector 3 */
const INJECT_BP = (0x80000000 | (6 << 8) | BP_VECTOR) >>> 0;

const debugStop = (message: string): StopRun => ({ reason: "debug", message });

export class SoftDebugDriver implements DebugDriver {
  readonly #host: DebugHost;
  readonly #report: (s: DebugStop) => void;
  readonly #all: readonly SoftVcpu[];
  readonly vcpus: number;
  readonly #prevUnknown: ExitHandler<UnknownExit> | undefined;
  readonly #prevMmio: ExitHandler<MmioExit> | undefined;
  readonly #offExit: () => void;
  #stepping = false;
  /** the vCPU that steps */
  #stepVcpu = 0;
  #stepFrom = 0n;
  /** a watched range was accessed: the stop comes after its instruction (MTF) */
  #pendingWatch: DebugStop | undefined;
  /** the vCPU that has a watched page open for one instruction, closed again at its next MTF exit */
  #overWatch: number | undefined;
  /** watched guest-physical pages and the EPT permissions they keep */
  #pages = new Map<number, number>();

  constructor(host: DebugHost, report: (s: DebugStop) => void) {
    this.#host = host;
    this.#report = report;
    const vm = host.vm;
    this.vcpus = vm.vcpuCount;
    this.#all = Array.from({ length: this.vcpus }, (_, i) => vm.vcpu(i).backend as SoftVcpu);
    this.#prevUnknown = vm.setExitHandler("unknown", (exit, ctx) => this.#unknown(exit, ctx));
    this.#prevMmio = vm.setExitHandler("mmio", (exit, ctx) => this.#mmio(exit, ctx));
    this.#offExit = vm.on("exit", (exit, info) => {
      // a step over an instruction the host completed (OUT, HLT, MMIO): no MTF exit follows it
      const v = this.#stepVcpu;
      if (this.#stepping && info.index === v && exit.kind !== "unknown" && exit.kind !== "intr") {
        if (this.#overWatch === undefined && host.linearRip(v) !== this.#stepFrom) {
          this.#report({ kind: "step", vcpu: v });
          vm.stop();
        }
      }
    });
  }

  // the VMCS of a vCPU is read through its current logical processor (migrate() may replace it)
  #lp(vcpu: number) {
    return this.#all[vcpu]!.lp;
  }

  #setProc(vcpu: number, bit: number, on: boolean): void {
    const lp = this.#lp(vcpu);
    const proc = lp.vmreadNumber(F.CPU_BASED_VM_EXEC_CONTROL);
    lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, (on ? proc | bit : proc & ~bit) >>> 0);
  }

  trapBreakpoints(on: boolean): void {
    const bit = 1 << BP_VECTOR;
    for (let i = 0; i < this.vcpus; i++) {
      const lp = this.#lp(i);
      const bitmap = lp.vmreadNumber(F.EXCEPTION_BITMAP);
      lp.vmwrite(F.EXCEPTION_BITMAP, (on ? bitmap | bit : bitmap & ~bit) >>> 0);
    }
  }

  setSingleStep(on: boolean, vcpu = 0): void {
    this.#stepping = on;
    if (on) {
      this.#stepVcpu = vcpu;
      this.#stepFrom = this.#host.linearRip(vcpu);
    }
    this.#applyMtf();
  }

  /** MTF on the vCPU that steps or has a watched page open; the other vCPUs held meanwhile */
  #applyMtf(): void {
    const only = this.#overWatch ?? (this.#stepping ? this.#stepVcpu : undefined);
    for (let i = 0; i < this.vcpus; i++) this.#setProc(i, Proc.MONITOR_TRAP_FLAG, i === only);
    if (this.vcpus === 1) return;
    for (let i = 0; i < this.vcpus; i++) this.#all[i]!.held = only !== undefined && i !== only;
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
    // cached translations carry the old permissions (on every vCPU: the EPT is theirs together)
    this.#inveptAll();
  }

  #inveptAll(): void {
    for (let i = 0; i < this.vcpus; i++) this.#lp(i).invept(2);
  }

  codeWritten(gpa: number, length: number): void {
    for (let i = 0; i < this.vcpus; i++) {
      const cpu = this.#lp(i).cpu as { invalidateCode?(gpa: number, length: number): void };
      cpu.invalidateCode?.(gpa, length);
    }
  }

  close(): void {
    const vm = this.#host.vm;
    if (this.#prevUnknown) vm.setExitHandler("unknown", this.#prevUnknown);
    if (this.#prevMmio) vm.setExitHandler("mmio", this.#prevMmio);
    this.#offExit();
    this.#pendingWatch = undefined;
    this.#overWatch = undefined;
    this.setSingleStep(false);
    this.trapBreakpoints(false);
    this.setHardware([]);
  }

  #unknown(exit: UnknownExit, ctx: ExitContext): ReturnType<ExitHandler> {
    const vcpu = ctx.vcpuIndex;
    const lp = this.#lp(vcpu);
    if (exit.code === ExitReason.MonitorTrapFlag) {
      if (this.#overWatch === vcpu) {
        // the instruction that touched a watched page retired: the page closes again; the MMIO
        // completion its first attempt queued was never used (the retry ran on RAM)
        this.#overWatch = undefined;
        lp.mmioCompletions.splice(0);
        this.setHardware(this.#host.hardware());
        this.#applyMtf();
      }
      const watch = this.#pendingWatch;
      this.#pendingWatch = undefined;
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
    if (
      exit.code === ExitReason.ExceptionNmi &&
      (lp.vmreadNumber(F.VM_EXIT_INTR_INFO) & 0xff) === BP_VECTOR
    ) {
      const rip = this.#host.linearRip(vcpu);
      if (this.#host.isSoftwareBreakpoint(rip)) {
        this.#report({ kind: "breakpoint", address: rip, hardware: this.#host.isHardwareInt3(rip), vcpu });
        return debugStop(`breakpoint at 0x${rip.toString(16)}`);
      }
      // the guest's own INT3: delivered to it as if we were not there
      lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, INJECT_BP);
      lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, Math.max(1, lp.vmreadNumber(F.VM_EXIT_INSTRUCTION_LEN)));
      return undefined;
    }
    return this.#prevUnknown?.(exit, ctx);
  }

  #mmio(exit: MmioExit, ctx: ExitContext): ReturnType<ExitHandler> {
    const gpa = exit.address;
    const page = gpa - (gpa % PAGE);
    if (!this.#pages.has(page)) return this.#prevMmio?.(exit, ctx);
    // an access to a watched RAM page: note whether it touches a watched range, then let the
    // instruction run again with the page open (all its accesses, read-modify-write included, on
    // RAM) and close it at the MTF exit that follows
    for (const p of this.#host.hardware()) {
      if (this.#pendingWatch) break;
      if (p.kind === "exec" || gpa >= p.gpa + p.length || gpa + exit.length <= p.gpa) continue;
      if (p.kind === "write" && !exit.write) continue;
      if (p.kind === "read" && exit.write) continue;
      this.#pendingWatch = { kind: "watch", address: p.linear, watch: p.kind };
    }
    this.#setPermissions(page, 7);
    this.#inveptAll();
    this.#overWatch = ctx.vcpuIndex;
    this.#applyMtf();
    return undefined;
  }

  /** Sets the EPT permissions of one 4-KiB page, splitting a 2-MiB mapping into a page table first. */
  #setPermissions(gpa: number, perms: number): void {
    const shared = this.#all[0]!.shared;
    const mem = shared.memory;
    const read = (at: number) => mem.readU32(at) + mem.readU32(at + 4) * TWO32;
    const write = (at: number, v: number) => {
      mem.writeU32(at, v % TWO32);
      mem.writeU32(at + 4, Math.floor(v / TWO32));
    };
    const addr = (entry: number) => entry - (entry % PAGE) - Math.floor(entry / 2 ** 52) * 2 ** 52;
    let table = Number(shared.ept.eptp & 0xffffffffff000n);
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
