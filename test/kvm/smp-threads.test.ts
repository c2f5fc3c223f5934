// SMP on KVM: a thread per vCPU enters KVM_RUN (lib/vmm/kvm-threads.ts), every exit is handled by
// the one loop on the main thread (lib/vmm/loop-threads.ts). The guest's BSP starts its APs as a PC
// does (INIT, SIPI, SIPI through the in-kernel local APIC) and every CPU adds to one counter with
// LOCK XADD: the total is exact only if the CPUs really ran, each to the end, with atomic adds.
// Timeouts, stop() and close() reach every vCPU; a run ends with every vCPU parked (registers
// readable); it ends as "hlt" once no vCPU can run again.

import { describe, expect, it } from "vitest";
import { KvmVcpuLimitError } from "../../lib/kvm/errors.js";
import { Kvm } from "../../lib/kvm/index.js";
import { createKvmBackend } from "../../lib/vmm/backends/kvm.js";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { probe, skipReason } from "./helpers.js";

const COUNTER = 0x7000;
const DONE = 0x7004;
const ITERS = 0x7008;
const NCPUS = 0x700c;
const BSP_AT = 0x8000;
/** SIPI vector 9: the APs start in real mode at 0900:0000 */
const AP_AT = 0x9000;

// Assembled with `as --32` from this source (32-bit, loaded at 0x8000, entered in protected mode):
//   orl $0x100, 0xfee000f0               ; APIC software enable
//   mov $1,%eax; cpuid; mov %ebx,%eax; out %eax,$0x58     ; the BSP's CPUID.1:EBX
//   movl $0, 0xfee00310                  ; ICR high
//   movl $0x000c4500, 0xfee00300; call wait_icr   ; INIT, all excluding self
//   movl $0x000c4609, 0xfee00300; call wait_icr   ; SIPI vector 9 (twice, as the MP spec does)
//   movl $0x000c4609, 0xfee00300; call wait_icr
//   mov ITERS,%ecx; 1: mov $1,%eax; lock xadd %eax,COUNTER; dec %ecx; jnz 1b
//   lock incl DONE
//   2: pause; mov DONE,%eax; cmp NCPUS,%eax; jne 2b    ; every CPU checked in
//   mov COUNTER,%eax; out %eax,$0x50; cli; 3: hlt; jmp 3b
//   wait_icr: testl $0x1000, 0xfee00300; jnz wait_icr; ret
// prettier-ignore
const BSP = [
  0x81, 0x0d, 0xf0, 0x00, 0xe0, 0xfe, 0x00, 0x01, 0x00, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0x89,
  0xd8, 0xe7, 0x58, 0xc7, 0x05, 0x10, 0x03, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x03, 0xe0,
  0xfe, 0x00, 0x45, 0x0c, 0x00, 0xe8, 0x55, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x09, 0x46,
  0x0c, 0x00, 0xe8, 0x46, 0x00, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x09, 0x46, 0x0c, 0x00, 0xe8,
  0x37, 0x00, 0x00, 0x00, 0x8b, 0x0d, 0x08, 0x70, 0x00, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xf0, 0x0f, 0xc1,
  0x05, 0x00, 0x70, 0x00, 0x00, 0x49, 0x75, 0xf0, 0xf0, 0xff, 0x05, 0x04, 0x70, 0x00, 0x00, 0xf3, 0x90, 0xa1,
  0x04, 0x70, 0x00, 0x00, 0x3b, 0x05, 0x0c, 0x70, 0x00, 0x00, 0x75, 0xf1, 0xa1, 0x00, 0x70, 0x00, 0x00, 0xe7,
  0x50, 0xfa, 0xf4, 0xeb, 0xfd, 0xf7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x00, 0x10, 0x00, 0x00, 0x75, 0xf4, 0xc3,
];
/** offsets of the BSP's wait loop for the other CPUs (pause .. jne) */
const BSP_WAIT = [0x69, 0x78];

// 16-bit, at 0x9000 (CS 0x0900): cli; xor %ax,%ax; mov %ax,%ds
//   mov $1,%eax; cpuid; mov %ebx,%eax; out %eax,$0x54    ; this AP's CPUID.1:EBX
//   mov ITERS,%ecx; 1: mov $1,%eax; lock xadd %eax,COUNTER; dec %ecx; jnz 1b
//   lock incl DONE; cli; 2: hlt; jmp 2b
// prettier-ignore
const AP = [
  0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0x66, 0x89, 0xd8, 0x66, 0xe7,
  0x54, 0x66, 0x8b, 0x0e, 0x08, 0x70, 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x66, 0xf0, 0x0f, 0xc1, 0x06, 0x00,
  0x70, 0x66, 0x49, 0x75, 0xef, 0x66, 0xf0, 0xff, 0x06, 0x04, 0x70, 0xfa, 0xf4, 0xeb, 0xfd,
];
/** the AP's report (through `out %eax,$0x54`), then `jmp $` forever */
const AP_SPIN = [...AP.slice(0, 0x13), 0xeb, 0xfe];
const AP_SPIN_AT = 0x13;

