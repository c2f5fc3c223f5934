// VM-entry checks (SDM 26.2 and 26.3.1): VM-execution/exit/entry control fields against the
// capability MSRs (failure = VMfailValid 7), host-state area (VMfailValid 8), then guest-state area
// (failure = a VM exit with basic reason 33 and bit 31 set). Each failure names the rule it broke.

import {
  type ControlCaps,
  CR0_FIXED0,
  CR0_FIXED1,
  CR3_TARGET_MAX,
  CR4_FIXED0,
  CR4_FIXED1,
  MAXPHYADDR,
  PROC2_CAPS,
  TRUE_ENTRY_CAPS,
  TRUE_EXIT_CAPS,
  TRUE_PIN_CAPS,
  TRUE_PROC_CAPS,
} from "./capabilities.js";
import { EntryCtl, ExitCtl, IntrType, Pin, Proc, Proc2 } from "./constants.js";
import { validEptp } from "./ept.js";
import { F, fieldByEncoding } from "./fields.js";
import { memoCheck, type VmcsData, vmcsGet, vmcsGet32 } from "./vmcs.js";

export type CheckResult =
  | { kind: "ok" }
  | { kind: "vmfail"; error: 7 | 8; rule: string }
  | { kind: "guest"; qualification: number; rule: string };

const OK: CheckResult = { kind: "ok" };
const ctl = (rule: string): CheckResult => ({ kind: "vmfail", error: 7, rule });
const host = (rule: string): CheckResult => ({ kind: "vmfail", error: 8, rule });
const guest = (rule: string, qualification = 0): CheckResult => ({ kind: "guest", qualification, rule });

const PHYS_LIMIT = 1n << BigInt(MAXPHYADDR);
const physOk = (a: bigint): boolean => a < PHYS_LIMIT;
/** canonical for 48-bit linear addresses */
export const canonical = (a: bigint): boolean => {
  const top = a >> 47n;
  return top === 0n || top === 0x1ffffn;
};
const fitsCaps = (value: number, caps: ControlCaps): boolean =>
  (value & caps.mustBeOne) >>> 0 === caps.mustBeOne && (value & ~caps.mayBeOne) >>> 0 === 0;

const RIP_FIELD = fieldByEncoding(F.GUEST_RIP)!;
const CONTROLS_KEY = {};
const ENTRY_EVENT_KEY = {};
/**
 * Every check here is a pure function of the VMCS fields it reads, memoized on their values
 * (memoCheck): a VMWRITE, or a VM exit, that changes any of them runs the check again. The rules
 * come in small groups, run in the SDM's order (the first broken rule is the one reported), so
 * that an entry after the host wrote a field or two runs only the groups that read them.
 */
export function checkControls(v: VmcsData): CheckResult {
  const controls = memoCheck(v, CONTROLS_KEY, controlsUncached);
  if (controls.kind !== "ok") return controls;
  return memoCheck(v, ENTRY_EVENT_KEY, checkEntryEvent);
}

