// What the machine needs of a backend. lib/vmm/backends/kvm.ts wraps lib/kvm (KvmVm/KvmVcpu);
// lib/vmm/backends/soft.ts is the small VT-x hypervisor over lib/vmx + lib/cpu.

import type { VmExit } from "./exits.js";
import type { GuestMemory } from "./memory.js";
import type { Regs, SpecialRegs } from "./regs.js";

export type BackendKind = "kvm" | "soft";

/** Where a device's interrupt goes on the soft backend (the emulated i8259 pair / APIC). */
export interface InterruptController {
  setIrq(line: number, level: boolean): void;
  /** an interrupt is pending for the CPU (INTR asserted) */
  hasInterrupt(): boolean;
  /** INTA cycle: returns the vector and updates in-service state */
  acknowledge(): number;
}

export interface VcpuBackend {
  readonly index: number;
  /**
   * Enters the guest and returns at the next exit. For io "in" and mmio reads the caller fills
   * exit.data before calling run() again; the backend completes the instruction with it.
   */
  run(): VmExit;
  getRegs(): Regs;
  setRegs(regs: Regs): void;
  getSregs(): SpecialRegs;
  setSregs(sregs: SpecialRegs): void;
  getMsr(index: number): bigint | undefined;
  setMsr(index: number, value: bigint): void;
  /** makes a run() in progress (or the next one) return an "intr" exit promptly; callable from elsewhere */
  kick(): void;
  close(): void;
}

export interface MachineBackend {
  readonly kind: BackendKind;
  readonly memory: GuestMemory;
  createVcpu(index: number): VcpuBackend;
  /** level of an interrupt line (ISA IRQ / GSI): KVM_IRQ_LINE on KVM, the emulated PIC on soft */
  setIrqLine(line: number, level: boolean): void;
  close(): void;
}
