// Moving guest state between the VMCS guest-state area and the interpreter: loaded by VM entry,
// saved by VM exit (SDM 26.3.2, 27.3). General registers other than RSP are not in the VMCS: they
// stay in the processor across exits, where the host (hypervisor) saves and restores them.
//
// A VM exit saves nothing at once: the state stays in the interpreter and each slot is synced when
// something reads it (syncSlot, through VmcsData's live state), and the next entry loads only the
// groups whose slots VMWRITE changed (or that the exit did not save). Same values as saving and
// loading everything, for the fields anyone looks at.

import { type ControlRegister, type GuestCpu, Seg, type SysenterRegister } from "../cpu/guest-cpu.js";
import { EntryCtl, ExitCtl } from "./constants.js";
import { F, FIELDS, type FieldInfo, fieldByEncoding } from "./fields.js";
import type { VmcsData } from "./vmcs.js";

// Field descriptors resolved once: no lookup by encoding on the entry and exit paths.
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
/** the slot's bits as the data holds them (no sync: a saver reads the host-owned CR bits there) */
const rawGet = (v: VmcsData, f: FieldInfo): bigint => (BigInt(v.hi[f.slot]!) << 32n) | BigInt(v.lo[f.slot]!);

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

// --- VM exit: what each saved slot holds, read from the interpreter -----------------------------

type Saver = (cpu: GuestCpu, v: VmcsData) => void;
/** by slot: how a VM exit saves that field (undefined: the exit does not save it) */
const SAVERS: (Saver | undefined)[] = FIELDS.map(() => undefined);
const saver = (f: FieldInfo, save: Saver): void => {
  SAVERS[f.slot] = save;
};
// host-owned bits keep the VMCS's value, the rest are the guest's
saver(G.GUEST_CR0, (cpu, v) => {
  const mask = rawGet(v, G.CR0_GUEST_HOST_MASK);
  vmcsSet(v, G.GUEST_CR0, (cpu.getControl("cr0") & ~mask) | (rawGet(v, G.GUEST_CR0) & mask));
});
saver(G.GUEST_CR4, (cpu, v) => {
  const mask = rawGet(v, G.CR4_GUEST_HOST_MASK);
  vmcsSet(v, G.GUEST_CR4, (cpu.getControl("cr4") & ~mask) | (rawGet(v, G.GUEST_CR4) & mask));
});
saver(G.GUEST_CR3, (cpu, v) => vmcsSet(v, G.GUEST_CR3, cpu.getControl("cr3")));
saver(G.GUEST_DR7, (cpu, v) => vmcsSet(v, G.GUEST_DR7, cpu.getControl("dr7")));
saver(G.GUEST_IA32_DEBUGCTL, (cpu, v) => vmcsSet(v, G.GUEST_IA32_DEBUGCTL, cpu.getControl("debugctl")));
saver(G.GUEST_IA32_EFER, (cpu, v) => vmcsSet(v, G.GUEST_IA32_EFER, cpu.getControl("efer")));
saver(G.GUEST_IA32_PAT, (cpu, v) => vmcsSet(v, G.GUEST_IA32_PAT, cpu.getControl("pat")));
saver(G.GUEST_SYSENTER_CS, (cpu, v) => vmcsSet(v, G.GUEST_SYSENTER_CS, cpu.getControl("sysenter_cs")));
saver(G.GUEST_SYSENTER_ESP, (cpu, v) => vmcsSet(v, G.GUEST_SYSENTER_ESP, cpu.getControl("sysenter_esp")));
saver(G.GUEST_SYSENTER_EIP, (cpu, v) => vmcsSet(v, G.GUEST_SYSENTER_EIP, cpu.getControl("sysenter_eip")));
for (const [seg, sel, base, limit, ar] of SEGS) {
  saver(sel, (cpu, v) => vmcsSet(v, sel, cpu.getSegment(seg).selector));
  saver(base, (cpu, v) => vmcsSet(v, base, cpu.getSegment(seg).base));
  saver(limit, (cpu, v) => vmcsSet(v, limit, cpu.getSegment(seg).limit));
  saver(ar, (cpu, v) => v.setNumber(ar, cpu.getSegmentAr(seg)));
}
saver(G.GUEST_GDTR_BASE, (cpu, v) => vmcsSet(v, G.GUEST_GDTR_BASE, cpu.getGdtr().base));
saver(G.GUEST_GDTR_LIMIT, (cpu, v) => vmcsSet(v, G.GUEST_GDTR_LIMIT, cpu.getGdtr().limit));
saver(G.GUEST_IDTR_BASE, (cpu, v) => vmcsSet(v, G.GUEST_IDTR_BASE, cpu.getIdtr().base));
saver(G.GUEST_IDTR_LIMIT, (cpu, v) => vmcsSet(v, G.GUEST_IDTR_LIMIT, cpu.getIdtr().limit));
saver(G.GUEST_RSP, (cpu, v) => vmcsSet(v, G.GUEST_RSP, cpu.getGpr(4)));
saver(G.GUEST_RIP, (cpu, v) => v.setSigned(G.GUEST_RIP, cpu.getRipNumber()));
saver(G.GUEST_RFLAGS, (cpu, v) => v.setNumber(G.GUEST_RFLAGS, cpu.getRflagsNumber()));
saver(G.GUEST_INTERRUPTIBILITY_INFO, (cpu, v) =>
  vmcsSet(v, G.GUEST_INTERRUPTIBILITY_INFO, cpu.interruptibility),
);
saver(G.GUEST_ACTIVITY_STATE, (cpu, v) => vmcsSet(v, G.GUEST_ACTIVITY_STATE, cpu.activity));

