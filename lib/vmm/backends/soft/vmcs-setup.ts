// The soft hypervisor's VMCS: the controls it runs guests with and the reset-state guest (x86
// power-on state, as KVM presents a new vCPU: real mode at F000:FFF0).

import {
  Activity,
  adjustControls,
  ENTRY_CAPS,
  EntryCtl,
  EXIT_CAPS,
  ExitCtl,
  F,
  type LogicalProcessor,
  PIN_CAPS,
  Pin,
  PROC_CAPS,
  PROC2_CAPS,
  Proc,
  Proc2,
  TRUE_PROC_CAPS,
} from "../../../vmx/index.js";

/** CR0.NE and CR4.VMXE must be 1 in VMX operation: the host owns them and shows the guest its own. */
export const CR0_OWNED = 0x20n;
export const CR4_OWNED = 0x2000n;

export interface SoftVmcsPages {
  ioBitmapA: number;
  ioBitmapB: number;
  msrBitmap: number;
  eptp: bigint;
  /** vCPUs of the machine: with several, a guest spinning on PAUSE gives the others its turn */
  vcpus: number;
  /** each vCPU runs in a thread of its own: spinning gives no one a turn, so PAUSE never exits */
  ownThreads?: boolean;
}

/**
 * PAUSE-loop exiting, in our TSC (retired instructions): PAUSEs at most 128 instructions apart are
 * a loop (KVM's ple_gap), and one that has spun for 512 instructions exits so that the loop runs
 * another vCPU. KVM's window is 4096 cycles, about a microsecond; spin loops run a few million
 * instructions per second here, so the same wait is a few hundred instructions.
 */
const PLE_GAP = 128;
const PLE_WINDOW = 512;

export function writeControls(lp: LogicalProcessor, pages: SoftVmcsPages): void {
  // the host's own interrupts (its slice timer, kicks) end non-root operation, as on KVM
  lp.vmwrite(
    F.PIN_BASED_VM_EXEC_CONTROL,
    adjustControls(Pin.PREEMPTION_TIMER | Pin.EXTERNAL_INTERRUPT, PIN_CAPS),
  );
  const proc =
    adjustControls(
      // CR8 is the local APIC's TPR: its moves exit so the host keeps the two as one register
      Proc.HLT | Proc.USE_IO_BITMAPS | Proc.USE_MSR_BITMAPS | Proc.SECONDARY | Proc.CR8_LOAD | Proc.CR8_STORE,
      PROC_CAPS,
    ) & ~((Proc.CR3_LOAD | Proc.CR3_STORE) & ~TRUE_PROC_CAPS.mustBeOne);
  lp.vmwrite(F.CPU_BASED_VM_EXEC_CONTROL, proc >>> 0);
  const pauseLoop = pages.vcpus > 1 && !pages.ownThreads ? Proc2.PAUSE_LOOP : 0;
  // INVPCID runs in the guest as CPUID offers it (otherwise it is #UD in non-root operation); it
  // does not exit, as INVLPG exiting is off
  lp.vmwrite(
    F.SECONDARY_VM_EXEC_CONTROL,
    adjustControls(
      Proc2.EPT | Proc2.UNRESTRICTED_GUEST | Proc2.RDTSCP | Proc2.VPID | Proc2.INVPCID | pauseLoop,
      PROC2_CAPS,
    ),
  );
  lp.vmwrite(F.PLE_GAP, PLE_GAP);
  lp.vmwrite(F.PLE_WINDOW, PLE_WINDOW);
  lp.vmwrite(F.VPID, 1);
  lp.vmwrite(
    F.VM_EXIT_CONTROLS,
    adjustControls(
      ExitCtl.HOST_ADDR_SPACE_SIZE |
        ExitCtl.SAVE_EFER |
        ExitCtl.SAVE_PAT |
        ExitCtl.SAVE_DEBUG |
        ExitCtl.ACK_INTR_ON_EXIT,
      EXIT_CAPS,
    ),
  );
  lp.vmwrite(
    F.VM_ENTRY_CONTROLS,
    adjustControls(EntryCtl.LOAD_EFER | EntryCtl.LOAD_PAT | EntryCtl.LOAD_DEBUG, ENTRY_CAPS),
  );
  lp.vmwrite(F.IO_BITMAP_A, pages.ioBitmapA);
  lp.vmwrite(F.IO_BITMAP_B, pages.ioBitmapB);
  lp.vmwrite(F.MSR_BITMAP, pages.msrBitmap);
  lp.vmwrite(F.EPT_POINTER, pages.eptp);
  lp.vmwrite(F.VMCS_LINK_POINTER, 0xffffffffffffffffn);
  lp.vmwrite(F.CR0_GUEST_HOST_MASK, CR0_OWNED);
  lp.vmwrite(F.CR4_GUEST_HOST_MASK, CR4_OWNED);
  lp.vmwrite(F.EXCEPTION_BITMAP, 0);
}

/** The host side: a 64-bit host (this process) resuming at an arbitrary canonical RIP. */
export function writeHostState(lp: LogicalProcessor): void {
  lp.vmwrite(F.HOST_CR0, 0x80050033n);
  lp.vmwrite(F.HOST_CR4, 0x22a0n);
  lp.vmwrite(F.HOST_CR3, 0x1000n);
  lp.vmwrite(F.HOST_CS_SELECTOR, 0x10);
  lp.vmwrite(F.HOST_SS_SELECTOR, 0x18);
  lp.vmwrite(F.HOST_DS_SELECTOR, 0x18);
  lp.vmwrite(F.HOST_ES_SELECTOR, 0x18);
  lp.vmwrite(F.HOST_TR_SELECTOR, 0x40);
  lp.vmwrite(F.HOST_RIP, 0xffffffff81000000n);
  lp.vmwrite(F.HOST_RSP, 0xffffc90000000000n);
}

