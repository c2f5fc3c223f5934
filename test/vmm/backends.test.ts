// The machine over the real backends, where this host and build have them: the same guest, the
// same devices, the same loop. Skips (with the reason) a backend that is not available.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Doubler } from "../../examples/plugins/doubler.js";
import { addHypercallChannel } from "../../examples/plugins/hypercall.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { backendsDir, unavailable } from "./available.js";

const lib = backendsDir;
const examples = join(import.meta.dirname, "..", "..", "examples");
const example = (name: string) => readFileSync(join(examples, name));
const hasExamples = existsSync(join(examples, "images", "custom-device.bin"));

async function kvmHypercallGap(why: string | undefined): Promise<string | undefined> {
  if (why !== undefined) return why;
  if (!/EXIT_HYPERCALL/.test(readFileSync(join(lib, "kvm.ts"), "utf8")))
    return "the KVM backend does not enable KVM_CAP_EXIT_HYPERCALL";
  const mod = (await import("../../lib/vmm/backends/kvm.js")) as {
    hypercallExitsReachLoop?: () => { ok: boolean; reason?: string };
  };
  const reach = mod.hypercallExitsReachLoop?.();
  return reach && !reach.ok ? (reach.reason ?? "VMCALL does not reach user space here") : undefined;
}

// mov al,'o'; out 0xe9,al; mov al,'k'; out 0xe9,al; mov dx,0x3f8; mov al,'!'; out dx,al;
// mov al,3; out 0xf4,al; hlt
const HELLO = [
  0xb0, 0x6f, 0xe6, 0xe9, 0xb0, 0x6b, 0xe6, 0xe9, 0xba, 0xf8, 0x03, 0xb0, 0x21, 0xee, 0xb0, 0x03, 0xe6, 0xf4,
  0xf4,
];

for (const kind of ["kvm", "soft"] as const) {
  const why = unavailable(kind);
  const hypercallGap = kind === "kvm" ? await kvmHypercallGap(why) : undefined;
  describe.skipIf(why !== undefined)(`Machine on ${kind}${why ? ` (skipped: ${why})` : ""}`, () => {
    it("runs a boot sector: debug console, COM1, debug-exit, exit events", async () => {
      const vm = await createMachine({ memoryMiB: 16, backend: kind });
      try {
        expect(vm.backendInfo.kind).toBe(kind);
        const con: number[] = [];
        const com: number[] = [];
        addPcDevices(vm, { debugcon: (b) => con.push(...b), serial: (b) => com.push(...b) });
        const ports: number[] = [];
        vm.on("exit", (e) => {
          if (e.kind === "io") ports.push(e.port);
        });
        vm.loadFlat(Uint8Array.from(HELLO));
        const r = await vm.run({ timeoutMs: 20_000 });
        expect(r).toMatchObject({ reason: "debug-exit", exitCode: 7 });
        expect(String.fromCharCode(...con)).toBe("ok");
        expect(String.fromCharCode(...com)).toBe("!");
        expect(ports).toEqual([0xe9, 0xe9, 0x3f8, 0xf4]);
        // RIP is past the OUT that ended the run
        expect(vm.vcpu(0).getRegs().rip).toBe(0x7c00n + 18n);
        expect(vm.vcpu(0).dump()).toMatch(/^EIP=00007c12 /m);
      } finally {
        vm.close();
      }
    });

    it("a guest spinning without exits still ends at its timeout, sync and async", async () => {
      const vm = await createMachine({ memoryMiB: 16, backend: kind });
      try {
        vm.loadFlat(Uint8Array.from([0xeb, 0xfe])); // jmp $
        // the async run gives the event loop turns while the guest spins: a host timer fires during it
        let timerRanDuringRun = false;
        const running = vm.run({ timeoutMs: 300 });
        setTimeout(() => {
          timerRanDuringRun = vm.running;
        }, 20);
        expect((await running).reason).toBe("timeout");
        expect(timerRanDuringRun).toBe(true);
        expect((await vm.run({ timeoutMs: 100 })).reason).toBe("timeout");
        expect(vm.runSync({ timeoutMs: 100 }).reason).toBe("timeout");
      } finally {
        vm.close();
      }
    });

    it("with two machines open, each run's timeout interrupts its own vCPU", async () => {
      const a = await createMachine({ memoryMiB: 16, backend: kind });
      const b = await createMachine({ memoryMiB: 16, backend: kind });
      try {
        for (const vm of [a, b]) vm.loadFlat(Uint8Array.from([0xeb, 0xfe]));
        expect((await b.run({ timeoutMs: 100 })).reason).toBe("timeout");
        expect((await a.run({ timeoutMs: 100 })).reason).toBe("timeout");
      } finally {
        a.close();
        b.close();
      }
    });

    it.skipIf(!hasExamples)("custom-device example: a TypeScript device on port 0x500", async () => {
      const vm = await createMachine({ memoryMiB: 64, backend: kind });
      try {
        const out: number[] = [];
        addPcDevices(vm, { serial: (b) => out.push(...b) });
        vm.addDevice(new Doubler()); // examples/plugins: what --plugin loads from a shell
        vm.loadFlat(example("images/custom-device.bin"), { address: 0x100000, mode: "protected" });
        const r = await vm.run({ timeoutMs: 20_000 });
        expect(r.reason).toBe("hlt");
        expect(Buffer.from(out).toString()).toBe(
          readFileSync(join(examples, "guests", "custom-device.expected"), "utf8"),
        );
      } finally {
        vm.close();
      }
    });

    // KVM surfaces VMCALL only once the backend enables KVM_CAP_EXIT_HYPERCALL (bit 12), and not at
    // all on kvm-pvm hosts (the backend's hypercallExitsReachLoop() says so): there the guest
    // would wait forever.
    it.skipIf(!hasExamples || hypercallGap !== undefined)(
      `hypercall example: VMCALL answered by an exit handler${hypercallGap ? ` (skipped: ${hypercallGap})` : ""}`,
      async () => {
        const vm = await createMachine({ memoryMiB: 64, backend: kind });
        try {
          const out: number[] = [];
          addPcDevices(vm, { serial: (b) => out.push(...b) });
          const channel = addHypercallChannel(vm);
          vm.loadFlat(example("images/hypercall.bin"), { address: 0x100000, mode: "long" });
          const r = await vm.run({ timeoutMs: 20_000 });
          expect(Buffer.from(out).toString()).toBe(
            readFileSync(join(examples, "guests", "hypercall.expected"), "utf8"),
          );
          expect(r.reason).toBe("hlt");
          expect(channel.calls).toBeGreaterThan(0);
        } finally {
          vm.close();
        }
      },
    );

    it("cli; hlt ends the run as hlt", async () => {
      const vm = await createMachine({ memoryMiB: 16, backend: kind });
      try {
        vm.loadFlat(Uint8Array.from([0xfa, 0xf4]));
        expect((await vm.run({ timeoutMs: 20_000 })).reason).toBe("hlt");
      } finally {
        vm.close();
      }
    });
  });
}
