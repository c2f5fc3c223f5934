// MOV to CR0/CR4 that the soft hypervisor emulates (the write touched a bit it owns: CR0.NE,
// CR4.VMXE) faults as the instruction would (#GP(0)) when the value is invalid, as KVM does,
// instead of landing in the VMCS and failing the next VM entry ("fail-entry").
import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { Asm, AX } from "../support/asm.js";

/** A boot sector that writes `value` to CR`cr` and prints "ok"; #GP's handler prints "GP". */
async function movToCr(cr: 0 | 4, value: number) {
  const a = new Asm(16, 0x7c00);
  // xor ax,ax; mov ds,ax; mov word [13*4], gp; mov word [13*4+2], 0
  a.db(0x31, 0xc0, 0x8e, 0xd8, 0xc7, 0x06)
    .imm(13 * 4)
    .addr("gp");
  a.db(0xc7, 0x06)
    .imm(13 * 4 + 2)
    .imm(0);
  a.movR32I(AX, value).movToCr(cr, AX);
  a.db(0xb0, 0x6f, 0xe6, 0xe9, 0xb0, 0x6b, 0xe6, 0xe9, 0xfa, 0xf4); // "ok"; cli; hlt
  a.label("gp").db(0xb0, 0x47, 0xe6, 0xe9, 0xb0, 0x50, 0xe6, 0xe9, 0xfa, 0xf4); // "GP"; cli; hlt
  const image = new Uint8Array(512);
  image.set(a.link());
  image[510] = 0x55;
  image[511] = 0xaa;
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  let out = "";
  addPcDevices(vm, { debugcon: (b: Uint8Array) => (out += Buffer.from(b).toString("latin1")) });
  vm.load(image);
  try {
    const result = vm.runSync({ timeoutMs: 5000 });
    return { reason: result.reason, out, cr4: vm.vcpu(0).getSregs().cr4, cr0: vm.vcpu(0).getSregs().cr0 };
  } finally {
    vm.close();
  }
}

describe("MOV to CR0/CR4 emulated by the soft hypervisor", () => {
  it.each([
    ["CR4.VMXE (VMX is hidden from the guest)", 4, 0x2000],
    ["CR4 with reserved bits and VMXE", 4, 0xffffffff],
    ["CR0.PG without CR0.PE (NE set: the write exits)", 0, 0x80000020],
    ["CR0.NW without CR0.CD (NE set)", 0, 0x20000020],
  ] as const)("%s raises #GP(0) in the guest", async (_name, cr, value) => {
    const r = await movToCr(cr, value);
    expect(r.reason).toBe("hlt");
    expect(r.out).toBe("GP");
  });

  it("valid values are written: CR4.PSE with VMXE clear, CR0.NE", async () => {
    const cr4 = await movToCr(4, 0x10);
    expect([cr4.reason, cr4.out, cr4.cr4 & 0x10n]).toEqual(["hlt", "ok", 0x10n]);
    const cr0 = await movToCr(0, 0x60000030);
    expect([cr0.reason, cr0.out, cr0.cr0 & 0x20n]).toEqual(["hlt", "ok", 0x20n]);
  });
});
