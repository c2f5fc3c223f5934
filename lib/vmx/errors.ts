// VMX instruction outcomes surfaced in TypeScript. The architectural result is kept too (the
// RFLAGS bits the instruction sets, and the VM-instruction error field for VMfailValid), so a caller
// can act on the number exactly as a hypervisor reading VM_INSTRUCTION_ERROR would.

/** SDM Vol. 3C, 31.4 "VM Instruction Error Numbers". */
export const VM_INSTRUCTION_ERRORS: Readonly<Record<number, string>> = {
  1: "VMCALL executed in VMX root operation",
  2: "VMCLEAR with invalid physical address",
  3: "VMCLEAR with VMXON pointer",
  4: "VMLAUNCH with non-clear VMCS",
  5: "VMRESUME with non-launched VMCS",
  6: "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)",
  7: "VM entry with invalid control field(s)",
  8: "VM entry with invalid host-state field(s)",
  9: "VMPTRLD with invalid physical address",
  10: "VMPTRLD with VMXON pointer",
  11: "VMPTRLD with incorrect VMCS revision identifier",
  12: "VMREAD/VMWRITE from/to unsupported VMCS component",
  13: "VMWRITE to read-only VMCS component",
  15: "VMXON executed in VMX root operation",
  16: "VM entry with invalid executive-VMCS pointer",
  17: "VM entry with non-launched executive VMCS",
  18: "VM entry with executive-VMCS pointer not VMXON pointer",
  19: "VMCALL with non-clear VMCS",
  20: "VMCALL with invalid VM-exit control fields",
  22: "VMCALL with incorrect MSEG revision identifier",
  23: "VMXOFF under dual-monitor treatment of SMIs and SMM",
  24: "VMCALL with invalid SMM-monitor features",
  25: "VM entry with invalid VM-execution control fields in executive VMCS",
  26: "VM entry with events blocked by MOV SS",
  28: "Invalid operand to INVEPT/INVVPID",
};

export const enum VmxError {
  VmcallInRoot = 1,
  VmclearInvalidAddress = 2,
  VmclearVmxonPointer = 3,
  VmlaunchNonClear = 4,
  VmresumeNonLaunched = 5,
  VmresumeAfterVmxoff = 6,
  EntryInvalidControls = 7,
  EntryInvalidHostState = 8,
  VmptrldInvalidAddress = 9,
  VmptrldVmxonPointer = 10,
  VmptrldBadRevision = 11,
  UnsupportedComponent = 12,
  WriteReadOnly = 13,
  VmxonInRoot = 15,
  EntryMovSsBlocking = 26,
  InvalidInvOperand = 28,
}

export type VmxOutcome = "VMsucceed" | "VMfailInvalid" | "VMfailValid";

/**
 * A VMX instruction failed. `outcome` is VMfailInvalid (no current VMCS: CF=1, `number` is 0) or
 * VMfailValid (ZF=1 and `number` was stored in the VM-instruction error field).
 */
export class VmxInstructionError extends Error {
  override name = "VmxInstructionError";
  readonly meaning: string;
  constructor(
    readonly instruction: string,
    readonly outcome: "VMfailInvalid" | "VMfailValid",
    readonly number: number,
    detail?: string,
  ) {
    const meaning =
      outcome === "VMfailInvalid"
        ? "no current VMCS (VMfailInvalid)"
        : (VM_INSTRUCTION_ERRORS[number] ?? `VM-instruction error ${number}`);
    super(
      `${instruction}: ${outcome}${outcome === "VMfailValid" ? ` (error ${number})` : ""}: ${meaning}${detail ? ` — ${detail}` : ""}`,
    );
    this.meaning = meaning;
  }
}

/** Not an architectural outcome: the caller broke an invariant of this API (e.g. not in VMX operation
 * where the instruction would #UD, or a non-aligned address where it would #GP). */
export class VmxFaultError extends Error {
  override name = "VmxFaultError";
  constructor(
    readonly instruction: string,
    /** the exception the instruction raises on hardware */
    readonly exception: "#UD" | "#GP",
    message: string,
  ) {
    super(`${instruction}: ${exception}: ${message}`);
  }
}
