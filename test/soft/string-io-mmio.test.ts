// INS and OUTS whose memory operand is MMIO (issue 13; a known fuzz bug until now: the run ended as
// an internal error). Each element is two accesses in the processor's order, each its own exit: INS
// reads the port and writes the device, OUTS reads the device and writes the port; REP repeats
// element by element. On the machine's thread and on a vCPU thread.

import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/index.js";

const DEV = 0xd000_0000;

// protected mode, flat: rep insb (3 bytes from port 0x80 to DEV), rep outsw (2 words from DEV+0x100
// to port 0x81), then an OUTSB without REP from DEV+0x200 downward (DF=1), then HLT
const CODE = [
  0xbf,
  0x00,
  0x00,
  0x00,
  0xd0, // mov edi, DEV
  0x66,
  0xba,
  0x80,
  0x00, // mov dx, 0x80
  0xb9,
  0x03,
  0x00,
  0x00,
  0x00, // mov ecx, 3
  0xfc, // cld
  0xf3,
  0x6c, // rep insb
  0xbe,
  0x00,
  0x01,
  0x00,
  0xd0, // mov esi, DEV+0x100
  0x66,
  0xba,
  0x81,
  0x00, // mov dx, 0x81
  0xb9,
  0x02,
  0x00,
  0x00,
  0x00, // mov ecx, 2
  0xf3,
  0x66,
  0x6f, // rep outsw
  0xbe,
  0x00,
  0x02,
  0x00,
  0xd0, // mov esi, DEV+0x200
  0xfd, // std
  0x6e, // outsb
  0xf4, // hlt
];

describe("INS/OUTS with the memory operand in MMIO", () => {
  for (const vcpuThread of [false, true]) {
    it(`complete element by element, in order (vcpuThread: ${vcpuThread})`, async () => {
      const vm = await createMachine({ backend: "soft", memoryMiB: 4, vcpuThread });
      try {
        const seen: string[] = [];
        let next = 0x41;
        vm.io.onIn(0x80, (_p, size) => {
          seen.push(`in 0x80/${size}`);
          return next++;
        });
        vm.io.onOut(0x81, (_p, size, value) => {
          seen.push(`out 0x81/${size} ${value.toString(16)}`);
        });
        vm.mmio.onWrite(
          DEV,
          (address, size, value) => {
            seen.push(`mmio write ${(address - DEV).toString(16)}/${size} ${value.toString(16)}`);
          },
          0x1000,
        );
        vm.mmio.onRead(
          DEV,
          (address, size) => {
            seen.push(`mmio read ${(address - DEV).toString(16)}/${size}`);
            return (address - DEV + 0x1000) & 0xffff;
          },
          0x1000,
        );
        vm.loadFlat(Uint8Array.from(CODE), { mode: "protected", address: 0x100000 });
        const r = await vm.run({ timeoutMs: 30_000 });
        expect(r.reason, r.message).toBe("hlt");
        expect(seen).toEqual([
          "in 0x80/1",
          "mmio write 0/1 41",
          "in 0x80/1",
          "mmio write 1/1 42",
          "in 0x80/1",
          "mmio write 2/1 43",
          "mmio read 100/2",
          "out 0x81/2 1100",
          "mmio read 102/2",
          "out 0x81/2 1102",
          "mmio read 200/1",
          "out 0x81/1 0",
        ]);
        const regs = vm.vcpu(0).getRegs();
        expect(regs.rdi).toBe(BigInt(DEV + 3));
        expect(regs.rsi).toBe(BigInt(DEV + 0x200 - 1));
        expect(regs.rcx).toBe(0n);
      } finally {
        vm.close();
      }
    });
  }
});
