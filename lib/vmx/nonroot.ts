// VMX non-root operation: the NonRootHooks the interpreter consults, answered from the VM-execution
// controls of the current VMCS. A hook that decides "exit" records the exit (reason, qualification,
// instruction length/info, addresses, interruption info) for the processor to complete.

import { type GuestCpu, Seg } from "../cpu/guest-cpu.js";
import {
  Access,
  type CrAccess,
  EventType,
  EXIT,
  type InstructionContext,
  type IoInfo,
  MMIO,
  type NonRootHooks,
  type PageMapping,
  Window,
} from "../cpu/hooks.js";
import { type TaskEvent, TaskSource, type TaskSwitchHook } from "../cpu/task-switch.js";
import { ExitReason, Pin, Proc, Proc2 } from "./constants.js";
import { EPT_EXEC, EPT_MISCONFIG, EPT_OK, EPT_READ, EPT_WRITE, eptWalk } from "./ept.js";
import { F } from "./fields.js";
import { GuestLinearReader } from "./guest-linear.js";
import type { HostMemory } from "./host-memory.js";
import {
  CodeSize,
  type DecodedOperand,
  decodeOperand,
  displacementQualification,
  ioStringInfo,
  memoryInfo,
  operandInfo,
} from "./instruction-info.js";
import { completionLow, type MmioReplay } from "./mmio-replay.js";
import { type VmcsData, vmcsGet, vmcsGet32 } from "./vmcs.js";

export interface PendingExit {
  reason: number;
  /** a number when it is a non-negative integer below 2^53 (no BigInt on the frequent exits) */
  qualification: bigint | number;
  instructionLength: number;
  instructionInfo: number;
  guestLinear?: number;
  guestPhysical?: number;
  intrInfo?: number;
  intrError?: number;
  /** the event whose delivery this exit interrupted (IDT-vectoring information) */
  idtVectoring?: number;
  idtError?: number;
}

/** What the host needs to emulate an MMIO access (stands in for the instruction decoding real
 * hypervisors do after an EPT violation). */
export interface MmioAccess {
  gpa: number;
  size: number;
  write: boolean;
  /** value written (bits 31:0 and 63:32) */
  lo: number;
  hi: number;
}

export type { MmioCompletion } from "./mmio-replay.js";

/** State of the processor that non-root operation consults or updates. */
export interface NonRootHost {
  readonly memory: HostMemory;
  readonly cpu: GuestCpu;
  mmioAccess: MmioAccess | undefined;
  /** the MMIO accesses of the instruction in progress that the host completed */
  readonly mmioReplay: MmioReplay;
}

const EXCEPTION_TYPES = new Set<number>([
  EventType.HardwareException,
  EventType.PrivilegedSoftwareException,
  EventType.SoftwareException,
]);

const OTHER_REASONS = {
  monitor: ExitReason.Monitor,
  mwait: ExitReason.Mwait,
  pause: ExitReason.Pause,
  wbinvd: ExitReason.Wbinvd,
  invd: ExitReason.Invd,
  xsetbv: ExitReason.Xsetbv,
  rdrand: ExitReason.Rdrand,
  rdseed: ExitReason.Rdseed,
  getsec: ExitReason.Getsec,
} as const;

const VMX_REASONS = {
  vmcall: ExitReason.Vmcall,
  vmclear: ExitReason.Vmclear,
  vmlaunch: ExitReason.Vmlaunch,
  vmptrld: ExitReason.Vmptrld,
  vmptrst: ExitReason.Vmptrst,
  vmread: ExitReason.Vmread,
  vmresume: ExitReason.Vmresume,
  vmwrite: ExitReason.Vmwrite,
  vmxoff: ExitReason.Vmxoff,
  vmxon: ExitReason.Vmxon,
  invept: ExitReason.Invept,
  invvpid: ExitReason.Invvpid,
  vmfunc: ExitReason.Vmfunc,
} as const;

const DT_INFO = { sgdt: 0, sidt: 1, lgdt: 2, lidt: 3, sldt: 0, str: 1, lldt: 2, ltr: 3 } as const;