function controlsUncached(v: VmcsData): CheckResult {
  const pin = vmcsGet32(v, F.PIN_BASED_VM_EXEC_CONTROL);
  const proc = vmcsGet32(v, F.CPU_BASED_VM_EXEC_CONTROL);
  const proc2 = proc & Proc.SECONDARY ? vmcsGet32(v, F.SECONDARY_VM_EXEC_CONTROL) : 0;
  const exit = vmcsGet32(v, F.VM_EXIT_CONTROLS);
  const entry = vmcsGet32(v, F.VM_ENTRY_CONTROLS);
  if (!fitsCaps(pin, TRUE_PIN_CAPS))
    return ctl("pin-based controls not allowed by IA32_VMX_TRUE_PINBASED_CTLS");
  if (!fitsCaps(proc, TRUE_PROC_CAPS)) return ctl("primary processor-based controls not allowed");
  if (!fitsCaps(proc2, PROC2_CAPS)) return ctl("secondary processor-based controls not allowed");
  if (!fitsCaps(exit, TRUE_EXIT_CAPS)) return ctl("VM-exit controls not allowed");
  if (!fitsCaps(entry, TRUE_ENTRY_CAPS)) return ctl("VM-entry controls not allowed");
  if (vmcsGet32(v, F.CR3_TARGET_COUNT) > CR3_TARGET_MAX) return ctl("CR3-target count above 4");
  if (proc & Proc.USE_IO_BITMAPS) {
    for (const f of [F.IO_BITMAP_A, F.IO_BITMAP_B]) {
      const a = vmcsGet(v, f);
      if (a & 0xfffn || !physOk(a)) return ctl("I/O bitmap address not page-aligned or beyond MAXPHYADDR");
    }
  }
  if (proc & Proc.USE_MSR_BITMAPS) {
    const a = vmcsGet(v, F.MSR_BITMAP);
    if (a & 0xfffn || !physOk(a)) return ctl("MSR bitmap address not page-aligned or beyond MAXPHYADDR");
  }
  if (!(pin & Pin.NMI_EXITING) && pin & Pin.VIRTUAL_NMIS) return ctl("virtual NMIs without NMI exiting");
  if (!(pin & Pin.VIRTUAL_NMIS) && proc & Proc.NMI_WINDOW)
    return ctl("NMI-window exiting without virtual NMIs");
  if (proc2 & Proc2.VPID && vmcsGet32(v, F.VPID) === 0) return ctl("VPID enabled with VPID 0");
  if (proc2 & Proc2.EPT && !validEptp(vmcsGet(v, F.EPT_POINTER))) return ctl("invalid EPT pointer");
  if (proc2 & Proc2.UNRESTRICTED_GUEST && !(proc2 & Proc2.EPT)) return ctl("unrestricted guest without EPT");
  if (!(pin & Pin.PREEMPTION_TIMER) && exit & ExitCtl.SAVE_PREEMPTION_TIMER) {
    return ctl("save preemption timer without activating it");
  }
  for (const [count, addr] of [
    [F.VM_EXIT_MSR_STORE_COUNT, F.VM_EXIT_MSR_STORE_ADDR],
    [F.VM_EXIT_MSR_LOAD_COUNT, F.VM_EXIT_MSR_LOAD_ADDR],
    [F.VM_ENTRY_MSR_LOAD_COUNT, F.VM_ENTRY_MSR_LOAD_ADDR],
  ] as const) {
    const n = vmcsGet32(v, count);
    if (n === 0) continue;
    const a = vmcsGet(v, addr);
    if (a & 0xfn || !physOk(a + BigInt(n) * 16n - 1n))
      return ctl("MSR list address misaligned or beyond MAXPHYADDR");
  }
  return OK;
}

function checkEntryEvent(v: VmcsData): CheckResult {
  const info = vmcsGet32(v, F.VM_ENTRY_INTR_INFO_FIELD);
  if (!(info & 0x80000000)) return OK;
  const vector = info & 0xff;
  const type = (info >>> 8) & 7;
  if (info & 0x7ffff000) return ctl("entry interruption-info reserved bits set");
  if (type === 1) return ctl("entry interruption type 1 is reserved");
  if (type === IntrType.Nmi && vector !== 2) return ctl("NMI injection with vector other than 2");
  if (type === IntrType.HardwareException && vector > 31) return ctl("hardware exception vector above 31");
  if (type === IntrType.Other) return ctl("injection of 'other event' is not supported");
  const deliver = (info & (1 << 11)) !== 0;
  const cr0 = vmcsGet(v, F.GUEST_CR0);
  const proc2 =
    vmcsGet32(v, F.CPU_BASED_VM_EXEC_CONTROL) & Proc.SECONDARY
      ? vmcsGet32(v, F.SECONDARY_VM_EXEC_CONTROL)
      : 0;
  const protectedMode = (cr0 & 1n) === 1n || !(proc2 & Proc2.UNRESTRICTED_GUEST);
  const hasCode = type === IntrType.HardwareException && [8, 10, 11, 12, 13, 14, 17].includes(vector);
  if (deliver && !(protectedMode && hasCode)) return ctl("deliver-error-code set for an event without one");
  if (deliver && vmcsGet32(v, F.VM_ENTRY_EXCEPTION_ERROR_CODE) & 0xffff8000) {
    return ctl("entry exception error code bits 31:15 set");
  }
  if (type >= IntrType.SoftwareInterrupt && type <= IntrType.SoftwareException) {
    const len = vmcsGet32(v, F.VM_ENTRY_INSTRUCTION_LEN);
    if (len < 1 || len > 15) return ctl("entry instruction length not in 1..15 for a software event");
  }
  return OK;
}

