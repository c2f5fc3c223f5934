// What KVM does on a task-switch VM exit (vmx.c handle_task_switch + the emulator's task switch):
// the hypervisor performs the switch on the guest state itself and resumes, so the exit never
// reaches the loop. The guest state is read with VMREAD into an emulator (an interpreter of its
// own, over guest memory through this host's EPT), switched there by the interpreter's task-switch
// code, and written back with VMWRITE; a fault the switch raises is injected into the guest.

import { CpuFault, createBareHooks, Interpreter, type PageMapping } from "../../../cpu/index.js";
import { checkNewTss, switchTask, TaskSource, taskCommitCount } from "../../../cpu/task-switch.js";
import type { RawExit, VmExit } from "../../../types/exits.js";
import { GPR_NAMES, type SpecialRegs } from "../../../types/regs.js";
import { EPT_OK, EPT_READ, eptWalk, F, type HostMemory, type LogicalProcessor } from "../../../vmx/index.js";
import { arToSegment, readRegs, readSregs, segmentToAr, writeRegs, writeSregs } from "./regs.js";

type SoftRaw = Extract<RawExit, { backend: "soft" }>;

/** interruption types of IDT-vectoring information */
const INTR_EXTERNAL = 0;
const INTR_NMI = 2;
const INTR_HARD_EXCEPTION = 3;
const CONTRIBUTORY = new Set([0, 10, 11, 12, 13]);
const hasErrorCode = (v: number): boolean => v === 8 || (v >= 10 && v <= 14) || v === 17 || v === 21;

/** An interpreter used only to emulate: guest-physical memory through the host's EPT. */
export function createTaskEmulator(memory: HostMemory, eptp: bigint): Interpreter {
  const emu = new Interpreter();
  const hooks = createBareHooks(new Uint8Array(0));
  hooks.mapPage = (gpa: number): PageMapping | 1 => {
    const walk = eptWalk(memory, eptp, gpa - (gpa % 4096), EPT_READ);
    const loc = walk.status === EPT_OK ? memory.resolve(walk.hpa) : undefined;
    // anything but RAM is MMIO, where descriptor-table and TSS accesses fault
    return loc
      ? { bytes: loc.bytes, offset: loc.offset, readable: true, writable: true, executable: true }
      : 1;
  };
  emu.hooks = hooks;
  return emu;
}

/** segment registers in the interpreter's order (Seg: ES CS SS DS FS GS LDTR TR) */
const SEG_NAMES = ["es", "cs", "ss", "ds", "fs", "gs", "ldt", "tr"] as const;

/** the guest state (VMCS and general registers, as the register API reads it) into the emulator */
function load(lp: LogicalProcessor, emu: Interpreter): SpecialRegs {
  const regs = readRegs(lp);
  const sregs = readSregs(lp);
  emu.setControl("efer", sregs.efer);
  emu.setControl("cr4", sregs.cr4);
  emu.setControl("cr3", sregs.cr3);
  emu.setControl("cr0", sregs.cr0);
  emu.setControl("dr7", lp.vmread(F.GUEST_DR7));
  SEG_NAMES.forEach((k, i) => {
    const seg = sregs[k];
    emu.setSegment(i, { selector: seg.selector, base: seg.base, limit: seg.limit, ar: segmentToAr(seg) });
  });
  emu.setGdtr(sregs.gdt);
  emu.setIdtr(sregs.idt);
  GPR_NAMES.forEach((name, i) => {
    emu.setGpr(i, regs[name]);
  });
  emu.setRflags(regs.rflags);
  emu.setRip(regs.rip);
  // the emulator's TLB and decode state must not outlive this exit
  emu.flushTlb();
  return sregs;
}

