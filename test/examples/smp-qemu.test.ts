// The SMP guest (examples/images/smp.elf) on QEMU, the reference: a multiboot kernel under
// `qemu-system-i386 -smp N -kernel`, SeaBIOS's ACPI tables, QEMU's APICs, and TCG running each CPU
// in a thread of its own (races are real there). Its output must be what test/support/smp-guest.ts
// expects of nodevmm, so a failure on our side is the VMM's, not the guest's. Skipped with the
// reason when QEMU is not installed (Debian: qemu-system-x86).

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../support/dist.js";
import {
  exitCodeOf,
  expectedSmp,
  SMP_IMAGE_PATH,
  SMP_TESTS,
  type SmpTest,
  smpCmdline,
} from "../support/smp-guest.js";

const QEMU = "qemu-system-i386";
const version = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
const missing = version.error || version.status !== 0 ? `${QEMU} is not installed` : undefined;
if (missing) console.warn(`test/examples/smp-qemu: skipped: ${missing}`);

const N: Partial<Record<SmpTest, number>> = {
  xadd: 200_000,
  spinlock: 100_000,
  pingpong: 200,
  ioapic: 10,
  compute: 100_000,
};

function qemu(test: SmpTest, cpus: number) {
  const r = spawnSync(
    QEMU,
    [
      ...["-accel", "tcg,thread=multi", "-M", "pc", "-m", "64", "-smp", String(cpus)],
      ...["-kernel", join(root, SMP_IMAGE_PATH), "-append", smpCmdline(test, N[test])],
      ...["-device", "isa-debug-exit,iobase=0xf4,iosize=4"],
      ...["-serial", "stdio", "-display", "none", "-monitor", "none", "-nodefaults"],
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  return { status: r.status, stdout: r.stdout };
}

describe.skipIf(missing !== undefined)(
  `the SMP guest on QEMU TCG${missing ? ` (skipped: ${missing})` : ""}`,
  () => {
    const cases: { test: SmpTest; cpus: number }[] = [1, 2, 4].flatMap((cpus) =>
      SMP_TESTS.map((test) => ({ test, cpus })),
    );
    // eight CPUs: the flat logical IDs' full byte
    cases.push({ test: "ipi", cpus: 8 }, { test: "xadd", cpus: 8 });
    for (const { test, cpus } of cases) {
      it(`${test} with -smp ${cpus}`, () => {
        const want = expectedSmp(test, cpus, N[test]);
        const r = qemu(test, cpus);
        expect(r.stdout).toBe(want.out);
        expect(r.status).toBe(exitCodeOf(want.value));
      });
    }
  },
);
