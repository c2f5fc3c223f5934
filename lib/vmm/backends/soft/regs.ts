// Register inspection on the soft backend: the VMCS guest-state area (read with VMREAD) plus the
// general registers, which VT-x leaves in the processor across exits. Same names as on KVM.

import { CR4_OFFERED } from "../../../cpu/index.js";
import { GPR_NAMES, type Regs, type Segment, type SpecialRegs } from "../../../types/regs.js";
import { EntryCtl, F, type LogicalProcessor, MAXPHYADDR } from "../../../vmx/index.js";
import { hex, RegisterValueError } from "../../errors.js";
import { CR0_OWNED, CR4_OWNED } from "./vmcs-setup.js";

const SEG = {
  es: [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
  cs: [F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES],
  ss: [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
  ds: [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
  fs: [F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
  gs: [F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
  ldt: [F.GUEST_LDTR_SELECTOR, F.GUEST_LDTR_BASE, F.GUEST_LDTR_LIMIT, F.GUEST_LDTR_AR_BYTES],
  tr: [F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES],
} as const;

export const arToSegment = (selector: number, base: bigint, limit: number, ar: number): Segment => ({
  base,
  limit,
  selector,
  type: ar & 0xf,
  s: ((ar >> 4) & 1) === 1,
  dpl: (ar >> 5) & 3,
  present: ((ar >> 7) & 1) === 1,
  avl: ((ar >> 12) & 1) === 1,
  l: ((ar >> 13) & 1) === 1,
  db: ((ar >> 14) & 1) === 1,
  g: ((ar >> 15) & 1) === 1,
  unusable: ((ar >> 16) & 1) === 1,
});

export const segmentToAr = (s: Segment): number =>
  (s.type & 0xf) |
  (s.s ? 1 << 4 : 0) |
  ((s.dpl & 3) << 5) |
  (s.present ? 1 << 7 : 0) |
  (s.avl ? 1 << 12 : 0) |
  (s.l ? 1 << 13 : 0) |
  (s.db ? 1 << 14 : 0) |
  (s.g ? 1 << 15 : 0) |
  (s.unusable ? 1 << 16 : 0);

export function readRegs(lp: LogicalProcessor): Regs {
  const r = {} as Regs;
  GPR_NAMES.forEach((name, i) => {
    r[name] = lp.cpu.getGpr(i);
  });
  r.rsp = lp.vmread(F.GUEST_RSP);
  r.rip = lp.vmread(F.GUEST_RIP);
  r.rflags = lp.vmread(F.GUEST_RFLAGS);
  return r;
}

export function writeRegs(lp: LogicalProcessor, regs: Regs): void {
  GPR_NAMES.forEach((name, i) => {
    if (i !== 4) lp.cpu.setGpr(i, BigInt.asUintN(64, regs[name]));
  });
  lp.vmwrite(F.GUEST_RSP, regs.rsp);
  lp.vmwrite(F.GUEST_RIP, regs.rip);
  lp.vmwrite(F.GUEST_RFLAGS, regs.rflags | 2n);
}

export function readSregs(lp: LogicalProcessor): SpecialRegs {
  const seg = (k: keyof typeof SEG): Segment => {
    const [sel, base, limit, ar] = SEG[k];
    return arToSegment(
      Number(lp.vmread(sel)),
      lp.vmread(base),
      Number(lp.vmread(limit)),
      Number(lp.vmread(ar)),
    );
  };
  // guests see host-owned CR bits through the read shadows
  const view = (actual: number, shadow: number, mask: bigint) =>
    (lp.vmread(actual) & ~mask) | (lp.vmread(shadow) & mask);
  return {
    cs: seg("cs"),
    ds: seg("ds"),
    es: seg("es"),
    fs: seg("fs"),
    gs: seg("gs"),
    ss: seg("ss"),
    tr: seg("tr"),
    ldt: seg("ldt"),
    gdt: { base: lp.vmread(F.GUEST_GDTR_BASE), limit: Number(lp.vmread(F.GUEST_GDTR_LIMIT)) },
    idt: { base: lp.vmread(F.GUEST_IDTR_BASE), limit: Number(lp.vmread(F.GUEST_IDTR_LIMIT)) },
    cr0: view(F.GUEST_CR0, F.CR0_READ_SHADOW, CR0_OWNED),
    cr2: lp.cpu.getControl("cr2"),
    cr3: lp.vmread(F.GUEST_CR3),
    cr4: view(F.GUEST_CR4, F.CR4_READ_SHADOW, CR4_OWNED),
    cr8: lp.cpu.getControl("cr8"),
    efer: lp.vmread(F.GUEST_IA32_EFER),
    apicBase: lp.cpu.getMsr(0x1b) ?? 0xfee00900n,
  };
}

/**
 * What the soft CPU cannot hold although another x86 could (lib/vmm/register-checks.ts checks the
 * architecture): CR4 features its CPUID does not offer, VMXE (VMX is hidden), CR3 above its
 * MAXPHYADDR. Refused before anything is written, as KVM refuses KVM_SET_SREGS.
 */
function checkSoftSregs(s: SpecialRegs): void {
  if ((s.cr4 & ~BigInt(CR4_OFFERED)) !== 0n) {
    const bad = s.cr4 & ~BigInt(CR4_OFFERED);
    throw new RegisterValueError(
      `cr4 = ${hex(s.cr4)}: bits ${hex(bad)} are not offered by the soft CPU`,
      "cr4",
      s.cr4,
    );
  }
  if (s.cr3 >> BigInt(MAXPHYADDR) !== 0n) {
    throw new RegisterValueError(
      `cr3 = ${hex(s.cr3)}: above the soft CPU's MAXPHYADDR (${MAXPHYADDR})`,
      "cr3",
      s.cr3,
    );
  }
}

export function writeSregs(lp: LogicalProcessor, s: SpecialRegs): void {
  checkSoftSregs(s);
  for (const k of Object.keys(SEG) as (keyof typeof SEG)[]) {
    const [sel, base, limit, ar] = SEG[k];
    const v = s[k];
    lp.vmwrite(sel, v.selector);
    lp.vmwrite(base, BigInt.asUintN(64, v.base));
    lp.vmwrite(limit, v.limit >>> 0);
    // a non-present data segment is how KVM callers describe a null selector: unusable in VMX
    const usable = v.present || k === "cs" || k === "tr";
    lp.vmwrite(ar, segmentToAr({ ...v, unusable: v.unusable || !usable }));
  }
  lp.vmwrite(F.GUEST_GDTR_BASE, s.gdt.base);
  lp.vmwrite(F.GUEST_GDTR_LIMIT, s.gdt.limit);
  lp.vmwrite(F.GUEST_IDTR_BASE, s.idt.base);
  lp.vmwrite(F.GUEST_IDTR_LIMIT, s.idt.limit);
  lp.vmwrite(F.GUEST_CR0, s.cr0 | CR0_OWNED);
  lp.vmwrite(F.CR0_READ_SHADOW, s.cr0);
  lp.vmwrite(F.GUEST_CR4, s.cr4 | CR4_OWNED);
  lp.vmwrite(F.CR4_READ_SHADOW, s.cr4);
  lp.vmwrite(F.GUEST_CR3, s.cr3);
  lp.vmwrite(F.GUEST_IA32_EFER, s.efer);
  const entry = lp.vmread(F.VM_ENTRY_CONTROLS);
  const ia32e = BigInt(EntryCtl.IA32E_MODE);
  lp.vmwrite(F.VM_ENTRY_CONTROLS, s.efer & 0x400n ? entry | ia32e : entry & ~ia32e);
  lp.cpu.setControl("cr2", s.cr2);
  lp.cpu.setControl("cr8", s.cr8);
  if (s.apicBase) lp.cpu.setMsr(0x1b, s.apicBase);
}
