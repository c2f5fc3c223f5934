// Task switches in VMX non-root operation always exit (reason 9) after the gate and new-TSS checks:
// qualification 15:0 the new TSS selector, 31:30 the source (0 CALL, 1 IRET, 2 JMP, 3 IDT task
// gate), the event in IDT-vectoring information for a task gate, the instruction length for
// instructions. The guest is the shared task-switch guest, one case at a time.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { createTaskEmulator, emulateTaskSwitch } from "../../lib/vmm/backends/soft/task-switch.js";
import { ExitReason, F, Proc2 } from "../../lib/vmx/index.js";
import {
  TASK_GUEST_BASE,
  TASK_GUEST_GDT,
  TASK_GUEST_RAM,
  taskSwitchGuest,
} from "../cpu/task-switch-guest.js";
import { rigWith } from "./setup.js";

/** the guest with only the cases in `mask`, entered in flat 32-bit protected mode without paging */
function guest(mask: number) {
  const r = rigWith(new Interpreter(), { proc2: Proc2.EPT | Proc2.UNRESTRICTED_GUEST });
  const ram = r.mem.allocate(TASK_GUEST_RAM);
  r.ept.map(0, ram.hpa, TASK_GUEST_RAM);
  const image = taskSwitchGuest(mask);
  ram.bytes.set(image, TASK_GUEST_BASE);
  r.lp.vmwrite(F.GUEST_CR0, 0x31n);
  r.lp.vmwrite(F.GUEST_RIP, TASK_GUEST_BASE);
  r.lp.vmwrite(F.GUEST_RSP, TASK_GUEST_BASE);
  return { ...r, image, ram: ram.bytes };
}

/** guest-physical address of the first occurrence of `bytes` in the image */
function at(image: Uint8Array, bytes: number[]): number {
  for (let i = 0; i + bytes.length <= image.length; i++) {
    if (bytes.every((b, k) => image[i + k] === b)) return TASK_GUEST_BASE + i;
  }
  throw new Error("instruction not in the image");
}

function exitInfo(g: ReturnType<typeof guest>) {
  const lp = g.lp;
  return {
    reason: Number(lp.vmread(F.VM_EXIT_REASON)),
    qualification: Number(lp.vmread(F.EXIT_QUALIFICATION)),
    length: Number(lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)),
    idtVectoring: Number(lp.vmread(F.IDT_VECTORING_INFO_FIELD)),
    idtError: Number(lp.vmread(F.IDT_VECTORING_ERROR_CODE)),
    rip: Number(lp.vmread(F.GUEST_RIP)),
    tr: Number(lp.vmread(F.GUEST_TR_SELECTOR)),
  };
}

