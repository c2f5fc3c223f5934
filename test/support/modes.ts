// Puts a vCPU of either backend into real, flat protected or long mode through the register API the
// two share (KVM's vCPU and the soft backend's speak the same Regs/SpecialRegs), so the KVM and soft
// suites set their guests up with the very same code.

import { type Regs, type SpecialRegs, segment } from "../../lib/types/regs.js";

/** What the mode helpers need of a vCPU: both backends' vCPUs have it. */
export interface RegisterAccess {
  getRegs(): Regs;
  setRegs(regs: Regs): void;
  getSregs(): SpecialRegs;
  setSregs(sregs: SpecialRegs): void;
}

const CODE_RX_ACCESSED = 0xb;
const DATA_RW_ACCESSED = 0x3;

/** Real mode with every segment based at 0, starting at rip. */
export function enterRealMode(vcpu: RegisterAccess, rip: number): void {
  const s = vcpu.getSregs();
  const code = segment({ type: CODE_RX_ACCESSED });
  const data = segment({ type: DATA_RW_ACCESSED });
  vcpu.setSregs({ ...s, cs: code, ds: data, es: data, fs: data, gs: data, ss: data });
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(rip), rflags: 2n, rsp: 0xf000n });
}

/** Flat 32-bit protected mode (no paging). */
export function enterProtectedMode(vcpu: RegisterAccess, rip: number): void {
  const s = vcpu.getSregs();
  const flat = { limit: 0xffffffff, g: true, db: true };
  const code = segment({ selector: 8, type: CODE_RX_ACCESSED, ...flat });
  const data = segment({ selector: 16, type: DATA_RW_ACCESSED, ...flat });
  vcpu.setSregs({ ...s, cs: code, ds: data, es: data, fs: data, gs: data, ss: data, cr0: s.cr0 | 1n });
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(rip), rflags: 2n, rsp: 0x8000n });
}

export const PML4 = 0x2000;
/** virtual HIGH + x maps to physical x (for the translate test) */
export const HIGH = 0x40000000;

/**
 * 64-bit long mode with page tables built here in `ram` (guest-physical 0 up): the first 4 MiB
 * identity-mapped with 2 MiB pages (the second one has no RAM behind it when the VM is small: MMIO),
 * and HIGH..HIGH+2MiB -> 0.
 */
export function enterLongMode(vcpu: RegisterAccess, ram: Uint8Array, rip: number): void {
  const dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  const P = 1n;
  const RW = 2n;
  const PS = 0x80n;
  const q = (at: number, v: bigint) => dv.setBigUint64(at, v, true);
  q(PML4, 0x3000n | P | RW); // PML4[0] -> PDPT
  q(0x3000, 0x4000n | P | RW); // PDPT[0] -> PD (0..1 GiB)
  q(0x3000 + 8, 0x5000n | P | RW); // PDPT[1] -> PD (1..2 GiB)
  q(0x4000, 0x000000n | P | RW | PS);
  q(0x4000 + 8, 0x200000n | P | RW | PS);
  q(0x5000, 0x000000n | P | RW | PS);
  const s = vcpu.getSregs();
  const code = segment({ selector: 8, type: CODE_RX_ACCESSED, l: true, limit: 0xffffffff, g: true });
  const data = segment({ selector: 16, type: DATA_RW_ACCESSED, db: true, limit: 0xffffffff, g: true });
  vcpu.setSregs({
    ...s,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    cr3: BigInt(PML4),
    cr4: 0x20n, // PAE
    cr0: 0x80000011n, // PG | ET | PE
    efer: 0x500n, // LMA | LME
  });
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(rip), rflags: 2n, rsp: 0x8000n });
}

export function u32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
}
