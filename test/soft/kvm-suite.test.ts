// The guests of the KVM suite (test/kvm/guests.test.ts, test/kvm/machine.test.ts) on the soft
// backend, set up by the same helpers and expected to give the same observable results. The guest
// bytes are those of the KVM tests (they are not exported from there).
import { describe, expect, it } from "vitest";
import { I8259Pair } from "../../lib/devices/i8259.js";
import type { KvmVcpu } from "../../lib/kvm/index.js";
import type { VmExit } from "../../lib/types/exits.js";
import type { VcpuBackend } from "../../lib/vmm/backend.js";
import { createSoftBackend } from "../../lib/vmm/backends/soft.js";
import { enterLongMode, enterProtectedMode, enterRealMode, u32 } from "../kvm/helpers.js";

const RAM = 0x10000; // as makeVm(): 64 KiB, so 0x10000 and up is MMIO

function soft(code: number[], pic?: I8259Pair) {
  const backend = createSoftBackend({ memoryBytes: RAM, ...(pic ? { interruptController: pic } : {}) });
  backend.memory.write(0x1000, Uint8Array.from(code));
  const vcpu = backend.createVcpu(0);
  // the helpers only use getRegs/setRegs/getSregs/setSregs, whose shapes the two backends share
  const asKvm = vcpu as unknown as KvmVcpu;
  return { backend, vcpu, asKvm, ram: backend.memory.view(0, RAM) };
}

function expectIo(exit: VmExit): Extract<VmExit, { kind: "io" }> {
  if (exit.kind !== "io") throw new Error(`expected an io exit, got ${exit.kind}`);
  return exit;
}

function runToHlt(vcpu: VcpuBackend, onIo: (e: Extract<VmExit, { kind: "io" }>) => void): void {
  for (let exit = vcpu.run(); exit.kind !== "hlt"; exit = vcpu.run()) onIo(expectIo(exit));
}

