// setRegs/setSregs/setMsr of a machine's vCPU: values no CPU can hold are a RegisterValueError
// naming the register, raised before anything is written; fields left out keep their values.
// Run on the soft backend (the checks live in the backend-neutral Vcpu, lib/vmm/register-checks.ts).
import { afterEach, describe, expect, it } from "vitest";
import type { EntryMode } from "../../lib/boot/entry.js";
import type { Regs, SpecialRegs } from "../../lib/types/regs.js";
import { RegisterValueError } from "../../lib/vmm/errors.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";

let open: Machine[] = [];
afterEach(() => {
  for (const vm of open) vm.close();
  open = [];
});

/** a soft machine whose vCPU is at the entry state of a flat image in `mode` (the image: HLT) */
async function machine(mode: EntryMode = "long") {
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  open.push(vm);
  vm.loadFlat(Uint8Array.of(0xf4), { address: 0x10000, mode });
  return { vm, vcpu: vm.vcpu(0) };
}

/** `fn` throws a RegisterValueError for `register` and leaves every register as it was */
async function refused(register: string, fn: (v: Machine) => void, mode: EntryMode = "long") {
  const { vm, vcpu } = await machine(mode);
  const regs = vcpu.getRegs();
  const sregs = vcpu.getSregs();
  let caught: unknown;
  try {
    fn(vm);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(RegisterValueError);
  expect((caught as RegisterValueError).register).toBe(register);
  expect(vcpu.getRegs()).toEqual(regs);
  expect(vcpu.getSregs()).toEqual(sregs);
  return caught as RegisterValueError;
}

describe("setRegs", () => {
  it("setRegs({}) changes nothing; named fields change alone", async () => {
    const { vcpu } = await machine();
    const before = vcpu.getRegs();
    vcpu.setRegs({});
    expect(vcpu.getRegs()).toEqual(before);
    vcpu.setRegs({ rbx: 7n, rax: -1n });
    expect(vcpu.getRegs()).toEqual({ ...before, rbx: 7n, rax: 0xffffffffffffffffn });
  });

  it("rflags 0xFFFFFFFF (reserved bits) is refused, with rax of the same call not written", async () => {
    const e = await refused("rflags", (vm) => vm.vcpu(0).setRegs({ rax: 5n, rflags: 0xffffffffn }));
    expect(e.message).toMatch(/reserved/);
  });

  it.each([
    ["a non-canonical RIP in 64-bit mode", "rip", "long", { rip: 0x800000000000n }],
    ["RIP bits 63:32 outside 64-bit mode", "rip", "protected", { rip: 0x100000000n }],
    ["RFLAGS.VM in IA-32e mode", "rflags", "long", { rflags: 0x20002n }],
    ["RFLAGS.VM in real mode", "rflags", "real", { rflags: 0x20002n }],
    ["a number instead of a bigint", "rax", "long", { rax: 5 }],
    ["a value wider than 64 bits", "rcx", "long", { rcx: 1n << 64n }],
    ["a register that does not exist", "eax", "long", { eax: 1n }],
  ] as const)("%s is refused", async (_name, register, mode, regs) => {
    await refused(register, (vm) => vm.vcpu(0).setRegs(regs as unknown as Partial<Regs>), mode);
  });

  it("a non-object is refused", async () => {
    await refused("regs", (vm) => vm.vcpu(0).setRegs(null as unknown as Regs));
  });
});

describe("setSregs", () => {
  it("fields left out keep their values; segments merge field by field", async () => {
    const { vcpu } = await machine();
    const before = vcpu.getSregs();
    vcpu.setSregs({});
    expect(vcpu.getSregs()).toEqual(before);
    vcpu.setSregs({ cr2: 0x1234n, fs: { base: 0xffff800000000000n } as SpecialRegs["fs"] });
    const after = vcpu.getSregs();
    expect(after.cr2).toBe(0x1234n);
    expect(after.fs).toEqual({ ...before.fs, base: 0xffff800000000000n });
  });

  it.each([
    ["CR0.PG without CR0.PE", "cr0", { cr0: 0x80000010n }],
    ["CR0.NW without CR0.CD", "cr0", { cr0: 0xa0000011n }],
    ["CR0 bit 32", "cr0", { cr0: 0x180000011n }],
    ["CR4 bits 63:32", "cr4", { cr4: 0x20n | (1n << 40n) }],
    ["CR3 above 52 bits", "cr3", { cr3: 1n << 60n }],
    ["EFER bit 1", "efer", { efer: 0x502n }],
    ["EFER.LMA with CR4.PAE clear", "efer", { cr4: 0n }],
    ["CR8 above 15", "cr8", { cr8: 16n }],
    ["a non-canonical FS base", "fs.base", { fs: { base: 0x800000000000n } }],
    ["a non-canonical GDT base", "gdt.base", { gdt: { base: 0x800000000000n, limit: 0 } }],
    ["an IDT limit above 0xFFFF", "idt.limit", { idt: { base: 0n, limit: 0x10000 } }],
    ["a selector above 0xFFFF", "ds.selector", { ds: { selector: 0x10000 } }],
    ["a segment type that is not a number", "ds.type", { ds: { type: "data" } }],
    ["a DS base above 4 GiB", "ds.base", { ds: { base: 1n << 32n } }],
    ["a register that does not exist", "cr5", { cr5: 0n }],
    ["CR4.LA57, which the soft CPU does not offer", "cr4", { cr4: 0x1020n }],
    ["CR3 above the soft CPU's MAXPHYADDR (39)", "cr3", { cr3: 1n << 40n }],
  ] as const)("%s is refused", async (_name, register, sregs) => {
    await refused(register, (vm) => vm.vcpu(0).setSregs(sregs as unknown as Partial<SpecialRegs>));
  });

  it.each(["real", "protected", "long"] as const)(
    "what getRegs/getSregs return in %s mode is accepted back, and the guest still runs",
    async (mode) => {
      const { vm, vcpu } = await machine(mode);
      vcpu.setSregs(vcpu.getSregs());
      vcpu.setRegs(vcpu.getRegs());
      expect(vm.runSync({ timeoutMs: 5000 }).reason).toBe("hlt");
    },
  );
});

describe("setMsr", () => {
  it.each([
    ["IA32_PAT with a reserved memory type", 0x277, 2n],
    ["IA32_EFER with a reserved bit", 0xc0000080, 0x502n],
    ["an MSR the CPU does not have", 0x12345, 0n],
    ["FS_BASE non-canonical", 0xc0000100, 0x800000000000n],
  ])("%s is refused", async (_name, index, value) => {
    const e = await refused(`msr 0x${index.toString(16)}`, (vm) => vm.vcpu(0).setMsr(index, value));
    expect(e.value).toBe(value);
  });

  it.each([
    ["an index that is not an integer", 1.5, 0n, "msr"],
    ["a value that is not a bigint", 0x277, 6, "msr 0x277"],
  ])("%s is refused", async (_name, index, value, register) => {
    await refused(register, (vm) => vm.vcpu(0).setMsr(index, value as bigint));
  });

  it("a valid PAT is written", async () => {
    const { vcpu } = await machine();
    vcpu.setMsr(0x277, 0x0007010600070106n);
    expect(vcpu.getMsr(0x277)).toBe(0x0007010600070106n);
  });
});
