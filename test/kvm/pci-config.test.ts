// PCI configuration mechanism #1 on real KVM with the PC devices (addPcDevices): CONFIG_ADDRESS
// (0xCF8) writes go through KVM's coalesced ring, as QEMU registers 0xCF8, so Linux's walks of
// every bus/slot (AMD's GART search: 256 x 32 reads, twice) exit once per read instead of twice.
// What the guest reads must be what it reads with an exit per write, and the reset control
// register at 0xCF9, inside the same 4-port zone, must still reset the machine.

import { describe, expect, it } from "vitest";
import type { KvmVcpuBackend } from "../../lib/vmm/backends/kvm.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { probe, skipReason } from "./helpers.js";

const CLASS_REV_00_00_0 = 0x80000008;
const VENDOR_00_01_0 = 0x80000800;

// real mode, at 0x7C00:
//   mov dx,0xcf8; mov eax,CLASS_REV_00_00_0; out dx,eax; mov dx,0xcfc; in eax,dx; mov ebx,eax
//   mov dx,0xcf8; mov eax,VENDOR_00_01_0;    out dx,eax; mov dx,0xcfc; in eax,dx; mov ecx,eax
//   mov dx,0xcf8; in eax,dx; mov esi,eax; cli; hlt
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const readConfig = (address: number, into: number[]) => [
  0xba,
  0xf8,
  0x0c,
  0x66,
  0xb8,
  ...le32(address),
  0x66,
  0xef,
  0xba,
  0xfc,
  0x0c,
  0x66,
  0xed,
  ...into,
];
const PROBE = [
  ...readConfig(CLASS_REV_00_00_0, [0x66, 0x89, 0xc3]),
  ...readConfig(VENDOR_00_01_0, [0x66, 0x89, 0xc1]),
  0xba,
  0xf8,
  0x0c,
  0x66,
  0xed,
  0x66,
  0x89,
  0xc6,
  0xfa,
  0xf4,
];
// mov dx,0xcf9; mov al,6; out dx,al; cli; hlt  (the FADT's RESET_REG write, then a halt no
// interrupt can end: only the replayed write gets the machine out)
const RESET = [0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xfa, 0xf4];

async function run(guest: number[], coalesce: boolean, sync: boolean) {
  const vm = await createMachine({ memoryMiB: 4, backend: "kvm" });
  try {
    addPcDevices(vm, { coalesce });
    vm.loadFlat(Uint8Array.from(guest));
    const r = sync ? vm.runSync({ timeoutMs: 20_000 }) : await vm.run({ timeoutMs: 20_000 });
    const regs = vm.vcpu(0).getRegs();
    const kvmVcpu = (vm.vcpu(0).backend as KvmVcpuBackend).kvmVcpu;
    return {
      reason: r.reason,
      ebx: Number(regs.rbx & 0xffffffffn),
      ecx: Number(regs.rcx & 0xffffffffn),
      esi: Number(regs.rsi & 0xffffffffn),
      coalesced: kvmVcpu.coalescedWrites,
      unhandled: vm.io.unhandledReads + vm.io.unhandledWrites,
    };
  } finally {
    vm.close();
  }
}

describe.skipIf(!probe.usable)(`PCI configuration space on KVM${skipReason}`, () => {
  it("reads the host bridge, all-ones for an absent function, CONFIG_ADDRESS back; the same with 0xCF8 coalesced", async () => {
    const plain = await run(PROBE, false, true);
    expect(plain).toMatchObject({
      reason: "hlt",
      ebx: 0x06000002,
      ecx: 0xffffffff,
      esi: VENDOR_00_01_0,
      coalesced: 0,
      unhandled: 0,
    });
    for (const sync of [true, false]) {
      const c = await run(PROBE, true, sync);
      expect({ ...c, coalesced: 0 }).toEqual(plain);
      if (c.coalesced === 0) console.warn("this KVM lacks coalesced PIO: 0xCF8 writes exited");
      else expect(c.coalesced).toBe(2);
    }
  });

  it("a reset through 0xCF9, inside the coalesced zone, still resets (sync and async)", async () => {
    for (const sync of [true, false]) {
      const r = await run(RESET, true, sync);
      expect(r.reason).toBe("reset");
    }
  });
});