/** VMX instructions whose only operand is a 64-bit pointer in memory (table 28-13) */
const POINTER_OPERAND = new Set(["vmclear", "vmptrld", "vmptrst", "vmxon"]);
const TWO64 = 2 ** 64;
const NO_EXTRA: Partial<PendingExit> = Object.freeze({});
const ALWAYS = (): boolean => true;

export class NonRootOperation implements NonRootHooks, TaskSwitchHook {
  pending: PendingExit | null = null;
  readonly pin: number;
  readonly proc: number;
  readonly proc2: number;
  readonly #exceptionBitmap: number;
  readonly #pfMask: number;
  readonly #pfMatch: number;
  readonly #cr3Targets: bigint[];
  readonly #cr0Mask: bigint;
  readonly #cr4Mask: bigint;
  readonly #cr0Shadow: bigint;
  readonly #cr4Shadow: bigint;
  readonly #ioA: number;
  readonly #ioB: number;
  readonly #msrBitmap: number;
  readonly #eptp: bigint;
  /**
   * Instructions retired plus events delivered at VM entry, before any injection: MTF fires at the
   * first boundary after either moves (SDM Vol. 3C, "Monitor Trap Flag": after the first
   * instruction, after the delivery of a fault it raised, and before the first instruction when
   * the entry injected an event)
   */
  workAtEntry = 0;
  readonly #retired: () => number;
  /** PAUSE-loop exiting: the gap and window (in our TSC: retired instructions) */
  readonly #pleGap: number;
  readonly #pleWindow: number;
  /** TSC of the last PAUSE at CPL 0 in this entry, and of the first PAUSE of its loop (-1: none yet) */
  #pauseLast = -1;
  #pauseFirst = -1;

  constructor(
    readonly host: NonRootHost,
    v: VmcsData,
    retired: () => number,
  ) {
    this.pin = vmcsGet32(v, F.PIN_BASED_VM_EXEC_CONTROL);
    this.proc = vmcsGet32(v, F.CPU_BASED_VM_EXEC_CONTROL);
    this.proc2 = this.proc & Proc.SECONDARY ? vmcsGet32(v, F.SECONDARY_VM_EXEC_CONTROL) : 0;
    this.#exceptionBitmap = vmcsGet32(v, F.EXCEPTION_BITMAP);
    this.#pfMask = vmcsGet32(v, F.PAGE_FAULT_ERROR_CODE_MASK);
    this.#pfMatch = vmcsGet32(v, F.PAGE_FAULT_ERROR_CODE_MATCH);
    const n = vmcsGet32(v, F.CR3_TARGET_COUNT);
    this.#cr3Targets = [F.CR3_TARGET_VALUE0, F.CR3_TARGET_VALUE1, F.CR3_TARGET_VALUE2, F.CR3_TARGET_VALUE3]
      .slice(0, n)
      .map((f) => vmcsGet(v, f));
    this.#cr0Mask = vmcsGet(v, F.CR0_GUEST_HOST_MASK);
    this.#cr4Mask = vmcsGet(v, F.CR4_GUEST_HOST_MASK);
    this.#cr0Shadow = vmcsGet(v, F.CR0_READ_SHADOW);
    this.#cr4Shadow = vmcsGet(v, F.CR4_READ_SHADOW);
    this.#ioA = Number(vmcsGet(v, F.IO_BITMAP_A));
    this.#ioB = Number(vmcsGet(v, F.IO_BITMAP_B));
    this.#msrBitmap = Number(vmcsGet(v, F.MSR_BITMAP));
    this.#eptp = vmcsGet(v, F.EPT_POINTER);
    this.#retired = retired;
    this.#pleGap = vmcsGet32(v, F.PLE_GAP);
    this.#pleWindow = vmcsGet32(v, F.PLE_WINDOW);
  }