interface Report {
  vcpu: number;
  port: number;
  value: number;
}

/** A machine with `n` vCPUs running the guest above; `reports` collects its port writes. */
async function smpMachine(
  n: number,
  opts: { iters?: number; cpus?: number; ap?: number[]; bsp?: number[] } = {},
): Promise<{ vm: Machine; reports: Report[] }> {
  const vm = await createMachine({ memoryMiB: 4, vcpus: n, backend: "kvm" });
  try {
    expect(vm.backendInfo.kind).toBe("kvm");
    expect(vm.vcpuCount).toBe(n);
    vm.loadFlat(Uint8Array.from(opts.bsp ?? BSP), { address: BSP_AT, mode: "protected" });
    vm.memory.write(AP_AT, Uint8Array.from(opts.ap ?? AP));
    vm.memory.writeU32(ITERS, opts.iters ?? 1000);
    vm.memory.writeU32(NCPUS, opts.cpus ?? n);
    const reports: Report[] = [];
    vm.on("exit", (exit, info) => {
      if (exit.kind === "io" && exit.direction === "out" && exit.size === 4) {
        const value = new DataView(exit.data.buffer, exit.data.byteOffset, 4).getUint32(0, true);
        reports.push({ vcpu: info.vcpu, port: exit.port, value });
      }
    });
    return { vm, reports };
  } catch (e) {
    vm.close();
    throw e;
  }
}

/** CPUID.1:EBX as a CPU reported it: [APIC id, logical processors in the package] */
const cpuidIds = (ebx: number) => [ebx >>> 24, (ebx >>> 16) & 0xff];