describe("task switches under VMX", () => {
  it("far CALL to a TSS exits before switching: source 0, the TSS selector, the instruction length", () => {
    const g = guest(1);
    expect(g.lp.vmlaunch()).toBe(ExitReason.TaskSwitch);
    expect(exitInfo(g)).toMatchObject({
      qualification: 0x20,
      length: 7,
      idtVectoring: 0,
      rip: at(g.image, [0x9a, 0, 0, 0, 0, 0x20, 0]),
      tr: 0x18,
    });
    // nothing switched: the new TSS is still available and the old one holds no saved EIP
    expect(g.ram[TASK_GUEST_GDT + 0x20 + 5]).toBe(0x89);
  });

  it("IRET with NT=1 exits with source 1 and the back-link as the selector", () => {
    const g = guest(1);
    expect(g.lp.vmlaunch()).toBe(ExitReason.TaskSwitch);
    // the hypervisor emulates the CALL's switch (as KVM does), and the guest goes on to IRET
    const raw = {
      backend: "soft" as const,
      reason: 9,
      exitReasonField: 9,
      qualification: g.lp.vmread(F.EXIT_QUALIFICATION),
      instructionLength: 7,
    };
    expect(emulateTaskSwitch(g.lp, createTaskEmulator(g.mem, g.ept.eptp), raw)).toBeUndefined();
    expect(Number(g.lp.vmread(F.GUEST_TR_SELECTOR))).toBe(0x20);
    expect(g.lp.vmresume()).toBe(ExitReason.TaskSwitch);
    const iret = exitInfo(g);
    expect(iret).toMatchObject({
      qualification: (0x18 | (1 << 30)) >>> 0,
      length: 1,
      idtVectoring: 0,
      tr: 0x20,
    });
    expect(g.ram[iret.rip]).toBe(0xcf);
  });

  it("JMP through a GDT task gate: source 2 and the TSS selector the gate names", () => {
    const g = guest(2);
    expect(g.lp.vmlaunch()).toBe(ExitReason.TaskSwitch);
    expect(exitInfo(g)).toMatchObject({
      qualification: (0x28 | (2 << 30)) >>> 0,
      length: 7,
      rip: at(g.image, [0xea, 0, 0, 0, 0, 0x30, 0]),
    });
  });

  it("INT n through an IDT task gate: source 3, the software interrupt in IDT-vectoring info", () => {
    const g = guest(4);
    expect(g.lp.vmlaunch()).toBe(ExitReason.TaskSwitch);
    expect(exitInfo(g)).toMatchObject({
      qualification: (0x38 | (3 << 30)) >>> 0,
      length: 2,
      idtVectoring: 0x80000440,
      rip: at(g.image, [0xcd, 0x40]),
    });
  });

  it("an exception through a task gate carries its error code; a double fault does too", () => {
    const gp = guest(8);
    expect(gp.lp.vmlaunch()).toBe(ExitReason.TaskSwitch);
    expect(exitInfo(gp)).toMatchObject({
      qualification: (0x40 | (3 << 30)) >>> 0,
      length: 0,
      idtVectoring: 0x80000b0b,
      idtError: 0x58,
    });
    const df = guest(16);
    expect(df.lp.vmlaunch()).toBe(ExitReason.TaskSwitch);
    expect(exitInfo(df)).toMatchObject({
      qualification: (0x48 | (3 << 30)) >>> 0,
      idtVectoring: 0x80000b08,
      idtError: 0,
      tr: 0x18,
    });
  });

  it("an injected software interrupt through a task gate exits with RIP at its instruction", () => {
    // no cases: the guest sets up its tables and TR, then halts (HLT exits)
    const g = guest(0);
    expect(g.lp.vmlaunch()).toBe(ExitReason.Hlt);
    const rip = Number(g.lp.vmread(F.GUEST_RIP)) + 1;
    g.lp.vmwrite(F.GUEST_RIP, rip);
    g.lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000440);
    g.lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, 2);
    expect(g.lp.vmresume()).toBe(ExitReason.TaskSwitch);
    expect(exitInfo(g)).toMatchObject({
      qualification: (0x38 | (3 << 30)) >>> 0,
      length: 2,
      idtVectoring: 0x80000440,
      rip,
      tr: 0x18,
    });
    // as KVM does: past the instruction, then the switch; the old task resumes after INT n
    const raw = {
      backend: "soft" as const,
      reason: 9,
      exitReasonField: 9,
      qualification: g.lp.vmread(F.EXIT_QUALIFICATION),
      instructionLength: 2,
    };
    expect(emulateTaskSwitch(g.lp, createTaskEmulator(g.mem, g.ept.eptp), raw)).toBeUndefined();
    expect(Number(g.lp.vmread(F.GUEST_TR_SELECTOR))).toBe(0x38);
    expect(Number(g.lp.vmread(F.VM_ENTRY_INTR_INFO_FIELD)) >>> 31).toBe(0);
    const tss0 = TASK_GUEST_BASE + 0x1000;
    expect(new DataView(g.ram.buffer).getUint32(tss0 + 0x20, true)).toBe(rip + 2);
  });
});