describe("the KVM suite's guests on the soft backend", () => {
  it("real mode: prints through OUT 0x3f8, then HLT", () => {
    const msg = "Hi KVM\n";
    const g = soft([
      0xba, 0xf8, 0x03, 0xbe, 0x10, 0x10, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xf4,
    ]);
    g.backend.memory.write(0x1010, new TextEncoder().encode(`${msg}\0`));
    enterRealMode(g.asKvm, 0x1000);
    let out = "";
    runToHlt(g.vcpu, (io) => {
      expect({ port: io.port, direction: io.direction, size: io.size, count: io.count }).toEqual({
        port: 0x3f8,
        direction: "out",
        size: 1,
        count: 1,
      });
      out += String.fromCharCode(io.data[0]!);
    });
    expect(out).toBe(msg);
    expect(g.vcpu.getRegs().rip).toBe(0x100fn);
  });

  it("string I/O: REP OUTSB delivers its bytes, size*count per exit", () => {
    const g = soft([0xba, 0xf8, 0x03, 0xbe, 0x10, 0x10, 0xb9, 0x05, 0x00, 0xfc, 0xf3, 0x6e, 0xf4]);
    g.backend.memory.write(0x1010, new TextEncoder().encode("abcde"));
    enterRealMode(g.asKvm, 0x1000);
    let out = "";
    runToHlt(g.vcpu, (io) => {
      expect(io.data.length).toBe(io.size * io.count);
      out += new TextDecoder().decode(io.data);
    });
    expect(out).toBe("abcde");
  });

  it("protected mode: a 32-bit OUT of EAX", () => {
    const g = soft([0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4]);
    enterProtectedMode(g.asKvm, 0x1000);
    const io = expectIo(g.vcpu.run());
    expect(io.size).toBe(4);
    expect(u32(io.data)).toBe(0x12345678);
    expect(g.vcpu.run().kind).toBe("hlt");
    expect(g.vcpu.getSregs().cr0 & 1n).toBe(1n);
  });

  it("long mode with test-built page tables: 64-bit register", () => {
    const g = soft([
      0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4,
    ]);
    enterLongMode(g.asKvm, g.ram, 0x1000);
    const io = expectIo(g.vcpu.run());
    expect(u32(io.data)).toBe(0x55667788);
    expect(g.vcpu.run().kind).toBe("hlt");
    expect(g.vcpu.getRegs().rax).toBe(0x1122334455667788n);
    expect(g.vcpu.getSregs().efer & 0x400n).toBe(0x400n);
  });

  it("MMIO: the test completes a read and sees a write", () => {
    const g = soft([
      0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa1, 0x10, 0x00, 0xa3, 0x20, 0x00, 0xba, 0xf8, 0x03, 0xef, 0xf4,
    ]);
    enterRealMode(g.asKvm, 0x1000);
    const read = g.vcpu.run();
    expect(read).toMatchObject({ kind: "mmio", address: 0x10010, length: 2, write: false });
    if (read.kind !== "mmio") throw new Error("unreachable");
    read.data.set([0xcd, 0xab]);
    const write = g.vcpu.run();
    expect(write).toMatchObject({ kind: "mmio", address: 0x10020, length: 2, write: true });
    if (write.kind !== "mmio") throw new Error("unreachable");
    expect([...write.data]).toEqual([0xcd, 0xab]);
    const io = expectIo(g.vcpu.run());
    expect(io.data[0]! | (io.data[1]! << 8)).toBe(0xabcd);
  });

  it("CPUID and HLT: the leaf-0 vendor reaches the loop through OUT, then the guest halts", () => {
    // xor eax,eax; cpuid; mov eax,ebx; mov dx,0x3f8; out dx,eax; hlt (protected mode)
    const g = soft([0x31, 0xc0, 0x0f, 0xa2, 0x89, 0xd8, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4]);
    enterProtectedMode(g.asKvm, 0x1000);
    const io = expectIo(g.vcpu.run());
    // EBX of leaf 0 is the first four vendor characters, whatever the vendor
    expect(new TextDecoder().decode(io.data)).toMatch(/^[A-Za-z ]{4}$/);
    const hlt = g.vcpu.run();
    expect(hlt.kind).toBe("hlt");
    expect(g.vcpu.getRegs().rip).toBe(0x100cn);
  });

  it("interrupt injection: the guest takes IRQ 3 through its IVT and acknowledges it (8259 in the host)", () => {
    const pic = new I8259Pair();
    // biome-ignore format: guest bytes, as in test/kvm/machine.test.ts
    const g = soft(
      [
        0xfa, 0xc7, 0x06, 0x8c, 0x00, 0x00, 0x11, 0xc7, 0x06, 0x8e, 0x00, 0x00, 0x00, 0xb0, 0x11, 0xe6, 0x20,
        0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xf7, 0xe6, 0x21, 0xb0,
        0x01, 0xe6, 0x10, 0xfb, 0xf4, 0xeb, 0xfd,
      ],
      pic,
    );
    g.backend.memory.write(0x1100, Uint8Array.from([0xb0, 0x20, 0xe6, 0x20, 0xb0, 0x42, 0xe6, 0x11, 0xcf]));
    enterRealMode(g.asKvm, 0x1000);
    // the machine's port bus, reduced to the PIC: what the KVM irqchip does in the kernel
    const bus = (exit: VmExit): VmExit => {
      while (exit.kind === "io" && [0x20, 0x21, 0xa0, 0xa1].includes(exit.port)) {
        const range = exit.port >= 0xa0 ? 1 : 0;
        pic.write(exit.port & 1, 1, exit.data[0]!, range);
        exit = g.vcpu.run();
      }
      return exit;
    };
    expect(bus(g.vcpu.run())).toMatchObject({ kind: "io", port: 0x10, direction: "out" });
    g.backend.setIrqLine(3, true);
    g.backend.setIrqLine(3, false);
    let ack = bus(g.vcpu.run());
    // the soft backend reports HLT to the loop, which runs the vCPU again once the line is up
    for (let i = 0; i < 4 && ack.kind === "hlt"; i++) ack = bus(g.vcpu.run());
    expect(ack).toMatchObject({ kind: "io", port: 0x11 });
    if (ack.kind === "io") expect(ack.data[0]).toBe(0x42);
  });
});