/** what a task switch changes (segments, CR0.TS, CR3, DR7, registers) back into the guest */
function store(lp: LogicalProcessor, emu: Interpreter, sregs: SpecialRegs): void {
  const next: SpecialRegs = { ...sregs, cr0: emu.getControl("cr0"), cr3: emu.getControl("cr3") };
  SEG_NAMES.forEach((k, i) => {
    const seg = emu.getSegment(i);
    next[k] = arToSegment(seg.selector, seg.base, seg.limit, seg.ar);
  });
  writeSregs(lp, next);
  const regs = readRegs(lp);
  GPR_NAMES.forEach((name, i) => {
    regs[name] = emu.getGpr(i);
  });
  writeRegs(lp, { ...regs, rip: emu.getRip(), rflags: emu.getRflags() });
  lp.vmwrite(F.GUEST_DR7, emu.getControl("dr7"));
}

/**
 * Emulates the task switch the last exit reported and prepares the next entry. Returns an exit
 * for the loop only when the switch cannot go on (a triple fault, or TSS state outside RAM).
 */
export function emulateTaskSwitch(lp: LogicalProcessor, emu: Interpreter, raw: SoftRaw): VmExit | undefined {
  const q = Number(raw.qualification & 0xffffffffn);
  const selector = q & 0xffff;
  const source = (q >>> 30) as TaskSource;
  const idt = Number(lp.vmread(F.IDT_VECTORING_INFO_FIELD));
  const idtValid = (idt & 0x80000000) !== 0;
  const idtType = (idt >>> 8) & 7;
  let errorCode: number | undefined;
  let interruptibility = Number(lp.vmread(F.GUEST_INTERRUPTIBILITY_INFO)) & ~3;
  if (source === TaskSource.Gate && idtValid) {
    // the event is consumed by the switch: not re-injected
    lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0);
    if (idtType === INTR_HARD_EXCEPTION && idt & (1 << 11)) {
      errorCode = Number(lp.vmread(F.IDT_VECTORING_ERROR_CODE));
    }
    if (idtType === INTR_NMI) interruptibility |= 8;
  }
  const sregs = load(lp, emu);
  // instructions and software interrupts complete: the old task resumes after them
  const hardware =
    idtValid && (idtType === INTR_HARD_EXCEPTION || idtType === INTR_EXTERNAL || idtType === INTR_NMI);
  const rip = emu.rip;
  const next = hardware ? rip : rip + raw.instructionLength;
  emu.ip = next;
  const commits = taskCommitCount();
  let fault: CpuFault | undefined;
  try {
    switchTask(emu, checkNewTss(emu, selector, source, 0), source, next, errorCode);
  } catch (e) {
    if (!(e instanceof CpuFault)) {
      return {
        kind: "internal-error",
        suberror: 1,
        data: [raw.qualification, BigInt(selector)],
        message: "task switch: a TSS or descriptor table is not in guest RAM",
        raw,
      };
    }
    fault = e;
  }
  // a fault before the commit point leaves the guest where the exit found it
  if (taskCommitCount() !== commits) store(lp, emu, sregs);
  lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, interruptibility);
  if (fault === undefined) return undefined;
  let vector = fault.vector;
  let code = hasErrorCode(vector) ? (fault.code ?? 0) : undefined;
  if (source === TaskSource.Gate && idtValid && idtType === INTR_HARD_EXCEPTION) {
    const first = idt & 0xff;
    if (first === 8) return { kind: "shutdown", raw };
    const contributory = CONTRIBUTORY.has(vector);
    if ((first === 14 && (vector === 14 || contributory)) || (CONTRIBUTORY.has(first) && contributory)) {
      vector = 8;
      code = 0;
    }
  }
  if (vector === 14 && fault.cr2 !== undefined)
    lp.cpu.setControl("cr2", BigInt.asUintN(64, BigInt(fault.cr2)));
  const info = (0x80000000 | (3 << 8) | vector | (code !== undefined ? 1 << 11 : 0)) >>> 0;
  lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, info);
  if (code !== undefined) lp.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, code);
  return undefined;
}
