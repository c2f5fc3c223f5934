// A valid VMCS for tests: a 64-bit host, a flat 32-bit protected-mode guest (or real mode with
// unrestricted guest), controls adjusted to the capability MSRs.

import type { GuestCpu } from "../../lib/cpu/guest-cpu.js";
import {
  adjustControls,
  ENTRY_CAPS,
  EptBuilder,
  EXIT_CAPS,
  ExitCtl,
  F,
  HostMemory,
  LogicalProcessor,
  PIN_CAPS,
  PROC_CAPS,
  PROC2_CAPS,
  Proc,
  Proc2,
  VMCS_REVISION_ID,
} from "../../lib/vmx/index.js";
import { FakeCpu } from "./fake-cpu.js";

export function newRegion(mem: HostMemory, revision = VMCS_REVISION_ID): number {
  const hpa = mem.allocatePage();
  mem.writeU32(hpa, revision);
  return hpa;
}

export interface Rig {
  mem: HostMemory;
  cpu: FakeCpu;
  lp: LogicalProcessor;
  vmxon: number;
  vmcs: number;
  ept: EptBuilder;
}

export interface RigOptions {
  realMode?: boolean;
  proc?: number;
  proc2?: number;
  pin?: number;
}

export function rig(opts: RigOptions = {}): Rig {
  return rigWith(new FakeCpu(), opts);
}

export function rigWith<C extends GuestCpu>(cpu: C, opts: RigOptions = {}): Omit<Rig, "cpu"> & { cpu: C } {
  const mem = new HostMemory();
  const lp = new LogicalProcessor({ memory: mem, cpu });
  const vmxon = newRegion(mem);
  const vmcs = newRegion(mem);
  lp.vmxon(vmxon);
  lp.vmclear(vmcs);
  lp.vmptrld(vmcs);
  const ept = new EptBuilder(mem);
  writeHostState(lp);
  writeControls(lp, ept, opts);
  if (opts.realMode) writeRealModeGuest(lp);
  else writeFlatGuest(lp);
  return { mem, cpu, lp, vmxon, vmcs, ept };
}

export function writeHostState(lp: LogicalProcessor): void {
  lp.vmwrite(F.HOST_CR0, 0x80000031n);
  lp.vmwrite(F.HOST_CR4, 0x2020n);
  lp.vmwrite(F.HOST_CR3, 0x1000n);
  lp.vmwrite(F.HOST_CS_SELECTOR, 0x08);
  lp.vmwrite(F.HOST_SS_SELECTOR, 0x10);
  lp.vmwrite(F.HOST_TR_SELECTOR, 0x18);
  lp.vmwrite(F.HOST_RIP, 0xffffffff81000000n);
  lp.vmwrite(F.HOST_RSP, 0xffffffff81100000n);
}

export function writeControls(
  lp: LogicalProcessor,
  ept: EptBuilder,
  opts: { realMode?: boolean; proc?: number; proc2?: number; pin?: number },
): void {
  lp.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, adjustControls(opts.pin ?? 0, PIN_CAPS));
  const proc2 = (opts.proc2 ?? 0) | (opts.realMode ? Proc2.EPT | Proc2.UNRESTRICTED_GUEST : 0);
  lp.vmwrite(
    F.CPU_BASED_VM_EXEC_CONTROL,
    adjustControls((opts.proc ?? Proc.HLT) | (proc2 ? Proc.SECONDARY : 0), PROC_CAPS) &
      ~((Proc.CR3_LOAD | Proc.CR3_STORE) & ~(opts.proc ?? 0)),
  );
  lp.vmwrite(F.SECONDARY_VM_EXEC_CONTROL, adjustControls(proc2, PROC2_CAPS));
  lp.vmwrite(F.VM_EXIT_CONTROLS, adjustControls(ExitCtl.HOST_ADDR_SPACE_SIZE, EXIT_CAPS));
  lp.vmwrite(F.VM_ENTRY_CONTROLS, adjustControls(0, ENTRY_CAPS));
  lp.vmwrite(F.EPT_POINTER, ept.eptp);
  lp.vmwrite(F.VMCS_LINK_POINTER, 0xffffffffffffffffn);
}

const CODE32 = 0xc09b; // present, S, type 11, D, G
const DATA32 = 0xc093;

export function writeFlatGuest(lp: LogicalProcessor): void {
  lp.vmwrite(F.GUEST_CR4, 0x2000n);
  lp.vmwrite(F.GUEST_CR0, 0x80000031n);
  for (const [sel, base, limit, ar] of [
    [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
    [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
    [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
    [F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
    [F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
  ] as const) {
    lp.vmwrite(sel, 0x10);
    lp.vmwrite(base, 0);
    lp.vmwrite(limit, 0xffffffff);
    lp.vmwrite(ar, DATA32);
  }
  lp.vmwrite(F.GUEST_CS_SELECTOR, 0x08);
  lp.vmwrite(F.GUEST_CS_LIMIT, 0xffffffff);
  lp.vmwrite(F.GUEST_CS_AR_BYTES, CODE32);
  writeSystemSegments(lp);
  lp.vmwrite(F.GUEST_RFLAGS, 2);
  lp.vmwrite(F.GUEST_RIP, 0);
}

export function writeRealModeGuest(lp: LogicalProcessor): void {
  lp.vmwrite(F.GUEST_CR0, 0x20n);
  lp.vmwrite(F.GUEST_CR4, 0x2000n);
  for (const [sel, base, limit, ar] of [
    [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
    [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
    [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
    [F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
    [F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
  ] as const) {
    lp.vmwrite(sel, 0);
    lp.vmwrite(base, 0);
    lp.vmwrite(limit, 0xffff);
    lp.vmwrite(ar, 0x93);
  }
  lp.vmwrite(F.GUEST_CS_SELECTOR, 0);
  lp.vmwrite(F.GUEST_CS_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_CS_AR_BYTES, 0x9b);
  writeSystemSegments(lp);
  lp.vmwrite(F.GUEST_RFLAGS, 2);
  lp.vmwrite(F.GUEST_RIP, 0);
}

function writeSystemSegments(lp: LogicalProcessor): void {
  lp.vmwrite(F.GUEST_TR_AR_BYTES, 0x8b);
  lp.vmwrite(F.GUEST_TR_LIMIT, 0x67);
  lp.vmwrite(F.GUEST_LDTR_AR_BYTES, 0x10000);
  lp.vmwrite(F.GUEST_GDTR_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_IDTR_LIMIT, 0xffff);
}