const noThreads = probe.usable && probe.binding !== "addon";
describe.skipIf(!probe.usable || noThreads)(
  `SMP on KVM${noThreads ? ` (skipped: SMP on KVM needs the addon binding; this run uses ${probe.binding})` : skipReason}`,
  () => {
    it.each([
      [2, "async"],
      [2, "sync"],
      [4, "async"],
    ] as const)(
      "%i vCPUs (%s): INIT/SIPI/SIPI starts the APs, LOCK XADD sums exactly, the run ends as hlt",
      async (n, mode) => {
        const iters = 1_000_000;
        const { vm, reports } = await smpMachine(n, { iters });
        try {
          const r =
            mode === "async" ? await vm.run({ timeoutMs: 240_000 }) : vm.runSync({ timeoutMs: 240_000 });
          expect(r.reason, r.message).toBe("hlt");
          // every CPU added `iters` ones, atomically: not one lost
          expect(vm.memory.readU32(COUNTER)).toBe(n * iters);
          expect(vm.memory.readU32(DONE)).toBe(n);
          expect(reports.filter((x) => x.port === 0x50)).toEqual([{ vcpu: 0, port: 0x50, value: n * iters }]);
          // each CPU's CPUID names its own APIC id (= its vCPU index) and the package's n CPUs, and
          // each report came as an exit of the vCPU that made it
          const bsp = reports.filter((x) => x.port === 0x58);
          expect(bsp.map((x) => [x.vcpu, ...cpuidIds(x.value)])).toEqual([[0, 0, n]]);
          const aps = reports.filter((x) => x.port === 0x54).sort((a, b) => a.vcpu - b.vcpu);
          expect(aps.map((x) => [x.vcpu, ...cpuidIds(x.value)])).toEqual(
            Array.from({ length: n - 1 }, (_, i) => [i + 1, i + 1, n]),
          );
          // parked at the end: every vCPU's registers read, the APs where the SIPI started them
          for (let i = 1; i < n; i++) {
            const s = vm.vcpu(i).getSregs();
            expect(s.cs.base).toBe(BigInt(AP_AT));
            expect(vm.vcpu(i).getRegs().rflags & 0x200n).toBe(0n);
          }
        } finally {
          vm.close();
        }
      },
    );

    it("a timeout, stop() and close() reach every vCPU; registers are read after each run; runs resume", async () => {
      // the AP reports and spins; the BSP waits for a CPU count that never comes
      const { vm, reports } = await smpMachine(2, { iters: 1, cpus: 99, ap: AP_SPIN });
      try {
        const r1 = await vm.run({ timeoutMs: 500 });
        expect(r1.reason).toBe("timeout");
        expect(reports.filter((x) => x.port === 0x54).map((x) => x.vcpu)).toEqual([1]);
        // both vCPUs were kicked out of the guest and parked where they spin
        expect(vm.vcpu(1).getRegs().rip).toBe(BigInt(AP_SPIN_AT));
        const bspRip = Number(vm.vcpu(0).getRegs().rip) - BSP_AT;
        expect(bspRip).toBeGreaterThanOrEqual(BSP_WAIT[0]!);
        expect(bspRip).toBeLessThan(BSP_WAIT[1]!);

        setTimeout(() => vm.stop(), 200);
        const r2 = await vm.run({ timeoutMs: 120_000 });
        expect(r2.reason).toBe("stopped");
        expect(vm.vcpu(1).getRegs().rip).toBe(BigInt(AP_SPIN_AT));

        const r3 = vm.runSync({ timeoutMs: 300 });
        expect(r3.reason).toBe("timeout");
        expect(vm.vcpu(1).getRegs().rip).toBe(BigInt(AP_SPIN_AT));

        // an AbortSignal is stop() too
        const r4 = await vm.run({ timeoutMs: 120_000, signal: AbortSignal.timeout(200) });
        expect(r4.reason).toBe("stopped");

        const running = vm.run({ timeoutMs: 120_000 });
        setTimeout(() => vm.close(), 200);
        const r5 = await running;
        expect(r5.reason).toBe("stopped");
        expect(vm.closed).toBe(true);
      } finally {
        vm.close();
      }
    });

    it("the run ends as hlt when the BSP halts with interrupts off while the AP waits for SIPI", async () => {
      for (const mode of ["async", "sync"] as const) {
        const { vm } = await smpMachine(2, { bsp: [0xfa, 0xf4, 0xeb, 0xfd] }); // cli; 1: hlt; jmp 1b
        try {
          const r =
            mode === "async" ? await vm.run({ timeoutMs: 60_000 }) : vm.runSync({ timeoutMs: 60_000 });
          expect(r.reason, `${mode}: ${r.message}`).toBe("hlt");
          // the AP never ran: still at its reset state
          expect(vm.vcpu(1).getSregs().cs.selector).toBe(0xf000);
        } finally {
          vm.close();
        }
      }
    });

    it("a BSP halted with interrupts on is no final halt: the run goes on to its timeout", async () => {
      const { vm } = await smpMachine(2, { bsp: [0xfb, 0xf4, 0xeb, 0xfd] }); // sti; 1: hlt; jmp 1b
      try {
        const r = await vm.run({ timeoutMs: 400 });
        expect(r.reason).toBe("timeout");
      } finally {
        vm.close();
      }
    });

    it("vCPU counts past KVM's limit or nodevmm's 64 are refused with a typed error", async () => {
      const kvm = Kvm.open();
      let limits: { recommended: number; max: number };
      try {
        limits = kvm.vcpuLimits();
      } finally {
        kvm.close();
      }
      expect(limits.recommended).toBeGreaterThanOrEqual(1);
      expect(limits.max).toBeGreaterThanOrEqual(limits.recommended);
      const over = Math.min(limits.max, 64) + 1;
      let error: unknown;
      try {
        createKvmBackend({ memoryBytes: 1 << 20, vcpus: over }).close();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(KvmVcpuLimitError);
      expect((error as KvmVcpuLimitError).requested).toBe(over);
      await expect(createMachine({ memoryMiB: 4, vcpus: 65, backend: "kvm" })).rejects.toThrow(
        MachineConfigError,
      );
    });

    it("with the koffi binding, SMP on KVM is refused (backend: kvm) or runs on soft (auto)", async () => {
      const before = process.env.NODEVMM_BINDING;
      process.env.NODEVMM_BINDING = "koffi";
      try {
        let vm: Machine | undefined;
        try {
          vm = await createMachine({ memoryMiB: 4, vcpus: 1, backend: "kvm" });
        } catch (e) {
          console.warn(`koffi binding not usable here, part skipped: ${(e as Error).message}`);
          return;
        }
        vm.close();
        await expect(createMachine({ memoryMiB: 4, vcpus: 2, backend: "kvm" })).rejects.toThrow(
          /addon binding/,
        );
        const auto = await createMachine({ memoryMiB: 4, vcpus: 2 });
        try {
          expect(auto.backendInfo.kind).toBe("soft");
          expect(auto.backendInfo.fallbackReason).toMatch(/addon binding/);
        } finally {
          auto.close();
        }
      } finally {
        if (before === undefined) delete process.env.NODEVMM_BINDING;
        else process.env.NODEVMM_BINDING = before;
      }
    });
  },
);
