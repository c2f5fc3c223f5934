// MMIO that completes exactly once, in order (issue 13, "MMIO that completes"). The soft backend
// emulates an MMIO access by a VM exit and runs the instruction again; every instruction form that
// touches MMIO (test/support/mmio-cases.ts) must reach the device with each of its accesses once,
// in program order, at the width KVM gives it, and leave the registers and memory the instruction
// defines. Runs in real, protected and long mode where the form exists, and (vitest projects) with
// blocks and compiled blocks as well as single-stepped.

import { describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";
import { CASES } from "../support/mmio-cases.js";
import { APIC, Code, EBX, expectRun, Model, runCase } from "../support/mmio-guests.js";

describe("MMIO accesses complete exactly once, in order (soft backend)", () => {
  for (const c of CASES) {
    for (const mode of c.modes) {
      it(`${c.name} (${mode} mode)`, async () => {
        const run = await runCase("soft", mode, c.code);
        const model = new Model();
        const regs = c.expect(model, mode);
        expectRun(run, model, regs);
      });
    }
  }
});

// ---------------------------------------------------------------- the local APIC: self-IPIs and EOI

const IDTR = 0x2ff0;
const IDT = 0x3000;
const COUNT = 0x2000;
const VECTOR = 0x40;
const IPIS = 3;
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/**
 * Enables the LAPIC, sends itself an IPI with a read-modify-write of the ICR (`or dword
 * [apic+0x300], x`), and waits for IPIS interrupts; the handler counts, sends the next IPI while the
 * current one is in service, and writes EOI (which makes the next one deliverable at once).
 */
function selfIpiGuest(mode: "protected" | "long"): Code {
  const c = new Code(mode);
  const icr = [0x81]; // or dword [ebx+0x300], imm32
  c.raw(0xbc, ...le32(0x8000)); // mov esp, 0x8000
  c.abs([], [0x0f, 0x01], 3, IDTR); // lidt
  c.movAddr(EBX, APIC);
  c.mem([], [0xc7], 0, EBX, 0xf0, le32(0x1ff)); // SVR: enabled, spurious vector 0xff
  // with interrupts on, the IPI is pending as soon as the ICR write reaches the APIC: the
  // instruction must still retire before the interrupt is taken (or it would send another)
  c.raw(0xfb, 0x90); // sti; nop (out of the STI shadow)
  c.mem([], icr, 1, EBX, 0x300, le32(0x40000 | VECTOR)); // self, fixed
  c.label("wait");
  c.abs([], [0x83], 7, COUNT, [IPIS]); // cmp dword [COUNT], IPIS
  c.jShort(5, "wait"); // jne
  c.jShort(-1, "done");
  c.label("handler");
  c.abs([], [0xff], 0, COUNT); // inc dword [COUNT]
  c.abs([], [0x83], 7, COUNT, [IPIS]);
  c.jShort(3, "eoi"); // jae
  c.mem([], icr, 1, EBX, 0x300, le32(0x40000 | VECTOR));
  c.label("eoi");
  c.mem([], [0xc7], 0, EBX, 0xb0, le32(0)); // EOI
  c.raw(...(mode === "long" ? [0x48] : []), 0xcf); // iret
  c.label("done");
  c.raw(0xfa, 0xf4);
  return c;
}

describe("the local APIC's registers through MMIO (soft machine)", () => {
  for (const mode of ["protected", "long"] as const) {
    it(`self-IPIs sent by OR to the ICR and EOI written in the handler complete once each (${mode} mode)`, async () => {
      const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
      try {
        const apic: string[] = [];
        vm.on("exit", (e) => {
          if (e.kind === "mmio" && e.address >= APIC && e.address < APIC + 0x1000) {
            apic.push(`${e.write ? "W" : "R"} ${(e.address - APIC).toString(16)}`);
          }
        });
        const c = selfIpiGuest(mode);
        const code = c.link();
        const at = 0x10000;
        const handler = at + c.labels.get("handler")!;
        const gate = new Uint8Array(mode === "long" ? 16 : 8);
        const cs = mode === "long" ? 0x18 : 0x08;
        gate.set([
          handler & 0xff,
          (handler >> 8) & 0xff,
          cs,
          0,
          0,
          0x8e,
          (handler >> 16) & 0xff,
          handler >>> 24,
        ]);
        vm.memory.write(IDT + VECTOR * gate.length, gate);
        const idtr = new Uint8Array(10);
        const limit = 256 * gate.length - 1;
        idtr.set([limit & 0xff, limit >> 8, ...le32(IDT)]);
        vm.memory.write(IDTR, idtr);
        vm.loadFlat(code, { address: at, mode });
        const result = await vm.run({ timeoutMs: 30_000, maxExits: 10_000 });
        expect(result.reason, result.message).toBe("hlt");
        expect(vm.memory.readU32(COUNT)).toBe(IPIS);
        // SVR once; each IPI one ICR read and one ICR write (the next one from inside the handler,
        // before its EOI); each interrupt one EOI write. A vCPU in a worker thread reads the ICR
        // from its copy of the APIC's registers and posts its EOIs without exits (threads.ts)
        const threaded = vm.hasVcpuThread;
        const expected = ["W f0", ...(threaded ? [] : ["R 300"]), "W 300"];
        for (let i = 1; i < IPIS; i++) {
          expected.push(...(threaded ? ["W 300"] : ["R 300", "W 300", "W b0"]));
        }
        if (!threaded) expected.push("W b0");
        expect(apic).toEqual(expected);
      } finally {
        vm.close();
      }
    });
  }
});
