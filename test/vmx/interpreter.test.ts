// The VMX layer driving the real interpreter: exit controls decided by hooks the interpreter calls.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { F, Proc } from "../../lib/vmx/index.js";
import { type RigOptions, rigWith } from "./setup.js";

const RAM = 1 << 20;

function guest(code: number[], opts: RigOptions = {}) {
  const r = rigWith(new Interpreter(), { realMode: true, ...opts });
  const ram = r.mem.allocate(RAM);
  r.ept.map(0, ram.hpa, RAM);
  ram.bytes.set(code, 0x1000);
  r.lp.vmwrite(F.GUEST_RIP, 0x1000);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  return { ...r, ram: ram.bytes };
}

describe("exits taken by the interpreter under VMX", () => {
  it("exception bitmap: UD2 exits with reason 0 and hardware-exception info; RIP stays at UD2", () => {
    const g = guest([0x0f, 0x0b]);
    g.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 6);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000306n);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1000n);
  });

  it("INT3 is a software exception (type 6) with its instruction length", () => {
    const g = guest([0xcc]);
    g.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 3);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000603n);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(1n);
  });

  it("MOV to CR3 with CR3-load exiting: reason 28, qualification names CR3 and the register", () => {
    const g = guest([0x0f, 0x22, 0xdb], { proc: Proc.HLT | Proc.CR3_LOAD }); // mov cr3, ebx
    expect(g.lp.vmlaunch()).toBe(28);
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x303n);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(3n);
  });

  it("RDTSC exiting on and off", () => {
    const on = guest([0x0f, 0x31, 0xf4], { proc: Proc.HLT | Proc.RDTSC });
    expect(on.lp.vmlaunch()).toBe(16);
    const off = guest([0x0f, 0x31, 0xf4]);
    expect(off.lp.vmlaunch()).toBe(12);
    expect(off.lp.vmread(F.GUEST_RIP)).toBe(0x1002n);
  });

  it("interrupt-window exiting waits out the STI shadow", () => {
    const g = guest([0xfb, 0x90, 0x90, 0xf4], { proc: Proc.HLT | Proc.INTERRUPT_WINDOW });
    expect(g.lp.vmlaunch()).toBe(7);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1002n);
  });

  it("the monitor trap flag stops after one instruction", () => {
    const g = guest([0x90, 0x90, 0xf4], { proc: Proc.HLT | Proc.MONITOR_TRAP_FLAG });
    expect(g.lp.vmlaunch()).toBe(37);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x1001n);
  });

  it("an injected software interrupt goes through the IVT with the return address past the instruction", () => {
    const g = guest([0xcd, 0x21, 0xf4]);
    g.ram[0x21 * 4] = 0x00;
    g.ram[0x21 * 4 + 1] = 0x30; // handler at 0000:3000
    g.ram[0x3000] = 0xf4;
    // the host emulates "INT 0x21" by injecting it (type 4, length 2)
    g.lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000421);
    g.lp.vmwrite(F.VM_ENTRY_INSTRUCTION_LEN, 2);
    expect(g.lp.vmlaunch()).toBe(12);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(0x3000n);
    expect(g.ram[0x8000 - 6]! | (g.ram[0x8000 - 5]! << 8)).toBe(0x1002); // pushed IP
  });

  it("an exit during delivery of an injected event reports the event as IDT-vectoring info", () => {
    const g = guest([0xf4]);
    // the IVT ends before vector 0x20: delivering it raises #GP, which the exception bitmap takes
    g.lp.vmwrite(F.GUEST_IDTR_LIMIT, 0x3f);
    g.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 13);
    g.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    g.lp.vmwrite(F.VM_ENTRY_INTR_INFO_FIELD, 0x80000020);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO) & 0xffn).toBe(13n);
    expect(g.lp.vmread(F.IDT_VECTORING_INFO_FIELD)).toBe(0x80000020n);
    // the entry field's valid bit is cleared by the exit; the host re-injects from IDT-vectoring info
    expect(g.lp.vmread(F.VM_ENTRY_INTR_INFO_FIELD) >> 31n).toBe(0n);
  });

  it("a fault while the interpreter delivers a guest exception carries that exception as IDT-vectoring info", () => {
    const g = guest([0x0f, 0x0b]); // ud2
    g.lp.vmwrite(F.GUEST_IDTR_LIMIT, 0x17); // vectors 0-5 only: delivering #UD faults with #GP
    g.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 13);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO) & 0xffn).toBe(13n);
    expect(g.lp.vmread(F.IDT_VECTORING_INFO_FIELD)).toBe(0x80000306n);
    // an exception exit with no delivery in progress has no IDT-vectoring info
    const plain = guest([0x0f, 0x0b]);
    plain.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 6);
    expect(plain.lp.vmlaunch()).toBe(0);
    expect(plain.lp.vmread(F.IDT_VECTORING_INFO_FIELD)).toBe(0n);
  });
});
