// Guest RAM of more than 3 GiB on the soft backend (issue 13): up to 3 GiB from 0, the rest from
// 4 GiB with the 32-bit PCI hole between, as the KVM backend and a PC lay it out; a guest reads and
// writes RAM above 2 GiB and above 4 GiB, on the machine's thread and on a vCPU thread.

import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/index.js";

const GIB = 2 ** 30;
const LOW = 0xa000_0100; // 2.5 GiB: past a 31-bit offset
const HIGH = 0x1_4000_0100; // 5 GiB: the second 1 GiB chunk above 4 GiB
const PD = 0x20_0000; // a page directory for 5-6 GiB (the loader maps the first 4 GiB)

/** long mode: for each address, the qword there + 1 is stored 8 bytes further on; then HLT */
function guest(addresses: number[]): Uint8Array {
  const code: number[] = [];
  for (const a of addresses) {
    const imm = new Uint8Array(new BigUint64Array([BigInt(a)]).buffer);
    code.push(0x48, 0xbb, ...imm); // mov rbx, imm64
    code.push(0x48, 0x8b, 0x03); // mov rax, [rbx]
    code.push(0x48, 0xff, 0xc0); // inc rax
    code.push(0x48, 0x89, 0x43, 0x08); // mov [rbx+8], rax
  }
  code.push(0xf4);
  return Uint8Array.from(code);
}

const u64 = (b: Uint8Array) => new DataView(b.slice().buffer).getBigUint64(0, true);

describe("guest RAM above 3 GiB on the soft backend", () => {
  for (const vcpuThread of [false, true]) {
    it(`is laid out around the PCI hole and reached by the guest (vcpuThread: ${vcpuThread})`, async () => {
      const vm = await createMachine({ backend: "soft", memoryMiB: 5 * 1024 + 512, vcpuThread });
      try {
        expect(vm.memory.regions.map((r) => [r.guestPhysAddr, r.size])).toEqual([
          [0, 3 * GIB],
          [4 * GIB, GIB],
          [5 * GIB, GIB],
          [6 * GIB, GIB / 2],
        ]);
        vm.loadFlat(guest([LOW, HIGH]), { mode: "long", address: 0x100000 });
        // map 5-6 GiB with 2 MiB pages: PDPT[5] -> PD
        const pml4 = Number(vm.vcpu(0).getSregs().cr3 & ~0xfffn);
        const pdpt = Number(u64(vm.memory.view(pml4, 8)) & 0xffffffffff000n);
        const pd = new BigUint64Array(512);
        for (let i = 0; i < 512; i++) pd[i] = BigInt(5 * GIB + i * 0x200000) | 0x83n;
        vm.memory.write(PD, new Uint8Array(pd.buffer));
        vm.memory.write(pdpt + 5 * 8, new Uint8Array(new BigUint64Array([BigInt(PD) | 3n]).buffer));
        vm.memory.write(LOW, new Uint8Array(new BigUint64Array([0x1111_2222_3333_4444n]).buffer));
        vm.memory.write(HIGH, new Uint8Array(new BigUint64Array([0x5555_6666_7777_8888n]).buffer));
        const r = vm.runSync({ timeoutMs: 30_000 });
        expect(r.reason, r.message).toBe("hlt");
        expect(u64(vm.memory.view(LOW + 8, 8))).toBe(0x1111_2222_3333_4445n);
        expect(u64(vm.memory.view(HIGH + 8, 8))).toBe(0x5555_6666_7777_8889n);
        // nothing is there in the hole
        expect(() => vm.memory.view(3 * GIB + 0x1000, 8)).toThrow();
      } finally {
        vm.close();
      }
    });
  }
});