const SEGMENTS = [
  [F.GUEST_ES_SELECTOR, F.GUEST_ES_BASE, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
  [F.GUEST_SS_SELECTOR, F.GUEST_SS_BASE, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
  [F.GUEST_DS_SELECTOR, F.GUEST_DS_BASE, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
  [F.GUEST_FS_SELECTOR, F.GUEST_FS_BASE, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
  [F.GUEST_GS_SELECTOR, F.GUEST_GS_BASE, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
] as const;

/** Power-on state: real mode, CS:IP = F000:FFF0 with CS.base = 0xFFFF0000. */
export function writeResetGuest(lp: LogicalProcessor): void {
  writeRealModeState(lp, 0x60000010n);
  lp.vmwrite(F.GUEST_IA32_PAT, 0x0007040600070406n);
}

/** CR0, CR4, segments, descriptor tables, RFLAGS, RIP and DR7 as both RESET and INIT leave them */
function writeRealModeState(lp: LogicalProcessor, cr0: bigint): void {
  lp.vmwrite(F.GUEST_CR0, cr0 | CR0_OWNED);
  lp.vmwrite(F.CR0_READ_SHADOW, cr0);
  lp.vmwrite(F.GUEST_CR4, CR4_OWNED);
  lp.vmwrite(F.CR4_READ_SHADOW, 0n);
  for (const [sel, base, limit, ar] of SEGMENTS) {
    lp.vmwrite(sel, 0);
    lp.vmwrite(base, 0);
    lp.vmwrite(limit, 0xffff);
    lp.vmwrite(ar, 0x93);
  }
  lp.vmwrite(F.GUEST_CS_SELECTOR, 0xf000);
  lp.vmwrite(F.GUEST_CS_BASE, 0xffff0000n);
  lp.vmwrite(F.GUEST_CS_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_CS_AR_BYTES, 0x9b);
  lp.vmwrite(F.GUEST_LDTR_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_LDTR_AR_BYTES, 0x82);
  lp.vmwrite(F.GUEST_TR_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_TR_AR_BYTES, 0x8b);
  lp.vmwrite(F.GUEST_GDTR_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_IDTR_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_RFLAGS, 2n);
  lp.vmwrite(F.GUEST_RIP, 0xfff0n);
  lp.vmwrite(F.GUEST_DR7, 0x400n);
}

/**
 * The INIT state (SDM vol. 3 9.1.1, table 9-1) in the guest-state area, and the activity state
 * after it: wait-for-SIPI for an application processor, active for the bootstrap processor, which
 * starts over at the reset vector (as KVM does). Real mode at F000:FFF0, CR0 = ET with CD and NW kept, CR3 = CR4 = 0, EFER = 0
 * (not IA-32e mode), flat 64-KiB real-mode segments, GDTR/IDTR limit FFFF, DR7 = 400, no
 * interrupt shadow, no event to inject. PAT and the MTRRs stay (INIT leaves them); the general
 * registers, CR2, DR0-DR6 and x87/SSE are outside the VMCS (the vCPU sets what INIT changes).
 */
export function writeInitGuest(lp: LogicalProcessor, bsp: boolean): void {
  const cdNw = lp.vmread(F.CR0_READ_SHADOW) & 0x60000000n;
  writeRealModeState(lp, cdNw | 0x10n);
  lp.vmwrite(F.GUEST_CR3, 0n);
  for (const f of [
    F.GUEST_LDTR_SELECTOR,
    F.GUEST_LDTR_BASE,
    F.GUEST_TR_SELECTOR,
    F.GUEST_TR_BASE,
    F.GUEST_GDTR_BASE,
    F.GUEST_IDTR_BASE,
    F.GUEST_RSP,
    F.GUEST_IA32_EFER,
    F.GUEST_IA32_DEBUGCTL,
    F.GUEST_INTERRUPTIBILITY_INFO,
    F.GUEST_PENDING_DBG_EXCEPTIONS,
    F.VM_ENTRY_INTR_INFO_FIELD,
  ]) {
    lp.vmwrite(f, 0);
  }
  lp.vmwrite(F.VM_ENTRY_CONTROLS, lp.vmreadNumber(F.VM_ENTRY_CONTROLS) & ~EntryCtl.IA32E_MODE);
  lp.vmwrite(F.GUEST_ACTIVITY_STATE, bsp ? Activity.Active : Activity.WaitForSipi);
}

/** SIPI: the processor starts in real mode at vector:0000 (CS = vector << 8, base vector << 12). */
export function writeSipiStart(lp: LogicalProcessor, vector: number): void {
  lp.vmwrite(F.GUEST_CS_SELECTOR, (vector & 0xff) << 8);
  lp.vmwrite(F.GUEST_CS_BASE, (vector & 0xff) << 12);
  lp.vmwrite(F.GUEST_CS_LIMIT, 0xffff);
  lp.vmwrite(F.GUEST_CS_AR_BYTES, 0x9b);
  lp.vmwrite(F.GUEST_RIP, 0);
  lp.vmwrite(F.GUEST_ACTIVITY_STATE, Activity.Active);
}