  #exit(
    reason: number,
    ctx?: InstructionContext,
    qualification: bigint | number = 0,
    extra: Partial<PendingExit> = NO_EXTRA,
  ): true {
    const instructionLength = ctx?.length ?? 0;
    this.pending =
      extra === NO_EXTRA
        ? { reason, qualification, instructionLength, instructionInfo: 0 }
        : { reason, qualification, instructionLength, instructionInfo: 0, ...extra };
    return true;
  }

  get eptEnabled(): boolean {
    return (this.proc2 & Proc2.EPT) !== 0;
  }

  mapPage(
    gpa: number,
    access: Access,
    linear: number,
    pagingStructure: boolean,
  ): PageMapping | typeof MMIO | typeof EXIT {
    const mem = this.host.memory;
    const page = gpa - (gpa % 4096);
    if (!this.eptEnabled) {
      // without EPT, guest-physical addresses are host-physical
      const loc = mem.resolve(page);
      return loc
        ? { bytes: loc.bytes, offset: loc.offset, readable: true, writable: true, executable: true }
        : MMIO;
    }
    const need = access === Access.Write ? EPT_WRITE : access === Access.Execute ? EPT_EXEC : EPT_READ;
    const walk = eptWalk(mem, this.#eptp, page, need);
    if (walk.status === EPT_OK) {
      const loc = mem.resolve(walk.hpa);
      if (loc) {
        return {
          bytes: loc.bytes,
          offset: loc.offset,
          readable: (walk.permissions & EPT_READ) !== 0,
          writable: (walk.permissions & EPT_WRITE) !== 0,
          executable: (walk.permissions & EPT_EXEC) !== 0,
        };
      }
      return MMIO;
    }
    if (walk.status === EPT_MISCONFIG) {
      return this.#exit(ExitReason.EptMisconfig, undefined, 0n, { guestPhysical: gpa }) && EXIT;
    }
    // data accesses go through mmio() so the exit carries the access itself; a paging-structure
    // read where the EPT maps nothing (no RAM there) reads the floating bus, as a PC's walk would;
    // fetches, and paging-structure reads the EPT denies, exit here
    if (access !== Access.Execute && (!pagingStructure || walk.permissions === 0)) return MMIO;
    this.#eptViolation(gpa, access, walk.permissions, linear, pagingStructure);
    return EXIT;
  }

  #eptViolation(
    gpa: number,
    access: Access,
    permissions: number,
    linear: number,
    pagingStructure: boolean,
  ): void {
    const accessBits = access === Access.Write ? 2 : access === Access.Execute ? 4 : 1;
    const linearValid = !Number.isNaN(linear);
    let q = accessBits | (permissions << 3);
    if (linearValid) q |= 1 << 7;
    if (linearValid && !pagingStructure) q |= 1 << 8;
    this.#exit(ExitReason.EptViolation, undefined, BigInt(q), {
      guestPhysical: gpa,
      ...(linearValid ? { guestLinear: linear } : {}),
    });
  }

  /** bits 63:32 of the last read of more than 4 bytes mmio() answered */
  mmioHigh = 0;
  /** mmio() only replays what the host completed after an exit (no device runs inside it) */
  readonly mmioRunsDevices = false;

  mmio(
    gpa: number,
    size: number,
    write: boolean,
    lo: number,
    hi: number,
    linear: number,
  ): number | typeof EXIT {
    const cpu = this.host.cpu;
    const replay = this.host.mmioReplay;
    const done = replay.replay(cpu.work(), cpu.getRip(), gpa, size, write);
    if (done !== undefined) {
      if (write) return 0;
      this.mmioHigh = replay.high;
      return completionLow(done);
    }
    if (!this.eptEnabled) {
      // no EPT: nothing decodes the access; unbacked host-physical reads float high
      this.mmioHigh = size >= 8 ? 0xffffffff : size > 4 ? 2 ** ((size - 4) * 8) - 1 : 0;
      return write ? 0 : size >= 4 ? 0xffffffff : (1 << (size * 8)) - 1;
    }
    const walk = eptWalk(this.host.memory, this.#eptp, gpa - (gpa % 4096), write ? EPT_WRITE : EPT_READ);
    this.host.mmioAccess = { gpa, size, write, lo: lo >>> 0, hi: hi >>> 0 };
    this.#eptViolation(gpa, write ? Access.Write : Access.Read, walk.permissions, linear, false);
    return EXIT;
  }

  io(info: IoInfo, ctx: InstructionContext): boolean {
    let exits: boolean;
    if (this.proc & Proc.USE_IO_BITMAPS) {
      exits = false;
      for (let p = info.port; p < info.port + info.size; p++) {
        if (p > 0xffff || this.#bit(p < 0x8000 ? this.#ioA : this.#ioB, p & 0x7fff)) {
          exits = true;
          break;
        }
      }
    } else {
      exits = (this.proc & Proc.UNCOND_IO) !== 0;
    }
    if (!exits) return false;
    const q =
      (info.size - 1) |
      (info.in ? 8 : 0) |
      (info.string ? 16 : 0) |
      (info.rep ? 32 : 0) |
      (info.immediate ? 64 : 0) |
      (info.port << 16);
    return this.#exit(ExitReason.Io, ctx, q >>> 0, info.string ? this.#stringOperand(info, ctx) : NO_EXTRA);
  }

  /** INS/OUTS: the segment and address size (IA32_VMX_BASIC[54]) and the operand's linear address */
  #stringOperand(info: IoInfo, ctx: InstructionContext): Partial<PendingExit> {
    const decoded = this.#decode(ctx, false);
    if (!decoded) return {};
    const { d, code } = decoded;
    const cpu = this.host.cpu;
    const seg = info.in ? Seg.ES : d.segment;
    const index = cpu.getGpr(info.in ? 7 : 6);
    const offset = d.addressSize === 2 ? index : index & (d.addressSize === 1 ? 0xffffffffn : 0xffffn);
    // 64-bit mode ignores the bases of ES, CS, SS and DS
    const base = code === CodeSize.Bits64 && seg < Seg.FS ? 0n : cpu.getSegment(seg).base;
    const linear = BigInt.asUintN(code === CodeSize.Bits64 ? 64 : 32, base + offset);
    return { instructionInfo: ioStringInfo(d, info.in), guestLinear: Number(linear) };
  }

  /** the exiting instruction, decoded from guest memory as the processor fetched it */
  #decode(ctx: InstructionContext, modrm: boolean): { d: DecodedOperand; code: CodeSize } | undefined {
    const cpu = this.host.cpu;
    const csAr = cpu.getSegment(Seg.CS).ar;
    const lma = (cpu.getControl("efer") & 0x400n) !== 0n;
    const v86 = (cpu.getRflags() & 0x20000n) !== 0n;
    const code =
      lma && csAr & 0x2000 ? CodeSize.Bits64 : csAr & 0x4000 && !v86 ? CodeSize.Bits32 : CodeSize.Bits16;
    const reader = new GuestLinearReader(this.host.memory, cpu, this.eptEnabled ? this.#eptp : undefined);
    const rip = ctx.linearRip < 0 ? ctx.linearRip + TWO64 : ctx.linearRip;
    // up to the longest instruction: the operand is decoded from the bytes, whatever length the
    // interpreter had consumed when it asked (fewer bytes only where the next page is unmapped)
    const bytes = reader.read(rip, 15) ?? reader.read(rip, Math.max(1, Math.min(15, ctx.length)));
    // without readable bytes (cannot happen for an instruction just fetched) the defaults of the
    // code size still give INS/OUTS a usable address size and segment
    const d = decodeOperand(bytes ?? new Uint8Array(0), code, modrm && bytes !== undefined);
    return d && (bytes || !modrm) ? { d, code } : undefined;
  }

  #bit(base: number, index: number): boolean {
    return ((this.host.memory.readU8(base + (index >>> 3)) >>> (index & 7)) & 1) === 1;
  }

  #msrExits(index: number, write: boolean): boolean {
    if (!(this.proc & Proc.USE_MSR_BITMAPS)) return true;
    let offset: number;
    if (index >= 0 && index <= 0x1fff) offset = 0;
    else if (index >= 0xc0000000 && index <= 0xc0001fff) offset = 0x400;
    else return true;
    return this.#bit(this.#msrBitmap + offset + (write ? 0x800 : 0), index & 0x1fff);
  }

  hlt(ctx: InstructionContext): boolean {
    return (this.proc & Proc.HLT) !== 0 && this.#exit(ExitReason.Hlt, ctx);
  }
  cpuid(_leaf: number, _subleaf: number, ctx: InstructionContext): boolean {
    return this.#exit(ExitReason.Cpuid, ctx);
  }
  rdmsr(index: number, ctx: InstructionContext): boolean {
    return this.#msrExits(index >>> 0, false) && this.#exit(ExitReason.Rdmsr, ctx);
  }
  wrmsr(index: number, _value: bigint, ctx: InstructionContext): boolean {
    return this.#msrExits(index >>> 0, true) && this.#exit(ExitReason.Wrmsr, ctx);
  }
  rdtsc(rdtscp: boolean, ctx: InstructionContext): boolean {
    if (!(this.proc & Proc.RDTSC)) return false;
    return this.#exit(rdtscp ? ExitReason.Rdtscp : ExitReason.Rdtsc, ctx);
  }
  rdpmc(ctx: InstructionContext): boolean {
    return (this.proc & Proc.RDPMC) !== 0 && this.#exit(ExitReason.Rdpmc, ctx);
  }
  invlpg(linear: number, ctx: InstructionContext): boolean {
    return (this.proc & Proc.INVLPG) !== 0 && this.#exit(ExitReason.Invlpg, ctx, BigInt(linear));
  }
  /** "enable RDTSCP" 0: RDTSCP and RDPID are #UD (SDM Vol. 3C 26.3) */
  rdtscpEnabled(): boolean {
    return (this.proc2 & Proc2.RDTSCP) !== 0;
  }
  /** "enable INVPCID" 0: INVPCID is #UD (SDM Vol. 3C 25.3) */
  invpcidEnabled(): boolean {
    return (this.proc2 & Proc2.INVPCID) !== 0;
  }
  /**
   * With "enable INVPCID" 1, INVLPG exiting makes INVPCID exit (26.1.2). Qualification: the
   * displacement; instruction information as INVEPT/INVVPID's (table 28-9), reg2 the type register.
   */
  invpcid(ctx: InstructionContext): boolean {
    if ((this.proc & Proc.INVLPG) === 0 || (this.proc2 & Proc2.INVPCID) === 0) return false;
    const decoded = this.#decode(ctx, true);
    if (!decoded) return this.#exit(ExitReason.Invpcid, ctx);
    const { d } = decoded;
    // the operand is memory: a register form is #UD before it gets here
    const info = memoryInfo(d) | ((d.reg ?? 0) << 28);
    return this.#exit(ExitReason.Invpcid, ctx, displacementQualification(d), { instructionInfo: info >>> 0 });
  }

  crAccess(a: CrAccess, ctx: InstructionContext): boolean {
    let exits = false;
    let q = 0;
    switch (a.type) {
      case "mov-to":
        q = a.cr | (a.gpr << 8);
        if (a.cr === 0) exits = ((a.value ^ this.#cr0Shadow) & this.#cr0Mask) !== 0n;
        else if (a.cr === 4) exits = ((a.value ^ this.#cr4Shadow) & this.#cr4Mask) !== 0n;
        else if (a.cr === 3) exits = (this.proc & Proc.CR3_LOAD) !== 0 && !this.#cr3Targets.includes(a.value);
        else if (a.cr === 8) exits = (this.proc & Proc.CR8_LOAD) !== 0;
        break;
      case "mov-from":
        q = a.cr | (1 << 4) | (a.gpr << 8);
        if (a.cr === 3) exits = (this.proc & Proc.CR3_STORE) !== 0;
        else if (a.cr === 8) exits = (this.proc & Proc.CR8_STORE) !== 0;
        break;
      case "clts":
        q = 0 | (2 << 4);
        exits = (this.#cr0Mask & 8n) !== 0n && (this.#cr0Shadow & 8n) !== 0n;
        break;
      case "lmsw": {
        q = 0 | (3 << 4) | (a.memoryOperand ? 1 << 6 : 0) | ((a.source & 0xffff) << 16);
        const mask = this.#cr0Mask & 0xfn;
        const src = BigInt(a.source & 0xf);
        // LMSW cannot clear PE, so a host-owned PE only exits when the guest tries to set it
        const peExit = (mask & 1n) !== 0n && (src & 1n) !== 0n && (this.#cr0Shadow & 1n) === 0n;
        exits = peExit || ((src ^ this.#cr0Shadow) & mask & 0xen) !== 0n;
        break;
      }
    }
    if (!exits) return false;
    const linear =
      a.type === "lmsw" && a.memoryOperand && a.linear !== undefined ? { guestLinear: a.linear } : {};
    return this.#exit(ExitReason.CrAccess, ctx, BigInt(q >>> 0), linear);
  }

  drAccess(dr: number, toDr: boolean, gpr: number, ctx: InstructionContext): boolean {
    if (!(this.proc & Proc.MOV_DR)) return false;
    return this.#exit(ExitReason.DrAccess, ctx, BigInt(dr | (toDr ? 0 : 1 << 4) | (gpr << 8)));
  }

  other(instruction: keyof typeof OTHER_REASONS, ctx: InstructionContext): boolean {
    let exits: boolean;
    switch (instruction) {
      case "monitor":
        exits = (this.proc & Proc.MONITOR) !== 0;
        break;
      case "mwait":
        exits = (this.proc & Proc.MWAIT) !== 0;
        break;
      case "pause":
        exits =
          (this.proc & Proc.PAUSE) !== 0 || ((this.proc2 & Proc2.PAUSE_LOOP) !== 0 && this.#pauseLoop());
        break;
      case "wbinvd":
        exits = (this.proc2 & Proc2.WBINVD) !== 0;
        break;
      case "rdrand":
        exits = (this.proc2 & Proc2.RDRAND) !== 0;
        break;
      case "rdseed":
        exits = (this.proc2 & Proc2.RDSEED) !== 0;
        break;
      default:
        // INVD, XSETBV and GETSEC exit unconditionally in VMX non-root operation
        exits = true;
    }
    if (!exits) return false;
    if (instruction === "rdrand" || instruction === "rdseed") {
      // table 28-12: destination register 6:3, operand size 12:11
      const d = this.#decode(ctx, true)?.d;
      const info = d ? ((d.rm ?? 0) << 3) | (d.operandSize << 11) : 0;
      return this.#exit(OTHER_REASONS[instruction], ctx, 0n, { instructionInfo: info });
    }
    return this.#exit(OTHER_REASONS[instruction], ctx);
  }

  descriptorTable(instruction: keyof typeof DT_INFO, ctx: InstructionContext): boolean {
    if (!(this.proc2 & Proc2.DESC_TABLE)) return false;
    const gdt = instruction.endsWith("gdt") || instruction.endsWith("idt");
    const decoded = this.#decode(ctx, true);
    let info = DT_INFO[instruction] << 28;
    let q = 0n;
    if (decoded) {
      const { d } = decoded;
      // GDTR/IDTR (table 28-10): memory operand, operand size in bit 11; LDTR/TR (28-11): memory or register
      info |= gdt ? memoryInfo(d) | (d.operandSize ? 1 << 11 : 0) : operandInfo(d);
      q = displacementQualification(d);
    }
    return this.#exit(gdt ? ExitReason.GdtrIdtr : ExitReason.LdtrTr, ctx, q, { instructionInfo: info >>> 0 });
  }

  vmxInstruction(instruction: keyof typeof VMX_REASONS, ctx: InstructionContext): boolean {
    const withOperand =
      POINTER_OPERAND.has(instruction) ||
      instruction === "vmread" ||
      instruction === "vmwrite" ||
      instruction === "invept" ||
      instruction === "invvpid";
    const decoded = withOperand ? this.#decode(ctx, true) : undefined;
    if (!decoded) return this.#exit(VMX_REASONS[instruction], ctx);
    const { d } = decoded;
    // VMREAD/VMWRITE (28-14) may take a register operand; INVEPT/INVVPID (28-9) and they carry reg2 in 31:28
    let info = POINTER_OPERAND.has(instruction) ? memoryInfo(d) : operandInfo(d);
    if (!POINTER_OPERAND.has(instruction)) info |= (d.reg ?? 0) << 28;
    return this.#exit(VMX_REASONS[instruction], ctx, displacementQualification(d), {
      instructionInfo: info >>> 0,
    });
  }

  event(
    vector: number,
    type: EventType,
    errorCode: number | undefined,
    cr2: number | undefined,
    ctx: InstructionContext,
  ): boolean {
    let exits = false;
    if (type === EventType.Nmi) exits = (this.pin & Pin.NMI_EXITING) !== 0;
    else if (type === EventType.External) exits = (this.pin & Pin.EXTERNAL_INTERRUPT) !== 0;
    else if (EXCEPTION_TYPES.has(type) && vector < 32 && (this.#exceptionBitmap >>> vector) & 1) {
      exits = vector !== 14 || ((errorCode ?? 0) & this.#pfMask) === this.#pfMatch;
    } else if (EXCEPTION_TYPES.has(type) && vector === 14 && !((this.#exceptionBitmap >>> 14) & 1)) {
      // bit 14 clear: #PF exits exactly when the error code does NOT match
      exits = ((errorCode ?? 0) & this.#pfMask) !== this.#pfMatch;
    }
    const during = this.#delivering;
    const nested =
      during !== undefined && during.retired === this.#retired() && during.linearRip === ctx.linearRip;
    if (!exits) {
      // remember the event being delivered: a fault while delivering it is reported with it
      this.#delivering = {
        info: (vector | (type << 8) | (errorCode !== undefined ? 1 << 11 : 0) | 0x80000000) >>> 0,
        error: errorCode,
        retired: this.#retired(),
        linearRip: ctx.linearRip,
      };
      return false;
    }
    const vectoring =
      nested && during
        ? { idtVectoring: during.info, ...(during.error !== undefined ? { idtError: during.error } : {}) }
        : {};
    if (type === EventType.External)
      return this.#exit(ExitReason.ExternalInterrupt, undefined, 0n, vectoring);
    const hasCode = errorCode !== undefined;
    const info = (vector | (type << 8) | (hasCode ? 1 << 11 : 0) | 0x80000000) >>> 0;
    const software = type === EventType.SoftwareException || type === EventType.PrivilegedSoftwareException;
    return this.#exit(
      ExitReason.ExceptionNmi,
      software ? ctx : undefined,
      // #PF: the faulting address; #DB (hardware): B0-B3, BD and BS as DR6 would have them, DR6
      // itself left unchanged (SDM 27.2.1); INT1 and INT3 report nothing
      vector === 14 || (vector === 1 && type === EventType.HardwareException) ? BigInt(cr2 ?? 0) : 0n,
      {
        intrInfo: info,
        ...(hasCode ? { intrError: errorCode } : {}),
        ...vectoring,
      },
    );
  }

  /**
   * Task switches always exit in VMX non-root operation (SDM 26.4.2), after the checks of the gate
   * and of the new TSS descriptor. Qualification: 15:0 the new TSS selector, 31:30 the source.
   * Through an IDT task gate the event goes to IDT-vectoring information; the instruction length
   * is reported for CALL, JMP, IRET and software interrupts, which the hypervisor skips.
   */
  taskSwitch(
    selector: number,
    source: TaskSource,
    ctx: InstructionContext,
    event: TaskEvent | undefined,
  ): boolean {
    const q = BigInt(((selector & 0xffff) | (source << 30)) >>> 0);
    if (source !== TaskSource.Gate || event === undefined) return this.#exit(ExitReason.TaskSwitch, ctx, q);
    const hasCode = event.errorCode !== undefined;
    const info = (event.vector | (event.type << 8) | (hasCode ? 1 << 11 : 0) | 0x80000000) >>> 0;
    const software =
      event.type === EventType.SoftwareInterrupt ||
      event.type === EventType.SoftwareException ||
      event.type === EventType.PrivilegedSoftwareException;
    return this.#exit(ExitReason.TaskSwitch, software ? ctx : undefined, q, {
      idtVectoring: info,
      ...(hasCode ? { idtError: event.errorCode } : {}),
    });
  }

  #delivering: { info: number; error: number | undefined; retired: number; linearRip: number } | undefined;

  tripleFault(): boolean {
    return this.#exit(ExitReason.TripleFault);
  }

  boundary(interruptible: boolean): boolean {
    const cpu = this.host.cpu;
    if (this.proc & Proc.MONITOR_TRAP_FLAG && cpu.retired + cpu.eventsDelivered > this.workAtEntry) {
      return this.#exit(ExitReason.MonitorTrapFlag);
    }
    if (!(this.proc & (Proc.NMI_WINDOW | Proc.INTERRUPT_WINDOW))) return false;
    const replay = this.host.mmioReplay;
    if (replay.done.length !== 0 && replay.pending(cpu.work(), cpu.getRip())) {
      // the instruction has MMIO accesses the host completed and runs to its end before a window
      // opens (as KVM completes an instruction before it injects anything): no event in between
      // may make it start over. Boundaries come after every instruction until it has retired.
      cpu.windowRequests |= Window.MonitorTrap;
      this.#stepping = true;
      return false;
    }
    if (this.#stepping) {
      this.#stepping = false;
      if (!(this.proc & Proc.MONITOR_TRAP_FLAG)) cpu.windowRequests &= ~Window.MonitorTrap;
    }
    if (this.proc & Proc.NMI_WINDOW && this.nmiUnblocked()) return this.#exit(ExitReason.NmiWindow);
    if (this.proc & Proc.INTERRUPT_WINDOW && interruptible) return this.#exit(ExitReason.InterruptWindow);
    return false;
  }

  /** boundary() asked for a boundary after every instruction while one with MMIO finishes */
  #stepping = false;

  /** set by the processor from the guest's interruptibility state */
  nmiUnblocked: () => boolean = () => true;

  /**
   * Back to the state the constructor leaves, for another VM entry with the same controls (the
   * processor reuses the object while the fields the constructor read keep their values).
   */
  /**
   * PAUSE-loop exiting (SDM vol. 3C 26.1.3): a PAUSE at CPL 0 more than PLE_Gap after the previous
   * one starts a loop (as does the first since VM entry); one more than PLE_Window after its loop's
   * first PAUSE exits. Time is this processor's TSC, retired instructions.
   */
  #pauseLoop(): boolean {
    // CPL is SS.DPL (access rights bits 6:5)
    if (((this.host.cpu.getSegment(Seg.SS).ar >> 5) & 3) !== 0) return false;
    const now = this.#retired();
    if (this.#pauseLast < 0 || now - this.#pauseLast > this.#pleGap) this.#pauseFirst = now;
    this.#pauseLast = now;
    return now - this.#pauseFirst > this.#pleWindow;
  }

  reset(): void {
    this.pending = null;
    this.#pauseLast = -1;
    this.#pauseFirst = -1;
    this.#stepping = false;
    // an instruction left half done at the last exit runs again from its first MMIO access
    this.host.mmioReplay.rewind();
    this.workAtEntry = 0;
    this.#delivering = undefined;
    this.nmiUnblocked = ALWAYS;
  }

  /** exits the processor records itself (preemption timer, pending external interrupt/NMI, window at entry) */
  record(reason: number, extra: Partial<PendingExit> = NO_EXTRA): void {
    this.#exit(reason, undefined, 0, extra);
  }
}