const OPTIONAL_SAVES: readonly [number, readonly FieldInfo[]][] = [
  [ExitCtl.SAVE_DEBUG, [G.GUEST_DR7, G.GUEST_IA32_DEBUGCTL]],
  [ExitCtl.SAVE_EFER, [G.GUEST_IA32_EFER]],
  [ExitCtl.SAVE_PAT, [G.GUEST_IA32_PAT]],
];
const OPTIONAL_SLOTS = new Set(OPTIONAL_SAVES.flatMap(([, fs]) => fs.map((f) => f.slot)));
/** the slots an exit saves, by the exit controls' save-debug/EFER/PAT bits (index: bit k = kth of OPTIONAL_SAVES) */
const SAVED_SETS: readonly Uint8Array[] = Array.from({ length: 1 << OPTIONAL_SAVES.length }, (_, k) => {
  const set = new Uint8Array(FIELDS.length);
  SAVERS.forEach((s, slot) => {
    if (s !== undefined && !OPTIONAL_SLOTS.has(slot)) set[slot] = 1;
  });
  OPTIONAL_SAVES.forEach(([, fs], i) => {
    if ((k >> i) & 1) for (const f of fs) set[f.slot] = 1;
  });
  return set;
});

/** the guest-state slots a VM exit with these exit controls saves */
export function savedSlots(exitControls: number): Uint8Array {
  let k = 0;
  OPTIONAL_SAVES.forEach(([bit], i) => {
    if (exitControls & bit) k |= 1 << i;
  });
  return SAVED_SETS[k]!;
}

/** syncs one saved slot from the interpreter (the VmcsData's live state, LiveGuest.sync) */
export function syncSlot(cpu: GuestCpu, v: VmcsData, slot: number): void {
  SAVERS[slot]!(cpu, v);
}

/**
 * The part of a VM exit's saving that is done at once: IA32_VMX_MISC bit 5, the IA-32e mode guest
 * entry control records EFER.LMA on every exit (a control the next entry and its checks read).
 * The rest stays in the interpreter (VmcsData.leaveLive).
 */
export function saveEntryMode(cpu: GuestCpu, v: VmcsData): void {
  const entry = vmcsGet32(v, G.VM_ENTRY_CONTROLS);
  const lma = (cpu.getControl("efer") & EFER_LMA) !== 0n;
  const next = lma ? entry | EntryCtl.IA32E_MODE : entry & ~EntryCtl.IA32E_MODE;
  if (next !== entry) vmcsSet(v, G.VM_ENTRY_CONTROLS, next >>> 0);
}

/** VM exit saving everything now (tests, and anything that wants the data area complete) */
export function saveGuestState(cpu: GuestCpu, v: VmcsData): void {
  const saved = savedSlots(vmcsGet32(v, G.VM_EXIT_CONTROLS));
  for (let slot = 0; slot < saved.length; slot++) if (saved[slot] === 1) SAVERS[slot]!(cpu, v);
  saveEntryMode(cpu, v);
}

// --- VM entry: groups of fields loaded together, in the order VM entry loads them ----------------

interface LoadGroup {
  /** the fields this group loads (and those its value depends on, as the CR masks) */
  slots: readonly number[];
  /** entry controls under which the group loads (0: always) */
  when: number;
  load(cpu: GuestCpu, v: VmcsData, entry: number): void;
}

const group = (fields: readonly FieldInfo[], when: number, load: LoadGroup["load"]): LoadGroup => ({
  slots: fields.map((f) => f.slot),
  when,
  load,
});

