// `format: "bios"` on /dev/kvm: the firmware in a KVM_MEM_READONLY slot below 4 GiB, vCPU 0 set to
// the reset state (CS base FFFF0000) through KVM_SET_SREGS, as QEMU's -bios does; the same ROM the
// soft backend runs (test/boot/bios.test.ts).
import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { BIOS_ROM_OUTPUT, biosRom } from "../boot/bios-rom.js";
import { probe, skipReason } from "./helpers.js";

describe.skipIf(!probe.usable)(`firmware at the reset vector on KVM${skipReason}`, () => {
  for (const kib of [64, 256]) {
    it(`runs a ${kib} KiB ROM from F000:FFF0; its writes to ROM exit and are dropped`, async () => {
      const vm = await createMachine({ memoryMiB: 16, backend: "kvm" });
      try {
        const con: number[] = [];
        addPcDevices(vm, { debugcon: (b) => con.push(...b) });
        const writes: number[] = [];
        vm.on("exit", (e) => {
          if (e.kind === "mmio" && e.write) writes.push(e.address);
        });
        vm.load(biosRom(kib * 1024), { format: "bios" });
        expect(vm.vcpu(0).getSregs().cs).toMatchObject({ selector: 0xf000, base: 0xffff0000n });
        // EDX after RESET: the signature KVM's CPUID.1:EAX gives (a family is never 0)
        expect(vm.vcpu(0).getRegs().rdx & 0xf00n).not.toBe(0n);
        const r = await vm.run({ timeoutMs: 20_000, maxExits: 10_000 });
        expect(r.reason).toBe("hlt");
        expect(Buffer.from(con).toString()).toBe(BIOS_ROM_OUTPUT);
        expect(writes).toEqual([0xfffff000]);
        expect(vm.vcpu(0).getSregs().cs.base).toBe(0xf0000n);
      } finally {
        vm.close();
      }
    });
  }
});