export function checkHostState(v: VmcsData): CheckResult {
  const exit = vmcsGet32(v, F.VM_EXIT_CONTROLS);
  const cr0 = vmcsGet(v, F.HOST_CR0);
  const cr4 = vmcsGet(v, F.HOST_CR4);
  if ((cr0 & CR0_FIXED0) !== CR0_FIXED0 || (cr0 & ~CR0_FIXED1) !== 0n)
    return host("host CR0 violates fixed bits");
  if ((cr4 & CR4_FIXED0) !== CR4_FIXED0 || (cr4 & ~CR4_FIXED1) !== 0n)
    return host("host CR4 violates fixed bits");
  if (!physOk(vmcsGet(v, F.HOST_CR3))) return host("host CR3 beyond MAXPHYADDR");
  for (const f of [F.HOST_FS_BASE, F.HOST_GS_BASE, F.HOST_TR_BASE, F.HOST_GDTR_BASE, F.HOST_IDTR_BASE]) {
    if (!canonical(vmcsGet(v, f))) return host("host base address not canonical");
  }
  for (const f of [
    F.HOST_ES_SELECTOR,
    F.HOST_CS_SELECTOR,
    F.HOST_SS_SELECTOR,
    F.HOST_DS_SELECTOR,
    F.HOST_FS_SELECTOR,
    F.HOST_GS_SELECTOR,
    F.HOST_TR_SELECTOR,
  ]) {
    if (vmcsGet32(v, f) & 7) return host("host selector with RPL or TI set");
  }
  if (vmcsGet32(v, F.HOST_CS_SELECTOR) === 0) return host("host CS selector is 0");
  if (vmcsGet32(v, F.HOST_TR_SELECTOR) === 0) return host("host TR selector is 0");
  // the host (this TypeScript hypervisor) runs in IA-32e mode: it must return to 64-bit code
  if (!(exit & ExitCtl.HOST_ADDR_SPACE_SIZE))
    return host("host address-space size must be 1 (host in IA-32e mode)");
  if (!(cr4 & 0x20n)) return host("host CR4.PAE must be 1 with a 64-bit host");
  if (!canonical(vmcsGet(v, F.HOST_RIP))) return host("host RIP not canonical");
  if (exit & ExitCtl.LOAD_EFER) {
    const efer = vmcsGet(v, F.HOST_IA32_EFER);
    if (efer & ~0xd01n) return host("host EFER reserved bits set");
    if (((efer >> 10n) & 1n) !== 1n || ((efer >> 8n) & 1n) !== 1n) return host("host EFER.LMA/LME must be 1");
  }
  if (exit & ExitCtl.LOAD_PAT && !validPat(vmcsGet(v, F.HOST_IA32_PAT))) return host("host PAT invalid");
  return OK;
}

/** PAT memory types that may be programmed: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB, 7 UC- */
const PAT_TYPES = 0b11110011;
const validPat = (pat: bigint): boolean => {
  const halves = [Number(pat & 0xffffffffn), Number(pat >> 32n)];
  for (const half of halves) {
    for (let shift = 0; shift < 32; shift += 8) {
      const t = (half >>> shift) & 0xff;
      if (t > 7 || !((PAT_TYPES >>> t) & 1)) return false;
    }
  }
  return true;
};

