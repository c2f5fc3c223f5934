// The guests of the KVM suite on the soft backend: the very guests test/kvm/guests.test.ts runs on
// /dev/kvm (test/support/shared-guests.ts), set up by the same mode helpers and held to the same
// expectations; and the IRQ 3 guest of test/kvm/machine.test.ts with an 8259 in the host.
import { describe, expect, it } from "vitest";
import { I8259Pair } from "../../lib/devices/i8259.js";
import type { VmExit } from "../../lib/types/exits.js";
import { createSoftBackend } from "../../lib/vmm/backends/soft.js";
import { enterRealMode } from "../support/modes.js";
import { GUEST_RAM_BYTES, IRQ3_GUEST, SHARED_GUESTS } from "../support/shared-guests.js";

function soft(pic?: I8259Pair) {
  const backend = createSoftBackend({
    memoryBytes: GUEST_RAM_BYTES,
    ...(pic ? { interruptController: pic } : {}),
  });
  const vcpu = backend.createVcpu(0);
  return { backend, vcpu, ram: backend.memory.view(0, GUEST_RAM_BYTES) };
}

describe("the KVM suite's guests on the soft backend", () => {
  for (const guest of SHARED_GUESTS) {
    it(guest.name, () => {
      const { vcpu, ram } = soft();
      guest.run({ vcpu, ram });
    });
  }

  it("interrupt injection: the guest takes IRQ 3 through its IVT and acknowledges it (8259 in the host)", () => {
    const pic = new I8259Pair();
    const g = soft(pic);
    g.ram.set(IRQ3_GUEST.code, IRQ3_GUEST.codeAt);
    g.ram.set(IRQ3_GUEST.handler, IRQ3_GUEST.handlerAt);
    enterRealMode(g.vcpu, IRQ3_GUEST.codeAt);
    // the machine's port bus, reduced to the PIC: what the KVM irqchip does in the kernel
    const bus = (exit: VmExit): VmExit => {
      while (exit.kind === "io" && [0x20, 0x21, 0xa0, 0xa1].includes(exit.port)) {
        const range = exit.port >= 0xa0 ? 1 : 0;
        pic.write(exit.port & 1, 1, exit.data[0]!, range);
        exit = g.vcpu.run();
      }
      return exit;
    };
    expect(bus(g.vcpu.run())).toMatchObject({ kind: "io", port: IRQ3_GUEST.readyPort, direction: "out" });
    g.backend.setIrqLine(IRQ3_GUEST.irq, true);
    g.backend.setIrqLine(IRQ3_GUEST.irq, false);
    let ack = bus(g.vcpu.run());
    // the soft backend reports HLT to the loop, which runs the vCPU again once the line is up
    for (let i = 0; i < 4 && ack.kind === "hlt"; i++) ack = bus(g.vcpu.run());
    expect(ack).toMatchObject({ kind: "io", port: IRQ3_GUEST.ackPort });
    if (ack.kind === "io") expect(ack.data[0]).toBe(IRQ3_GUEST.ackValue);
  });
});
