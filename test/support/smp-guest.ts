// The SMP test guest (examples/guests/smp.c, image examples/images/smp.elf): what it prints for each
// test and CPU count, and a run through createMachine as a user's program would do it (the image
// loaded as a multiboot kernel with the test on its command line, the PC devices attached). The
// guest finds its CPUs in the ACPI MADT, starts them with INIT/SIPI/SIPI and reports over COM1; its
// verdict goes to isa-debug-exit. Shared by the SMP suites of test/soft, test/kvm, test/cli and
// test/examples (bench/smp, compiled to dist without test/, has its own few lines).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { computeSum } from "../../examples/guests/smp-compute.js";
import type { RunResult } from "../../lib/vmm/loop.js";
import { createMachine, type MachineOptions } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";

export const SMP_IMAGE_PATH = "examples/images/smp.elf";
export const smpImage = (): Uint8Array =>
  new Uint8Array(readFileSync(join(import.meta.dirname, "..", "..", SMP_IMAGE_PATH)));

export const SMP_TESTS = [
  "xadd",
  "spinlock",
  "pingpong",
  "initsipi",
  "shootdown",
  "ioapic",
  "compute",
  "ipi",
] as const;
export type SmpTest = (typeof SMP_TESTS)[number];

/** the value the guest writes to isa-debug-exit (the run's exit code is (value << 1) | 1) */
export const SMP_VERDICT = { pass: 0, fail: 1, cannot: 2 } as const;
export const exitCodeOf = (value: number): number => (value << 1) | 1;

/** what `n=` means for each test, and the guest's default when it is not given */
export const SMP_DEFAULT_N: Readonly<Record<SmpTest, number | undefined>> = {
  xadd: 1_000_000,
  spinlock: 1_000_000,
  pingpong: 1000,
  initsipi: undefined,
  shootdown: undefined,
  ioapic: 20,
  compute: 1_000_000,
  ipi: undefined,
};

/** tests that run on one CPU as well (the others need CPU 1) */
const ONE_CPU_TESTS: readonly SmpTest[] = ["xadd", "spinlock", "compute"];
export const needsTwoCpus = (test: SmpTest): boolean => !ONE_CPU_TESTS.includes(test);

export function smpCmdline(test: SmpTest, n?: number): string {
  return n === undefined ? `test=${test}` : `test=${test} n=${n}`;
}

/** The exact serial output and debug-exit value of a passing run (or of "needs 2 CPUs"). */
export function expectedSmp(
  test: SmpTest,
  cpus: number,
  n = SMP_DEFAULT_N[test],
): { out: string; value: number } {
  const ids = Array.from({ length: cpus }, (_, i) => i).join(" ");
  const header =
    `smp: the ACPI MADT lists ${cpus} ${cpus === 1 ? "CPU, APIC ID" : "CPUs, APIC IDs"} ${ids}\n` +
    `smp: ${cpus} ${cpus === 1 ? "CPU" : "CPUs"} running\n`;
  const cpuWord = cpus === 1 ? "CPU" : "CPUs";
  if (needsTwoCpus(test) && cpus < 2) {
    return { out: `${header}${test}: needs 2 CPUs\n`, value: SMP_VERDICT.cannot };
  }
  const line = {
    xadd: () => `xadd: ${cpus} ${cpuWord} x ${n} = ${cpus * n!}: ok`,
    spinlock: () => `spinlock: ${cpus} ${cpuWord} x ${n} = ${cpus * n!}: ok`,
    pingpong: () => `pingpong: ${n} rounds: CPU 1 took ${n} pings, CPU 0 took ${n} pongs: ok`,
    initsipi: () =>
      "initsipi: CPU 1 ran from CS 0x800, stopped at INIT, ran the second entry from CS 0x700: ok",
    shootdown: () =>
      "shootdown: CPU 1 read 0xaaaa1111, then 0xbbbb2222 after the IPI; CPU 0 read 0xaaaa1111, then 0xbbbb2222: ok",
    // nodevmm's MADT (lib/boot/acpi/pc.ts), as every PC's, sends ISA IRQ 0 to GSI 2
    ioapic: () => `ioapic: the PIT at GSI 2 to CPU 1: CPU 1 took ${n}, CPU 0 took 0: ok`,
    ipi: () => {
      // one digit per CPU, CPU 0 first: which CPUs took each IPI (flat logical IDs for the first 8)
      const digits = (took: (cpu: number) => boolean) =>
        Array.from({ length: cpus }, (_, i) => (took(i) ? "1" : "0")).join("");
      const logical = (i: number) => i < 8;
      return (
        `ipi: all-but-self ${digits((i) => i !== 0)}, all ${digits(() => true)}, self ${digits((i) => i === 0)}, ` +
        `logical-odd ${digits((i) => logical(i) && i % 2 === 1)}, broadcast ${digits(() => true)}, ` +
        `lowest-priority 1 of ${Math.min(cpus, 8) - 1}, nmi ${digits((i) => i === 1)}: ok`
      );
    },
    compute: () =>
      `compute: ${cpus} ${cpus === 1 ? "CPU" : "CPUs"}, ${n} values, sum 0x${computeSum(n!).toString(16)}`,
  }[test]();
  return { out: `${header}${line}\n`, value: SMP_VERDICT.pass };
}

export interface SmpRun {
  out: string;
  result: RunResult;
}

export interface SmpRunOptions {
  backend: "soft" | "kvm";
  vcpus: number;
  test: SmpTest;
  n?: number;
  deterministic?: boolean;
  /** soft: each vCPU in a worker thread of its own */
  vcpuThread?: boolean;
  memoryMiB?: number;
  timeoutMs?: number;
  /** runSync (the calling thread until the end) instead of the async run's slices */
  sync?: boolean;
}

/** Boots the guest on a fresh machine and runs it to its debug-exit (or a limit). */
export async function runSmpGuest(o: SmpRunOptions): Promise<SmpRun> {
  const opts: MachineOptions = { backend: o.backend, vcpus: o.vcpus, memoryMiB: o.memoryMiB ?? 16 };
  if (o.deterministic) opts.deterministic = true;
  if (o.vcpuThread !== undefined) opts.vcpuThread = o.vcpuThread;
  const vm = await createMachine(opts);
  try {
    let out = "";
    addPcDevices(vm, {
      serial: (b: Uint8Array) => {
        out += Buffer.from(b).toString("latin1");
      },
    });
    vm.load(smpImage(), { format: "multiboot", cmdline: smpCmdline(o.test, o.n) });
    const limits = { timeoutMs: o.timeoutMs ?? 60_000 };
    const result = o.sync ? vm.runSync(limits) : await vm.run(limits);
    return { out, result };
  } finally {
    vm.close();
  }
}