// access-rights helpers
const arType = (ar: number) => ar & 0xf;
const arS = (ar: number) => (ar >>> 4) & 1;
const arDpl = (ar: number) => (ar >>> 5) & 3;
const arP = (ar: number) => (ar >>> 7) & 1;
const arL = (ar: number) => (ar >>> 13) & 1;
const arDb = (ar: number) => (ar >>> 14) & 1;
const arG = (ar: number) => (ar >>> 15) & 1;
const unusable = (ar: number) => (ar & 0x10000) !== 0;
const arReserved = (ar: number) => (ar & 0xfffe0f00) !== 0;
/** limit/G consistency: G=0 if any of limit[11:0] is 0; G=1 if any of limit[31:20] is 1 */
const granularityOk = (limit: number, ar: number): boolean =>
  ((limit & 0xfff) === 0xfff || arG(ar) === 0) && ((limit & 0xfff00000) === 0 || arG(ar) === 1);

const CONTROL_REGISTERS_KEY = {};
/** one key per mode (ug, ia32e, vm86, pe as bits 0-3): the mode is an input of checkSegments */
const SEGMENT_KEYS = Array.from({ length: 16 }, (_, m) => ({
  m,
  check: (v: VmcsData) =>
    checkSegments(v, { ug: !!(m & 1), ia32e: !!(m & 2), vm86: !!(m & 4), pe: !!(m & 8) }),
}));

const RFLAGS_KEY = {};
const SEGMENTS_KEY = {};
const TABLES_KEY = {};
const RIP_KEY = {};
const ACTIVITY_KEY = {};
const INTERRUPTIBILITY_KEY = {};
const OTHER_KEY = {};

/** the guest-state rules (SDM 26.3.1), group by group in the SDM's order */
const GUEST_GROUPS: readonly [object, (v: VmcsData) => CheckResult][] = [
  [CONTROL_REGISTERS_KEY, checkControlRegisters],
  [RFLAGS_KEY, checkRflags],
  [SEGMENTS_KEY, checkSegmentsInMode],
  [TABLES_KEY, checkTables],
  [RIP_KEY, checkRip],
  [ACTIVITY_KEY, checkActivity],
  [INTERRUPTIBILITY_KEY, checkInterruptibility],
  [OTHER_KEY, checkOther],
];

export function checkGuestState(v: VmcsData): CheckResult {
  for (const [key, check] of GUEST_GROUPS) {
    const r = memoCheck(v, key, check);
    if (r.kind !== "ok") return r;
  }
  return OK;
}

const unrestricted = (v: VmcsData): boolean => {
  const proc = vmcsGet32(v, F.CPU_BASED_VM_EXEC_CONTROL);
  const proc2 = proc & Proc.SECONDARY ? vmcsGet32(v, F.SECONDARY_VM_EXEC_CONTROL) : 0;
  return (proc2 & Proc2.UNRESTRICTED_GUEST) !== 0;
};
const ia32eGuest = (v: VmcsData): boolean => (vmcsGet32(v, F.VM_ENTRY_CONTROLS) & EntryCtl.IA32E_MODE) !== 0;
/** an event the entry injects: its interruption-information field (0: none) */
const injection = (v: VmcsData): number => {
  const info = vmcsGet32(v, F.VM_ENTRY_INTR_INFO_FIELD);
  return info & 0x80000000 ? info : 0;
};

