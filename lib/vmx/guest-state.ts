// Moving guest state between the VMCS guest-state area and the interpreter: loaded by VM entry,
// saved by VM exit (SDM 26.3.2, 27.3). General registers other than RSP are not in the VMCS: they
// stay in the processor across exits, where the host (hypervisor) saves and restores them.

import { type ControlRegister, type GuestCpu, Seg, type SysenterRegister } from "../cpu/guest-cpu.js";
import { EntryCtl, ExitCtl } from "./constants.js";
import { F, type FieldInfo, fieldByEncoding } from "./fields.js";
import type { VmcsData } from "./vmcs.js";

// Field descriptors resolved once: entries and exits move ~60 fields each, without the lookup by
// encoding that vmcsGet/vmcsSet do (same reads and writes otherwise).
const fieldInfo = (encoding: number): FieldInfo => {
  const f = fieldByEncoding(encoding);
  if (!f) throw new RangeError(`no VMCS field 0x${encoding.toString(16)}`);
  return f;
};
const vmcsGet = (v: VmcsData, f: FieldInfo): bigint => v.get(f);
const vmcsGet32 = (v: VmcsData, f: FieldInfo): number => v.get32(f);
/** vmcsSet for a resolved field */
function vmcsSet(v: VmcsData, f: FieldInfo, value: bigint | number): void {
  if (typeof value === "bigint") v.set(f, value);
  else if (value >= 0 && value <= Number.MAX_SAFE_INTEGER && Number.isInteger(value)) v.setNumber(f, value);
  else v.set(f, BigInt(value < 0 ? value >>> 0 : value));
}

