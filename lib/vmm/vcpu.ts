// A vCPU as users see it: registers, a QEMU-style dump, page-table translation and disassembly at
// RIP, the same on both backends because everything is derived from Regs/SpecialRegs.

import { type DisassembledInstruction, disassemble, formatDisassembly } from "../inspect/disasm.js";
import { type DumpOptions, formatRegisters } from "../inspect/dump.js";
import { bitSet } from "../inspect/flags.js";
import { type DescriptorEntry, formatDescriptors, listDescriptors } from "../inspect/gdt.js";
import { type Translation, walkPageTables } from "../inspect/pagewalk.js";
import { cpuMode, modeBitness } from "../inspect/segments.js";
import type { Regs, SpecialRegs } from "../types/regs.js";
import type { VcpuBackend } from "./backend.js";
import { hex, MachineClosedError, RegisterValueError } from "./errors.js";
import type { GuestMemory } from "./memory.js";
import { checkMsr, checkRegs, checkSregs } from "./register-checks.js";
import { addressArg, integerArg, optionsArg } from "./validate.js";

/**
 * A virtual CPU as `vm.vcpu(i)` gives it: general and special registers, MSRs, a QEMU-style register dump,
 * page-table translation and disassembly, the same on both backends. Register access after the machine is
 * closed throws MachineClosedError.
 */
export class Vcpu {
  readonly #closed: () => boolean;

  constructor(
    /** The backend's vCPU (KVM or soft) this object reads and writes through. */
    readonly backend: VcpuBackend,
    /** The machine's guest memory, for translation and disassembly. */
    readonly memory: GuestMemory,
    /** whether the machine was closed: register access then throws MachineClosedError */
    closed: () => boolean = () => false,
  ) {
    this.#closed = closed;
  }

  /** The vCPU's index in the machine (0 is the bootstrap processor; equals its initial APIC ID). */
  get index(): number {
    return this.backend.index;
  }
  /** The general registers, RIP and RFLAGS (a copy: change them with setRegs()). */
  getRegs(): Regs {
    this.#checkOpen();
    return this.backend.getRegs();
  }
  /**
   * Writes the registers named (the others keep their values; `{}` changes nothing). A value no
   * CPU can hold (reserved RFLAGS bits, a non-canonical RIP in 64-bit mode, a wrong type) is a
   * RegisterValueError before anything is written.
   */
  setRegs(regs: Partial<Regs>): void {
    this.#checkOpen();
    this.backend.setRegs(checkRegs(regs, this.backend.getRegs(), this.backend.getSregs()));
  }
  /**
   * Segment registers, GDT/IDT, CR0/CR2/CR3/CR4/CR8, EFER and the APIC base (a copy: change them with
   * setSregs()).
   */
  getSregs(): SpecialRegs {
    this.#checkOpen();
    return this.backend.getSregs();
  }
  /** As setRegs, for segments (merged field by field), descriptor tables and control registers. */
  setSregs(sregs: Partial<SpecialRegs>): void {
    this.#checkOpen();
    this.backend.setSregs(checkSregs(sregs, this.backend.getSregs()));
  }
  /** Reads MSR `index` (0 to 0xFFFFFFFF); undefined when the vCPU has no such MSR. */
  getMsr(index: number): bigint | undefined {
    this.#checkOpen();
    integerArg("index", index, 0, 0xffffffff);
    return this.backend.getMsr(index);
  }
  /** RegisterValueError when the vCPU has no such MSR or refuses the value (as WRMSR would #GP). */
  setMsr(index: number, value: bigint): void {
    this.#checkOpen();
    const msr = checkMsr(index, value);
    try {
      this.backend.setMsr(msr.index, msr.value);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new RegisterValueError(
        `msr ${hex(msr.index)} = ${hex(msr.value)}: ${e.message}`,
        `msr ${hex(msr.index)}`,
        value,
      );
    }
  }

  /** Registers in QEMU's `info registers` layout plus decoded flags and control registers. */
  dump(opts?: DumpOptions): string {
    const o = optionsArg("opts", opts);
    return formatRegisters(this.getRegs(), this.getSregs(), o);
  }

  /** Walks the guest's page tables for a guest-virtual (linear) address. */
  translate(gva: bigint | number): Translation {
    return walkPageTables(this.memory, this.getSregs(), addressArg("gva", gva));
  }

  /** Guest-linear address of the next instruction (CS.base + RIP, masked to the mode). */
  linearRip(): bigint {
    const regs = this.getRegs();
    const sregs = this.getSregs();
    const mode = cpuMode(sregs, regs.rflags);
    if (mode === "long") return regs.rip;
    const ip =
      mode === "real" || mode === "virtual-8086" || mode === "protected-16" ? regs.rip & 0xffffn : regs.rip;
    return BigInt.asUintN(32, sregs.cs.base + ip);
  }

  /**
   * Disassembles `count` instructions at RIP (read through the page tables). Stops where the code
   * leaves RAM or an unmapped page.
   */
  disassemble(count = 8): DisassembledInstruction[] {
    integerArg("count", count, 0, 4096);
    const regs = this.getRegs();
    const sregs = this.getSregs();
    const bitness = modeBitness(cpuMode(sregs, regs.rflags));
    const bytes = this.#readLinear(this.linearRip(), count * 15);
    return disassemble(bytes, regs.rip, bitness, count);
  }

  /** The GDT's descriptors, decoded (read as guest-physical: loaders identity-map their GDT). */
  gdtEntries(maxEntries = 32): DescriptorEntry[] {
    integerArg("maxEntries", maxEntries, 0, 8192);
    const s = this.getSregs();
    return listDescriptors(this.memory, s.gdt, bitSet(s.efer, 10), maxEntries);
  }

  /** dump() followed by the code at RIP, for crash reports. */
  report(count = 4): string {
    integerArg("count", count, 0, 4096);
    let code: string;
    try {
      const list = this.disassemble(count);
      code = list.length ? formatDisassembly(list) : "(no code readable at RIP)";
    } catch (e) {
      code = `(cannot disassemble: ${e instanceof Error ? e.message : String(e)})`;
    }
    let gdt: string;
    try {
      gdt = formatDescriptors(this.gdtEntries(16)) || "(empty)";
    } catch (e) {
      gdt = `(unreadable: ${e instanceof Error ? e.message : String(e)})`;
    }
    return `${this.dump()}GDT entries:\n${gdt}\nCode at RIP:\n${code}\n`;
  }

  #checkOpen(): void {
    if (this.#closed()) throw new MachineClosedError(`vCPU ${this.backend.index}`);
  }

  /** Reads up to `length` bytes of guest-linear memory, stopping at the first unreadable byte. */
  #readLinear(linear: bigint, length: number): Uint8Array {
    const out: number[] = [];
    let addr = linear;
    while (out.length < length) {
      const t = this.translate(addr);
      if (t.physical === undefined) break;
      const pageLeft = 4096 - Number(t.physical & 0xfffn);
      const n = Math.min(pageLeft, length - out.length);
      const region = this.memory.find(Number(t.physical), 1);
      if (!region) break;
      const off = Number(t.physical) - region.guestPhysAddr;
      const chunk = region.bytes.subarray(off, Math.min(off + n, region.bytes.length));
      out.push(...chunk);
      if (chunk.length < n) break;
      addr += BigInt(n);
    }
    return Uint8Array.from(out);
  }
}