/** the control-register and MSR rules, the first of the guest-state checks */
function checkControlRegisters(v: VmcsData): CheckResult {
  const proc = vmcsGet32(v, F.CPU_BASED_VM_EXEC_CONTROL);
  const proc2 = proc & Proc.SECONDARY ? vmcsGet32(v, F.SECONDARY_VM_EXEC_CONTROL) : 0;
  const entry = vmcsGet32(v, F.VM_ENTRY_CONTROLS);
  const ug = (proc2 & Proc2.UNRESTRICTED_GUEST) !== 0;
  const ia32e = (entry & EntryCtl.IA32E_MODE) !== 0;
  const cr0 = vmcsGet(v, F.GUEST_CR0);
  const cr4 = vmcsGet(v, F.GUEST_CR4);
  const fixed0 = ug ? CR0_FIXED0 & ~0x80000001n : CR0_FIXED0;
  if ((cr0 & fixed0) !== fixed0 || (cr0 & ~CR0_FIXED1) !== 0n) return guest("guest CR0 violates fixed bits");
  if (cr0 & 0x80000000n && !(cr0 & 1n)) return guest("guest CR0.PG=1 with CR0.PE=0");
  if ((cr4 & CR4_FIXED0) !== CR4_FIXED0 || (cr4 & ~CR4_FIXED1) !== 0n)
    return guest("guest CR4 violates fixed bits");
  if (ia32e && (!(cr0 & 0x80000000n) || !(cr4 & 0x20n)))
    return guest("IA-32e mode guest needs CR0.PG and CR4.PAE");
  if (!ia32e && cr4 & 0x20000n) return guest("CR4.PCIDE outside IA-32e mode");
  if (!physOk(vmcsGet(v, F.GUEST_CR3))) return guest("guest CR3 beyond MAXPHYADDR");
  if (entry & EntryCtl.LOAD_DEBUG && vmcsGet(v, F.GUEST_DR7) >> 32n) return guest("guest DR7 bits 63:32 set");
  if (entry & EntryCtl.LOAD_PAT && !validPat(vmcsGet(v, F.GUEST_IA32_PAT))) return guest("guest PAT invalid");
  if (entry & EntryCtl.LOAD_EFER) {
    const efer = vmcsGet(v, F.GUEST_IA32_EFER);
    const lma = (efer >> 10n) & 1n;
    if (efer & ~0xd01n) return guest("guest EFER reserved bits set");
    if (lma !== (ia32e ? 1n : 0n)) return guest("guest EFER.LMA differs from the IA-32e mode guest control");
    if (cr0 & 0x80000000n && lma !== ((efer >> 8n) & 1n))
      return guest("guest EFER.LMA != LME with paging on");
  }
  return OK;
}

function checkRflags(v: VmcsData): CheckResult {
  const rflags = vmcsGet(v, F.GUEST_RFLAGS);
  if (rflags & 0xffffffffffc08028n || !(rflags & 2n)) return guest("guest RFLAGS reserved bits wrong");
  if (rflags & 0x20000n && (ia32eGuest(v) || !(vmcsGet(v, F.GUEST_CR0) & 1n)))
    return guest("RFLAGS.VM with IA-32e mode or CR0.PE=0");
  const intrInfo = injection(v);
  if (intrInfo && ((intrInfo >>> 8) & 7) === IntrType.External && !(rflags & 0x200n)) {
    return guest("injecting an external interrupt with RFLAGS.IF=0");
  }
  return OK;
}

function checkSegmentsInMode(v: VmcsData): CheckResult {
  const vm86 = (vmcsGet(v, F.GUEST_RFLAGS) & 0x20000n) !== 0n;
  const pe = (vmcsGet(v, F.GUEST_CR0) & 1n) === 1n;
  const mode = (unrestricted(v) ? 1 : 0) | (ia32eGuest(v) ? 2 : 0) | (vm86 ? 4 : 0) | (pe ? 8 : 0);
  const segKey = SEGMENT_KEYS[mode]!;
  return memoCheck(v, segKey, segKey.check);
}

function checkTables(v: VmcsData): CheckResult {
  for (const f of [F.GUEST_GDTR_BASE, F.GUEST_IDTR_BASE]) {
    if (!canonical(vmcsGet(v, f))) return guest("GDTR/IDTR base not canonical");
  }
  for (const f of [F.GUEST_GDTR_LIMIT, F.GUEST_IDTR_LIMIT]) {
    if (vmcsGet32(v, f) & 0xffff0000) return guest("GDTR/IDTR limit bits 31:16 set");
  }
  return OK;
}

function checkRip(v: VmcsData): CheckResult {
  const ia32e = ia32eGuest(v);
  // bits 63:32 as a number: this group runs again at most entries (the host moves RIP)
  const ripHigh = v.getHigh(RIP_FIELD);
  const csL = arL(vmcsGet32(v, F.GUEST_CS_AR_BYTES));
  if ((!ia32e || !csL) && ripHigh !== 0) return guest("guest RIP bits 63:32 set outside 64-bit mode");
  // canonical: bits 63:47 all equal
  const top = ripHigh >>> 15;
  if (ia32e && csL && top !== 0 && top !== 0x1ffff) return guest("guest RIP not canonical");
  return OK;
}

