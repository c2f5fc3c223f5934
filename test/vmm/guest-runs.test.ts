// Small guests through createMachine on every real backend available here: how runs end (triple
// fault, spinning, limits), every exit reaching vm.on("exit"), string I/O, and a device's IRQ line
// delivered into the guest (KVM's in-kernel PIC, or the soft backend's i8259 pair via the VMCS).

import { describe, expect, it } from "vitest";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { unavailable } from "./available.js";

// guests/irq-strio.S (as --32; objcopy -O binary): programs the PIC pair (base 0x20, only IRQ5
// unmasked), STI, OUT 0x500 (the host pulses IRQ5), waits for the handler (which writes 'I' to 0xE9
// and EOIs), then REP OUTSB "abc" to 0xE9, REP INSW two words from 0x501 to 0x7E00, CLI; HLT.
const IRQ_STRIO = [
  0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0xfc, 0x31, 0xdb, 0xc7, 0x06, 0x94, 0x00, 0x4b, 0x7c, 0xc7, 0x06, 0x96,
  0x00, 0x00, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6,
  0x21, 0xb0, 0xdf, 0xe6, 0x21, 0xfb, 0xba, 0x00, 0x05, 0xee, 0x83, 0xfb, 0x01, 0x75, 0xfb, 0xbe, 0x57, 0x7c,
  0xb9, 0x03, 0x00, 0xba, 0xe9, 0x00, 0xf3, 0x6e, 0xbf, 0x00, 0x7e, 0xb9, 0x02, 0x00, 0xba, 0x01, 0x05, 0xf3,
  0x6d, 0xfa, 0xf4, 0xb0, 0x49, 0xe6, 0xe9, 0xb0, 0x20, 0xe6, 0x20, 0xbb, 0x01, 0x00, 0xcf, 0x61, 0x62, 0x63,
];
// guests/irq-hlt.S: the same PIC set-up, then STI and HLT until the IRQ5 handler ran (it writes 'I'
// to 0xE9 and EOIs), then CLI; HLT. Only the host can raise the line.
const IRQ_HLT = [
  0x31, 0xc0, 0x8e, 0xd8, 0x31, 0xdb, 0xc7, 0x06, 0x94, 0x00, 0x2f, 0x7c, 0xc7, 0x06, 0x96, 0x00, 0x00, 0x00,
  0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xdf,
  0xe6, 0x21, 0xfb, 0xf4, 0x83, 0xfb, 0x01, 0x75, 0xfa, 0xfa, 0xf4, 0xb0, 0x49, 0xe6, 0xe9, 0xb0, 0x20, 0xe6,
  0x20, 0xbb, 0x01, 0x00, 0xcf,
];
const SPIN = [0xeb, 0xfe]; // jmp $
// 32-bit: mov eax,0x12345678; mov [0x2000000],eax; mov ebx,[0x2000004]; mov dx,[0x3000000]; cli; hlt
// (16 MiB of RAM: both addresses are MMIO, the second unregistered)
const MMIO = [
  0xb8, 0x78, 0x56, 0x34, 0x12, 0xa3, 0x00, 0x00, 0x00, 0x02, 0x8b, 0x1d, 0x04, 0x00, 0x00, 0x02, 0x66, 0x8b,
  0x15, 0x00, 0x00, 0x00, 0x03, 0xfa, 0xf4,
];
const STI_HLT = [0xfb, 0xf4, 0xeb, 0xfd]; // sti; 1: hlt; jmp 1
const PORT_LOOP = [0xe6, 0x80, 0xeb, 0xfc]; // 1: out 0x80,al; jmp 1
const UD2 = [0x0f, 0x0b];
// mov al,'A'; out 0xe9,al; cli; hlt (the same meaning in 16-, 32- and 64-bit code)
const A_HLT = [0xb0, 0x41, 0xe6, 0xe9, 0xfa, 0xf4];
// mov al,0xfe; out 0x64,al; jmp $  (i8042 "pulse reset line")
const KBD_RESET = [0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe];

