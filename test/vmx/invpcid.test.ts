// PCIDs and INVPCID under VMX (SDM Vol. 3C 25.3, 26.1.2, 27.3.1.1): the "enable INVPCID" control
// decides between #UD and INVPCID, INVLPG exiting then makes it exit (reason 58, with the
// displacement as qualification and the INVEPT/INVVPID instruction-information layout), and a
// guest's PCID in GUEST_CR3 bits 11:0 goes through VM entry and exit unchanged.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { EntryCtl, F, Proc, Proc2 } from "../../lib/vmx/index.js";
import { type RigOptions, rigWith } from "./setup.js";

const RAM = 1 << 20;
const INVPCID_EXIT = 58;
const HLT_EXIT = 12;

/** real-mode guest (unrestricted guest) running `code` at 0x1000, #UD and #GP in the exception bitmap */
function guest(code: number[], opts: RigOptions = {}) {
  const r = rigWith(new Interpreter(), { realMode: true, ...opts });
  const ram = r.mem.allocate(RAM);
  r.ept.map(0, ram.hpa, RAM);
  ram.bytes.set(code, 0x1000);
  r.lp.vmwrite(F.GUEST_RIP, 0x1000);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  r.lp.vmwrite(F.EXCEPTION_BITMAP, (1 << 6) | (1 << 13));
  return { ...r, ram: ram.bytes };
}

// mov eax, 2 (66 b8 imm32); mov bx, 0x2000; invpcid eax, [bx+0x10]; hlt
const INVPCID_BX10 = [0x66, 0xb8, 2, 0, 0, 0, 0xbb, 0x00, 0x20, 0x66, 0x0f, 0x38, 0x82, 0x47, 0x10, 0xf4];
const AT = 0x1009n;

describe("INVPCID in VMX non-root operation", () => {
  it('"enable INVPCID" 0: #UD, even with INVLPG exiting', () => {
    for (const proc of [Proc.HLT, Proc.HLT | Proc.INVLPG]) {
      const g = guest(INVPCID_BX10, { proc });
      expect(g.lp.vmlaunch()).toBe(0);
      expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000306n);
      expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT);
    }
  });

  it('"enable INVPCID" 1 without INVLPG exiting: it runs', () => {
    const g = guest(INVPCID_BX10, { proc2: Proc2.INVPCID });
    expect(g.lp.vmlaunch()).toBe(HLT_EXIT);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT + 6n);
  });

  it('"enable INVPCID" 1 with INVLPG exiting: exit 58 with displacement and instruction information', () => {
    const g = guest(INVPCID_BX10, { proc: Proc.HLT | Proc.INVLPG, proc2: Proc2.INVPCID });
    expect(g.lp.vmlaunch()).toBe(INVPCID_EXIT);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(6n);
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x10n);
    // 16-bit address size (9:7 = 0), DS (17:15 = 3), no index (22), base BX (26:23 = 3), reg2 EAX
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt((3 << 15) | (1 << 22) | (3 << 23)));
  });

  it("the exit comes before the operands are checked: an invalid type still exits", () => {
    const code = [...INVPCID_BX10];
    code[2] = 9; // type 9
    const g = guest(code, { proc: Proc.HLT | Proc.INVLPG, proc2: Proc2.INVPCID });
    expect(g.lp.vmlaunch()).toBe(INVPCID_EXIT);
    const run = guest(code, { proc2: Proc2.INVPCID });
    expect(run.lp.vmlaunch()).toBe(0);
    expect(run.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(0x80000b0dn); // #GP(0)
    expect(run.lp.vmread(F.VM_EXIT_INTR_ERROR_CODE)).toBe(0n);
  });
});

describe("a guest's PCID through VM entry and exit", () => {
  it("GUEST_CR3 bits 11:0 reach the guest with CR4.PCIDE and come back in GUEST_CR3", () => {
    const cpu = new Interpreter();
    const r = rigWith(cpu, { proc: Proc.HLT, proc2: Proc2.EPT });
    const ram = r.mem.allocate(RAM);
    r.ept.map(0, ram.hpa, RAM);
    // 4-level paging: PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000, whose entry 0 maps 0..2 MiB
    const w = (a: number, v: number) =>
      new DataView(ram.bytes.buffer, ram.bytes.byteOffset).setUint32(a, v, true);
    w(0x10000, 0x11003);
    w(0x11000, 0x12003);
    w(0x12000, 0x83);
    // mov rax, cr3; hlt
    ram.bytes.set([0x0f, 0x20, 0xd8, 0xf4], 0x1000);
    const lp = r.lp;
    lp.vmwrite(
      F.VM_ENTRY_CONTROLS,
      lp.vmread(F.VM_ENTRY_CONTROLS) | BigInt(EntryCtl.IA32E_MODE | EntryCtl.LOAD_EFER),
    );
    lp.vmwrite(F.GUEST_IA32_EFER, 0x500n);
    lp.vmwrite(F.GUEST_CR4, 0x2000n | 0x20n | 0x20000n);
    lp.vmwrite(F.GUEST_CR3, 0x10007n);
    lp.vmwrite(F.GUEST_CS_AR_BYTES, 0xa09b);
    lp.vmwrite(F.GUEST_RIP, 0x1000);
    expect(lp.vmlaunch()).toBe(HLT_EXIT);
    expect(cpu.getGpr(0)).toBe(0x10007n);
    expect(lp.vmread(F.GUEST_CR3)).toBe(0x10007n);
    // and once more through a VM entry that reloads it from the VMCS
    lp.vmwrite(F.GUEST_RIP, 0x1000);
    expect(lp.vmresume()).toBe(HLT_EXIT);
    expect(cpu.getGpr(0)).toBe(0x10007n);
  });

  it("CR4.PCIDE outside IA-32e mode fails the entry checks (invalid guest state)", () => {
    const r = rigWith(new Interpreter(), { proc: Proc.HLT });
    r.lp.vmwrite(F.GUEST_CR4, r.lp.vmread(F.GUEST_CR4) | 0x20000n);
    expect(r.lp.vmlaunch()).toBe(0x80000021);
  });
});
