// The control and guest-state checks are memoized on the values of the fields they read: a
// VMWRITE that makes the state invalid after a successful entry must still fail the next entry,
// with the same outcome as on a first entry, and writing the field back must let it enter again.
import { describe, expect, it } from "vitest";
import type { LogicalProcessor } from "../../lib/vmx/index.js";
import { EntryCtl, F, Proc, VmxInstructionError } from "../../lib/vmx/index.js";
import { hltStep } from "./fake-cpu.js";
import { rig } from "./setup.js";

type Mutation = [string, (lp: LogicalProcessor) => void];
const or = (lp: LogicalProcessor, enc: number, bits: bigint) => lp.vmwrite(enc, lp.vmread(enc) | bits);
const andNot = (lp: LogicalProcessor, enc: number, bits: bigint) => lp.vmwrite(enc, lp.vmread(enc) & ~bits);

const INVALID_GUEST: Mutation[] = [
  ["CR0.NE=0", (lp) => andNot(lp, F.GUEST_CR0, 0x20n)],
  ["CR4 unsupported bit", (lp) => or(lp, F.GUEST_CR4, 1n << 12n)],
  ["IA-32e guest without CR4.PAE", (lp) => or(lp, F.VM_ENTRY_CONTROLS, BigInt(EntryCtl.IA32E_MODE))],
  ["RFLAGS reserved bit 3", (lp) => lp.vmwrite(F.GUEST_RFLAGS, 0xan)],
  ["RIP bits 63:32 outside 64-bit mode", (lp) => lp.vmwrite(F.GUEST_RIP, 1n << 32n)],
  ["CS not present", (lp) => andNot(lp, F.GUEST_CS_AR_BYTES, 0x80n)],
  ["TR unusable", (lp) => or(lp, F.GUEST_TR_AR_BYTES, 0x10000n)],
  ["GDTR limit bits 31:16", (lp) => lp.vmwrite(F.GUEST_GDTR_LIMIT, 0x10000)],
  ["interruptibility: STI and MOV SS", (lp) => lp.vmwrite(F.GUEST_INTERRUPTIBILITY_INFO, 3)],
  ["activity state 4", (lp) => lp.vmwrite(F.GUEST_ACTIVITY_STATE, 4)],
  ["VMCS link pointer not all-ones", (lp) => lp.vmwrite(F.VMCS_LINK_POINTER, 0n)],
  [
    "PAT with an invalid type (load PAT)",
    (lp) => {
      or(lp, F.VM_ENTRY_CONTROLS, BigInt(EntryCtl.LOAD_PAT));
      lp.vmwrite(F.GUEST_IA32_PAT, 0x02n);
    },
  ],
];

const INVALID_CONTROLS: Mutation[] = [
  ["pin-based reserved bit 8", (lp) => or(lp, F.PIN_BASED_VM_EXEC_CONTROL, 1n << 8n)],
  ["CR3-target count 5", (lp) => lp.vmwrite(F.CR3_TARGET_COUNT, 5)],
  ["entry interruption type 1", (lp) => lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000100)],
];

function entered(r: ReturnType<typeof rig>): void {
  for (let i = 0; i < 8; i++) r.cpu.program[i] = hltStep;
  expect(r.lp.vmlaunch()).toBe(12);
  expect(r.lp.vmresume()).toBe(12);
}

describe("memoized VM-entry checks after a successful entry", () => {
  for (const [name, mutate] of INVALID_GUEST) {
    it(`${name}: the next entry fails with reason 33, and enters once restored`, () => {
      const r = rig({ proc: Proc.HLT });
      entered(r);
      const before = r.lp.vmread(F.VMCS_LINK_POINTER);
      const saved = new Map<number, bigint>();
      for (const f of [
        F.GUEST_CR0,
        F.GUEST_CR4,
        F.VM_ENTRY_CONTROLS,
        F.GUEST_RFLAGS,
        F.GUEST_RIP,
        F.GUEST_CS_AR_BYTES,
        F.GUEST_TR_AR_BYTES,
        F.GUEST_GDTR_LIMIT,
        F.GUEST_INTERRUPTIBILITY_INFO,
        F.GUEST_ACTIVITY_STATE,
        F.GUEST_IA32_PAT,
      ])
        saved.set(f, r.lp.vmread(f));
      const retired = r.cpu.retired;
      mutate(r.lp);
      expect(r.lp.vmresume()).toBe(0x80000021);
      expect(r.cpu.retired).toBe(retired);
      // still invalid: fails again
      expect(r.lp.vmresume()).toBe(0x80000021);
      for (const [f, value] of saved) r.lp.vmwrite(f, value);
      r.lp.vmwrite(F.VMCS_LINK_POINTER, before);
      expect(r.lp.vmresume()).toBe(12);
    });
  }

  for (const [name, mutate] of INVALID_CONTROLS) {
    it(`${name}: the next entry fails with VMfailValid 7`, () => {
      const r = rig({ proc: Proc.HLT });
      entered(r);
      mutate(r.lp);
      let error: unknown;
      try {
        r.lp.vmresume();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(VmxInstructionError);
      expect((error as VmxInstructionError).number).toBe(7);
    });
  }

  it("a guest-state write that keeps the state valid still enters", () => {
    const r = rig({ proc: Proc.HLT });
    entered(r);
    r.lp.vmwrite(F.GUEST_GDTR_LIMIT, 0x27);
    expect(r.lp.vmresume()).toBe(12);
  });
});