const LOAD_GROUPS: readonly LoadGroup[] = [
  group([G.GUEST_CR0, G.CR0_GUEST_HOST_MASK, G.CR0_READ_SHADOW], 0, (cpu, v) =>
    setControl(
      cpu,
      "cr0",
      guestView(vmcsGet(v, G.GUEST_CR0), vmcsGet(v, G.CR0_GUEST_HOST_MASK), vmcsGet(v, G.CR0_READ_SHADOW)),
    ),
  ),
  group([G.GUEST_CR4, G.CR4_GUEST_HOST_MASK, G.CR4_READ_SHADOW], 0, (cpu, v) =>
    setControl(
      cpu,
      "cr4",
      guestView(vmcsGet(v, G.GUEST_CR4), vmcsGet(v, G.CR4_GUEST_HOST_MASK), vmcsGet(v, G.CR4_READ_SHADOW)),
    ),
  ),
  group([G.GUEST_CR3], 0, (cpu, v) => setControl(cpu, "cr3", vmcsGet(v, G.GUEST_CR3))),
  group([G.GUEST_DR7, G.GUEST_IA32_DEBUGCTL], EntryCtl.LOAD_DEBUG, (cpu, v) => {
    setControl(cpu, "dr7", vmcsGet(v, G.GUEST_DR7));
    setControl(cpu, "debugctl", vmcsGet(v, G.GUEST_IA32_DEBUGCTL));
  }),
  group([G.GUEST_IA32_EFER], EntryCtl.LOAD_EFER, (cpu, v) =>
    setControl(cpu, "efer", vmcsGet(v, G.GUEST_IA32_EFER)),
  ),
  group([G.GUEST_IA32_PAT], EntryCtl.LOAD_PAT, (cpu, v) =>
    setControl(cpu, "pat", vmcsGet(v, G.GUEST_IA32_PAT)),
  ),
  group([G.GUEST_SYSENTER_CS], 0, (cpu, v) =>
    setControl(cpu, "sysenter_cs", vmcsGet(v, G.GUEST_SYSENTER_CS)),
  ),
  group([G.GUEST_SYSENTER_ESP], 0, (cpu, v) =>
    setControl(cpu, "sysenter_esp", vmcsGet(v, G.GUEST_SYSENTER_ESP)),
  ),
  group([G.GUEST_SYSENTER_EIP], 0, (cpu, v) =>
    setControl(cpu, "sysenter_eip", vmcsGet(v, G.GUEST_SYSENTER_EIP)),
  ),
  ...SEGS.map(([seg, sel, base, limit, ar]) =>
    group([sel, base, limit, ar], 0, (cpu, v) =>
      cpu.setSegment(seg, {
        selector: vmcsGet32(v, sel),
        base: vmcsGet(v, base),
        limit: vmcsGet32(v, limit),
        ar: vmcsGet32(v, ar),
      }),
    ),
  ),
  group([G.GUEST_GDTR_BASE, G.GUEST_GDTR_LIMIT], 0, (cpu, v) =>
    cpu.setGdtr({ base: vmcsGet(v, G.GUEST_GDTR_BASE), limit: vmcsGet32(v, G.GUEST_GDTR_LIMIT) }),
  ),
  group([G.GUEST_IDTR_BASE, G.GUEST_IDTR_LIMIT], 0, (cpu, v) =>
    cpu.setIdtr({ base: vmcsGet(v, G.GUEST_IDTR_BASE), limit: vmcsGet32(v, G.GUEST_IDTR_LIMIT) }),
  ),
  group([G.GUEST_RSP], 0, (cpu, v) => cpu.setGpr(4, vmcsGet(v, G.GUEST_RSP))),
  // the entry checks passed: RIP is canonical, or its bits 63:32 are 0 (exact as a number)
  group([G.GUEST_RIP], 0, (cpu, v) => cpu.setRipNumber(v.getSigned(G.GUEST_RIP))),
  group([G.GUEST_RFLAGS], 0, (cpu, v) => cpu.setRflags(vmcsGet(v, G.GUEST_RFLAGS))),
  group([G.GUEST_INTERRUPTIBILITY_INFO], 0, (cpu, v) => {
    cpu.interruptibility = vmcsGet32(v, G.GUEST_INTERRUPTIBILITY_INFO);
  }),
  group([G.GUEST_ACTIVITY_STATE], 0, (cpu, v) => {
    cpu.activity = vmcsGet32(v, G.GUEST_ACTIVITY_STATE);
  }),
];

/** without "load IA32_EFER", LMA and LME follow the IA-32e mode guest control (SDM 26.3.2.1) */
function eferFromEntryControls(cpu: GuestCpu, entry: number): void {
  const ia32e = (entry & EntryCtl.IA32E_MODE) !== 0;
  const efer = cpu.getControl("efer") & ~(EFER_LMA | EFER_LME);
  setControl(cpu, "efer", ia32e ? efer | EFER_LMA | EFER_LME : efer);
}

/**
 * VM entry's loading of the guest-state area into the interpreter. With the guest state live in
 * this interpreter (`live`: it holds what the last exit saved), only the groups with a slot
 * VMWRITE changed since, or one that exit did not save, are loaded; otherwise all of them.
 */
export function loadGuestState(cpu: GuestCpu, v: VmcsData, live = false): void {
  const entry = vmcsGet32(v, G.VM_ENTRY_CONTROLS);
  const written = v.written;
  const saved = v.saved;
  for (const g of LOAD_GROUPS) {
    if (g.when !== 0) {
      if ((entry & g.when) === 0) {
        if (g.when === EntryCtl.LOAD_EFER) eferFromEntryControls(cpu, entry);
        continue;
      }
    }
    if (live) {
      let changed = false;
      for (const s of g.slots) {
        if (written[s] === 1 || (saved[s] === 0 && SAVERS[s] !== undefined)) {
          changed = true;
          break;
        }
      }
      if (!changed) continue;
    }
    g.load(cpu, v, entry);
  }
}