/**
 * SDM 26.3.1.5: the states IA32_VMX_MISC[8:6] reports (HLT, shutdown, wait-for-SIPI), and no
 * injection of an event the state would block
 */
function checkActivity(v: VmcsData): CheckResult {
  const activity = vmcsGet32(v, F.GUEST_ACTIVITY_STATE);
  if (activity > 3) return guest("activity state not supported (IA32_VMX_MISC reports states 0-3)");
  if (activity === 1 && arDpl(vmcsGet32(v, F.GUEST_SS_AR_BYTES)) !== 0)
    return guest("HLT activity with SS.DPL != 0");
  const intrInfo = injection(v);
  if (intrInfo && activity !== 0) {
    const injType = (intrInfo >>> 8) & 7;
    const vector = intrInfo & 0xff;
    const machineCheck = injType === IntrType.HardwareException && vector === 18;
    if (activity === 1) {
      const allowed =
        injType === IntrType.External ||
        injType === IntrType.Nmi ||
        machineCheck ||
        (injType === IntrType.HardwareException && vector === 1);
      if (!allowed) return guest("event not injectable in HLT activity state");
    } else if (activity === 2) {
      if (injType !== IntrType.Nmi && !machineCheck)
        return guest("event other than NMI or #MC injected in shutdown activity state");
    } else return guest("event injection in wait-for-SIPI activity state");
  }
  return OK;
}

function checkInterruptibility(v: VmcsData): CheckResult {
  const intr = vmcsGet32(v, F.GUEST_INTERRUPTIBILITY_INFO);
  if (intr & 0xffffffe0) return guest("interruptibility reserved bits set");
  if ((intr & 3) === 3) return guest("blocking by both STI and MOV SS");
  if (intr & 1 && !(vmcsGet(v, F.GUEST_RFLAGS) & 0x200n)) return guest("blocking by STI with RFLAGS.IF=0");
  if (intr & 4) return guest("blocking by SMI outside SMM");
  const intrInfo = injection(v);
  const injType = (intrInfo >>> 8) & 7;
  if (intrInfo && injType === IntrType.External && intr & 3) {
    return guest("injecting an external interrupt while blocked by STI or MOV SS");
  }
  if (intrInfo && injType === IntrType.Nmi && intr & 2)
    return guest("injecting an NMI while blocked by MOV SS");
  if (intr & 3 && vmcsGet32(v, F.GUEST_ACTIVITY_STATE) !== 0)
    return guest("inactive activity state with STI/MOV SS blocking");
  return OK;
}

function checkOther(v: VmcsData): CheckResult {
  const pend = vmcsGet(v, F.GUEST_PENDING_DBG_EXCEPTIONS);
  if (pend & ~0x1500fn) return guest("pending debug exceptions reserved bits set");
  if (vmcsGet(v, F.VMCS_LINK_POINTER) !== 0xffffffffffffffffn)
    return guest("VMCS link pointer is not all-ones", 4);
  return OK;
}

interface Mode {
  ug: boolean;
  ia32e: boolean;
  vm86: boolean;
  pe: boolean;
}