async function withMachine(kind: "kvm" | "soft", body: (vm: Machine) => Promise<void>): Promise<void> {
  const vm = await createMachine({ memoryMiB: 16, backend: kind });
  try {
    await body(vm);
  } finally {
    vm.close();
  }
}

for (const kind of ["kvm", "soft"] as const) {
  const why = unavailable(kind);
  describe.skipIf(why !== undefined)(`guest runs on ${kind}${why ? ` (skipped: ${why})` : ""}`, () => {
    it("a triple fault ends the run as shutdown, sync and async, with a register dump", async () => {
      for (const sync of [true, false]) {
        await withMachine(kind, async (vm) => {
          // ud2 in protected mode with an empty IDT: #UD -> #GP -> #DF -> triple fault
          vm.loadFlat(Uint8Array.from(UD2), { mode: "protected" });
          const r = sync ? vm.runSync({ timeoutMs: 20_000 }) : await vm.run({ timeoutMs: 20_000 });
          expect(r.reason).toBe("shutdown");
          expect(r.exit?.kind).toBe("shutdown");
          const report = vm.vcpu(0).report();
          expect(report).toMatch(/^EIP=00100000 /m);
          expect(report).toMatch(/^CS =0008 00000000 ffffffff 00cf9b00 DPL=0 CS32 \[-RA\]$/m);
          expect(report).toMatch(/ud2/);
        });
      }
    });

    it("a guest spinning forever ends at its timeout with its registers intact", async () => {
      await withMachine(kind, async (vm) => {
        vm.loadFlat(Uint8Array.from(SPIN));
        const r = vm.runSync({ timeoutMs: 150 });
        expect(r.reason).toBe("timeout");
        expect(r.message).toMatch(/150 ms/);
        expect(vm.vcpu(0).getRegs().rip).toBe(0x7c00n);
        expect(vm.vcpu(0).dump()).toMatch(/^EIP=00007c00 /m);
      });
    });

    it("maxExits stops after that many exits, and vm.on('exit') saw each of them", async () => {
      await withMachine(kind, async (vm) => {
        vm.loadFlat(Uint8Array.from(PORT_LOOP));
        const seen: string[] = [];
        vm.on("exit", (e) => seen.push(e.kind === "io" ? `io:${e.port}` : e.kind));
        const r = await vm.run({ maxExits: 40, timeoutMs: 20_000 });
        expect(r.reason).toBe("max-exits");
        expect(r.exits).toBe(40);
        expect(seen).toHaveLength(40);
        // the port exits are all there; KVM may add interruptions (kicks), which are exits too
        expect(seen.filter((s) => s === "io:128").length).toBeGreaterThan(30);
        expect(vm.stats.exits).toBe(40);
        expect(vm.io.unhandledWrites).toBe(seen.filter((s) => s === "io:128").length);
      });
    });

    if (kind === "soft") {
      // the soft backend counts through the VMX preemption timer, which ticks every 2^5 instructions
      it("maxInstructions stops a spinning guest at the first timer tick at or after the limit", async () => {
        await withMachine(kind, async (vm) => {
          vm.loadFlat(Uint8Array.from(SPIN));
          const r = await vm.run({ maxInstructions: 12_345, timeoutMs: 20_000 });
          expect(r.reason).toBe("max-instructions");
          expect(r.instructions).toBeGreaterThanOrEqual(12_345);
          expect(r.instructions).toBeLessThan(12_345 + 32);
        });
      });
    } else {
      it("maxInstructions is refused with a clear error (KVM does not count instructions)", async () => {
        await withMachine(kind, async (vm) => {
          vm.loadFlat(Uint8Array.from(SPIN));
          expect(() => vm.runSync({ maxInstructions: 10 })).toThrow(MachineConfigError);
        });
      });
    }

    it("i8042 reset (0xFE to port 0x64) ends the run with reason reset", async () => {
      await withMachine(kind, async (vm) => {
        addPcDevices(vm);
        vm.loadFlat(Uint8Array.from(KBD_RESET));
        const r = await vm.run({ timeoutMs: 20_000 });
        expect(r.reason).toBe("reset");
      });
    });

    it("translate() walks the long-mode tables the loader built, as the guest sees them", async () => {
      await withMachine(kind, async (vm) => {
        vm.loadFlat(Uint8Array.from(A_HLT), { mode: "long", address: 0x200000 });
        expect(vm.runSync({ timeoutMs: 20_000 }).reason).toBe("hlt");
        const v = vm.vcpu(0);
        const t = v.translate(0x201234n);
        expect(t).toMatchObject({ mode: "4-level", physical: 0x201234n, pageSize: 2 * 1024 * 1024 });
        expect(t.levels.length).toBeGreaterThanOrEqual(3);
        expect(v.translate(0x0000_8000_0000_0000n).fault).toMatch(/canonical/);
        // the bytes after the HLT are zero RAM, read through the same tables
        expect(v.disassemble(1)[0]).toMatchObject({
          address: 0x200006n,
          text: expect.stringMatching(/^add /),
        });
      });
    });

    it("HLT with interrupts on waits for the host: the run ends at its timeout, not as hlt", async () => {
      await withMachine(kind, async (vm) => {
        vm.loadFlat(Uint8Array.from(STI_HLT));
        expect((await vm.run({ timeoutMs: 150 })).reason).toBe("timeout");
        expect(vm.runSync({ timeoutMs: 100 }).reason).toBe("timeout");
      });
    });

    it("a halted guest wakes when the host raises its IRQ line during an async run", async () => {
      await withMachine(kind, async (vm) => {
        const con: number[] = [];
        vm.io.onOut(0xe9, (_p, _s, v) => con.push(v));
        vm.loadFlat(Uint8Array.from(IRQ_HLT));
        let halted = 0;
        vm.on("exit", (e) => {
          if (e.kind === "hlt" || e.kind === "intr") halted++;
        });
        const timer = setTimeout(() => vm.irqLine(5).pulse(), 100);
        const r = await vm.run({ timeoutMs: 20_000 });
        clearTimeout(timer);
        expect(r.reason).toBe("hlt");
        expect(String.fromCharCode(...con)).toBe("I");
        // while halted the loop sleeps between looks rather than spinning through exits
        expect(halted).toBeLessThan(50);
      });
    });

    it("MMIO outside RAM reaches the MMIO handlers; an unregistered read is all-ones", async () => {
      await withMachine(kind, async (vm) => {
        const writes: string[] = [];
        vm.mmio.onWrite(0x2000000, 0x1000, (a, size, v) =>
          writes.push(`${a.toString(16)}/${size}=${v.toString(16)}`),
        );
        vm.mmio.onRead(0x2000000, 0x1000, (a, size) => (a === 0x2000004 && size === 4 ? 0xcafef00d : 0));
        const unhandled: number[] = [];
        vm.on("unhandled", (u) => unhandled.push(u.address));
        vm.loadFlat(Uint8Array.from(MMIO), { mode: "protected" });
        const r = await vm.run({ timeoutMs: 20_000 });
        expect(r.reason).toBe("hlt");
        expect(writes).toEqual(["2000000/4=12345678"]);
        const regs = vm.vcpu(0).getRegs();
        expect(regs.rbx).toBe(0xcafef00dn);
        expect(regs.rdx & 0xffffn).toBe(0xffffn);
        expect(unhandled).toEqual([0x3000000]);
      });
    });

    it("an IRQ line pulsed by the host reaches the guest's handler; REP OUTS/INS go through the bus", async () => {
      await withMachine(kind, async (vm) => {
        const con: number[] = [];
        vm.io.onOut(0xe9, (_p, _s, v) => con.push(v));
        vm.io.onOut(0x500, () => vm.irqLine(5).pulse());
        let word = 0x4241;
        vm.io.onIn(0x501, () => word++, 1);
        vm.loadFlat(Uint8Array.from(IRQ_STRIO));
        const r = await vm.run({ timeoutMs: 20_000 });
        expect(r.reason).toBe("hlt");
        expect(String.fromCharCode(...con)).toBe("Iabc");
        expect([...vm.memory.read(0x7e00, 4)]).toEqual([0x41, 0x42, 0x42, 0x42]);
      });
    });
  });
}