const SEG_ENCODINGS: readonly [Seg, number, number, number, number][] = [
  [Seg.ES, F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
  [Seg.CS, F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES],
  [Seg.SS, F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
  [Seg.DS, F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
  [Seg.FS, F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
  [Seg.GS, F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
  [Seg.LDTR, F.GUEST_LDTR_SELECTOR, F.GUEST_LDTR_BASE, F.GUEST_LDTR_LIMIT, F.GUEST_LDTR_AR_BYTES],
  [Seg.TR, F.GUEST_TR_SELECTOR, F.GUEST_TR_BASE, F.GUEST_TR_LIMIT, F.GUEST_TR_AR_BYTES],
];
const SEGS: readonly [Seg, FieldInfo, FieldInfo, FieldInfo, FieldInfo][] = SEG_ENCODINGS.map(
  ([seg, sel, base, limit, ar]) => [seg, fieldInfo(sel), fieldInfo(base), fieldInfo(limit), fieldInfo(ar)],
);

const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/**
 * CR0/CR4 as the interpreter sees them: bits owned by the host (set in the guest/host mask) read as
 * the read shadow, which is what guest reads must return. The interpreter has no notion of masks,
 * so the VMX layer keeps the true host-owned bits in the VMCS and re-merges them at exit.
 */
const guestView = (actual: bigint, mask: bigint, shadow: bigint): bigint =>
  (actual & ~mask) | (shadow & mask);

/**
 * Loads a register only when it differs: most entries resume the state the last exit saved, and
 * the interpreter's setControl re-derives its translation state on every call.
 */
function setControl(cpu: GuestCpu, reg: ControlRegister | SysenterRegister, value: bigint): void {
  if (cpu.getControl(reg) !== value) cpu.setControl(reg, value);
}

const G = {
  CR0_GUEST_HOST_MASK: fieldInfo(F.CR0_GUEST_HOST_MASK),
  CR0_READ_SHADOW: fieldInfo(F.CR0_READ_SHADOW),
  CR4_GUEST_HOST_MASK: fieldInfo(F.CR4_GUEST_HOST_MASK),
  CR4_READ_SHADOW: fieldInfo(F.CR4_READ_SHADOW),
  GUEST_ACTIVITY_STATE: fieldInfo(F.GUEST_ACTIVITY_STATE),
  GUEST_CR0: fieldInfo(F.GUEST_CR0),
  GUEST_CR3: fieldInfo(F.GUEST_CR3),
  GUEST_CR4: fieldInfo(F.GUEST_CR4),
  GUEST_DR7: fieldInfo(F.GUEST_DR7),
  GUEST_GDTR_BASE: fieldInfo(F.GUEST_GDTR_BASE),
  GUEST_GDTR_LIMIT: fieldInfo(F.GUEST_GDTR_LIMIT),
  GUEST_IA32_DEBUGCTL: fieldInfo(F.GUEST_IA32_DEBUGCTL),
  GUEST_IA32_EFER: fieldInfo(F.GUEST_IA32_EFER),
  GUEST_IA32_PAT: fieldInfo(F.GUEST_IA32_PAT),
  GUEST_IDTR_BASE: fieldInfo(F.GUEST_IDTR_BASE),
  GUEST_IDTR_LIMIT: fieldInfo(F.GUEST_IDTR_LIMIT),
  GUEST_INTERRUPTIBILITY_INFO: fieldInfo(F.GUEST_INTERRUPTIBILITY_INFO),
  GUEST_RFLAGS: fieldInfo(F.GUEST_RFLAGS),
  GUEST_RIP: fieldInfo(F.GUEST_RIP),
  GUEST_RSP: fieldInfo(F.GUEST_RSP),
  GUEST_SYSENTER_CS: fieldInfo(F.GUEST_SYSENTER_CS),
  GUEST_SYSENTER_EIP: fieldInfo(F.GUEST_SYSENTER_EIP),
  GUEST_SYSENTER_ESP: fieldInfo(F.GUEST_SYSENTER_ESP),
  VM_ENTRY_CONTROLS: fieldInfo(F.VM_ENTRY_CONTROLS),
  VM_EXIT_CONTROLS: fieldInfo(F.VM_EXIT_CONTROLS),
};

export function loadGuestState(cpu: GuestCpu, v: VmcsData): void {
  const entry = vmcsGet32(v, G.VM_ENTRY_CONTROLS);
  setControl(
    cpu,
    "cr0",
    guestView(vmcsGet(v, G.GUEST_CR0), vmcsGet(v, G.CR0_GUEST_HOST_MASK), vmcsGet(v, G.CR0_READ_SHADOW)),
  );
  setControl(
    cpu,
    "cr4",
    guestView(vmcsGet(v, G.GUEST_CR4), vmcsGet(v, G.CR4_GUEST_HOST_MASK), vmcsGet(v, G.CR4_READ_SHADOW)),
  );
  setControl(cpu, "cr3", vmcsGet(v, G.GUEST_CR3));
  if (entry & EntryCtl.LOAD_DEBUG) {
    setControl(cpu, "dr7", vmcsGet(v, G.GUEST_DR7));
    setControl(cpu, "debugctl", vmcsGet(v, G.GUEST_IA32_DEBUGCTL));
  }
  if (entry & EntryCtl.LOAD_EFER) {
    setControl(cpu, "efer", vmcsGet(v, G.GUEST_IA32_EFER));
  } else {
    // without "load IA32_EFER", LMA and LME follow the IA-32e mode guest control (SDM 26.3.2.1)
    const ia32e = (entry & EntryCtl.IA32E_MODE) !== 0;
    const efer = cpu.getControl("efer") & ~(EFER_LMA | EFER_LME);
    setControl(cpu, "efer", ia32e ? efer | EFER_LMA | EFER_LME : efer);
  }
  if (entry & EntryCtl.LOAD_PAT) setControl(cpu, "pat", vmcsGet(v, G.GUEST_IA32_PAT));
  setControl(cpu, "sysenter_cs", vmcsGet(v, G.GUEST_SYSENTER_CS));
  setControl(cpu, "sysenter_esp", vmcsGet(v, G.GUEST_SYSENTER_ESP));
  setControl(cpu, "sysenter_eip", vmcsGet(v, G.GUEST_SYSENTER_EIP));
  for (const [seg, sel, base, limit, ar] of SEGS) {
    cpu.setSegment(seg, {
      selector: vmcsGet32(v, sel),
      base: vmcsGet(v, base),
      limit: vmcsGet32(v, limit),
      ar: vmcsGet32(v, ar),
    });
  }
  cpu.setGdtr({ base: vmcsGet(v, G.GUEST_GDTR_BASE), limit: vmcsGet32(v, G.GUEST_GDTR_LIMIT) });
  cpu.setIdtr({ base: vmcsGet(v, G.GUEST_IDTR_BASE), limit: vmcsGet32(v, G.GUEST_IDTR_LIMIT) });
  cpu.setGpr(4, vmcsGet(v, G.GUEST_RSP));
  cpu.setRip(vmcsGet(v, G.GUEST_RIP));
  cpu.setRflags(vmcsGet(v, G.GUEST_RFLAGS));
  cpu.interruptibility = vmcsGet32(v, G.GUEST_INTERRUPTIBILITY_INFO);
  cpu.activity = vmcsGet32(v, G.GUEST_ACTIVITY_STATE);
}

export function saveGuestState(cpu: GuestCpu, v: VmcsData): void {
  const exit = vmcsGet32(v, G.VM_EXIT_CONTROLS);
  const cr0Mask = vmcsGet(v, G.CR0_GUEST_HOST_MASK);
  const cr4Mask = vmcsGet(v, G.CR4_GUEST_HOST_MASK);
  vmcsSet(v, G.GUEST_CR0, (cpu.getControl("cr0") & ~cr0Mask) | (vmcsGet(v, G.GUEST_CR0) & cr0Mask));
  vmcsSet(v, G.GUEST_CR4, (cpu.getControl("cr4") & ~cr4Mask) | (vmcsGet(v, G.GUEST_CR4) & cr4Mask));
  vmcsSet(v, G.GUEST_CR3, cpu.getControl("cr3"));
  if (exit & ExitCtl.SAVE_DEBUG) {
    vmcsSet(v, G.GUEST_DR7, cpu.getControl("dr7"));
    vmcsSet(v, G.GUEST_IA32_DEBUGCTL, cpu.getControl("debugctl"));
  }
  const efer = cpu.getControl("efer");
  if (exit & ExitCtl.SAVE_EFER) vmcsSet(v, G.GUEST_IA32_EFER, efer);
  if (exit & ExitCtl.SAVE_PAT) vmcsSet(v, G.GUEST_IA32_PAT, cpu.getControl("pat"));
  // IA32_VMX_MISC bit 5: the IA-32e mode guest entry control records EFER.LMA on every exit
  const entry = vmcsGet32(v, G.VM_ENTRY_CONTROLS);
  vmcsSet(
    v,
    G.VM_ENTRY_CONTROLS,
    efer & EFER_LMA ? entry | EntryCtl.IA32E_MODE : entry & ~EntryCtl.IA32E_MODE,
  );
  vmcsSet(v, G.GUEST_SYSENTER_CS, cpu.getControl("sysenter_cs"));
  vmcsSet(v, G.GUEST_SYSENTER_ESP, cpu.getControl("sysenter_esp"));
  vmcsSet(v, G.GUEST_SYSENTER_EIP, cpu.getControl("sysenter_eip"));
  for (const [seg, sel, base, limit, ar] of SEGS) {
    const s = cpu.getSegment(seg);
    vmcsSet(v, sel, s.selector);
    vmcsSet(v, base, s.base);
    vmcsSet(v, limit, s.limit);
    vmcsSet(v, ar, s.ar);
  }
  const gdtr = cpu.getGdtr();
  const idtr = cpu.getIdtr();
  vmcsSet(v, G.GUEST_GDTR_BASE, gdtr.base);
  vmcsSet(v, G.GUEST_GDTR_LIMIT, gdtr.limit);
  vmcsSet(v, G.GUEST_IDTR_BASE, idtr.base);
  vmcsSet(v, G.GUEST_IDTR_LIMIT, idtr.limit);
  vmcsSet(v, G.GUEST_RSP, cpu.getGpr(4));
  vmcsSet(v, G.GUEST_RIP, cpu.getRip());
  vmcsSet(v, G.GUEST_RFLAGS, cpu.getRflags());
  vmcsSet(v, G.GUEST_INTERRUPTIBILITY_INFO, cpu.interruptibility);
  vmcsSet(v, G.GUEST_ACTIVITY_STATE, cpu.activity);
}