const SEG_FIELDS = [
  ["ES", F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
  ["CS", F.GUEST_CS_SELECTOR, F.GUEST_CS_BASE, F.GUEST_CS_LIMIT, F.GUEST_CS_AR_BYTES],
  ["SS", F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
  ["DS", F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
  ["FS", F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
  ["GS", F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
] as const;

function checkSegments(v: VmcsData, m: Mode): CheckResult {
  const tr = vmcsGet32(v, F.GUEST_TR_AR_BYTES);
  const trSel = vmcsGet32(v, F.GUEST_TR_SELECTOR);
  if (trSel & 4) return guest("TR selector TI set");
  if (!canonical(vmcsGet(v, F.GUEST_TR_BASE))) return guest("TR base not canonical");
  if (unusable(tr)) return guest("TR unusable");
  if (arType(tr) !== 11 && (m.ia32e || arType(tr) !== 3)) return guest("TR type not busy TSS");
  if (arS(tr) || !arP(tr) || arReserved(tr)) return guest("TR access rights invalid");
  if (!granularityOk(vmcsGet32(v, F.GUEST_TR_LIMIT), tr)) return guest("TR limit/granularity inconsistent");
  const ldtr = vmcsGet32(v, F.GUEST_LDTR_AR_BYTES);
  if (!unusable(ldtr)) {
    if (vmcsGet32(v, F.GUEST_LDTR_SELECTOR) & 4) return guest("LDTR selector TI set");
    if (!canonical(vmcsGet(v, F.GUEST_LDTR_BASE))) return guest("LDTR base not canonical");
    if (arType(ldtr) !== 2 || arS(ldtr) || !arP(ldtr) || arReserved(ldtr))
      return guest("LDTR access rights invalid");
    if (!granularityOk(vmcsGet32(v, F.GUEST_LDTR_LIMIT), ldtr))
      return guest("LDTR limit/granularity inconsistent");
  }
  for (const [name, selF, baseF, limitF, arF] of SEG_FIELDS) {
    const sel = vmcsGet32(v, selF);
    const base = vmcsGet(v, baseF);
    const limit = vmcsGet32(v, limitF);
    const ar = vmcsGet32(v, arF);
    if (m.vm86) {
      if (base !== BigInt(sel << 4)) return guest(`${name} base != selector*16 in virtual-8086 mode`);
      if (limit !== 0xffff) return guest(`${name} limit != 0xFFFF in virtual-8086 mode`);
      if (ar !== 0xf3) return guest(`${name} access rights != 0xF3 in virtual-8086 mode`);
      continue;
    }
    if ((name === "FS" || name === "GS") && !canonical(base)) return guest(`${name} base not canonical`);
    if (name === "CS" && base >> 32n) return guest("CS base bits 63:32 set");
    if ((name === "SS" || name === "DS" || name === "ES") && !unusable(ar) && base >> 32n) {
      return guest(`${name} base bits 63:32 set`);
    }
    if (name === "CS") {
      if (unusable(ar)) return guest("CS unusable");
      const t = arType(ar);
      if (![9, 11, 13, 15].includes(t) && !(m.ug && t === 3)) return guest("CS type invalid");
      if (!arS(ar) || !arP(ar) || arReserved(ar)) return guest("CS access rights invalid");
      const ssDpl = arDpl(vmcsGet32(v, F.GUEST_SS_AR_BYTES));
      if (t === 3 && arDpl(ar) !== 0) return guest("CS DPL must be 0 for a data-type CS");
      if ((t === 9 || t === 11) && arDpl(ar) !== ssDpl) return guest("non-conforming CS DPL != SS DPL");
      if ((t === 13 || t === 15) && arDpl(ar) > ssDpl) return guest("conforming CS DPL > SS DPL");
      if (m.ia32e && arL(ar) && arDb(ar)) return guest("CS.L and CS.D both set");
      if (!granularityOk(limit, ar)) return guest("CS limit/granularity inconsistent");
      continue;
    }
    if (name === "SS") {
      if (!m.ug && (sel & 3) !== (vmcsGet32(v, F.GUEST_CS_SELECTOR) & 3)) return guest("SS.RPL != CS.RPL");
      const csType = arType(vmcsGet32(v, F.GUEST_CS_AR_BYTES));
      if ((csType === 3 || !m.pe) && arDpl(ar) !== 0)
        return guest("SS DPL must be 0 with a data CS or CR0.PE=0");
      if (unusable(ar)) continue;
      if (arType(ar) !== 3 && arType(ar) !== 7) return guest("SS type invalid");
      if (!arS(ar) || !arP(ar) || arReserved(ar)) return guest("SS access rights invalid");
      if (!granularityOk(limit, ar)) return guest("SS limit/granularity inconsistent");
      continue;
    }
    if (unusable(ar)) continue;
    const t = arType(ar);
    if (!(t & 1)) return guest(`${name} type not accessed`);
    if (t & 8 && !(t & 2)) return guest(`${name} is an unreadable code segment`);
    if (!arS(ar) || !arP(ar) || arReserved(ar)) return guest(`${name} access rights invalid`);
    if (!granularityOk(limit, ar)) return guest(`${name} limit/granularity inconsistent`);
  }
  return OK;
}
