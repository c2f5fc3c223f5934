// Several soft machines in one process, under Promise.all: a guest that never exits (and one that
// is all hostage guest: the #UD loop) must not freeze the other machines or the event loop. Each
// async run hands the event loop back every few milliseconds, so the others' runs progress and end
// while the busy one is still spinning.

import { describe, expect, it } from "vitest";
import { createMachine, type Machine, type RunResult } from "../../lib/index.js";
import { Asm, CX } from "../support/asm.js";
import { FAULT_LOOP } from "../support/hostage-guests.js";

const JNZ = 5;
const BUSY_MS = 3000;

/** counts CX down from 60,000 forty times with a port write each round, then CLI; HLT */
function finiteGuest(): Uint8Array {
  const a = new Asm(16, 0x7c00);
  a.db(0xbb, 40, 0); // mov bx, 40
  a.label("round").movRI(CX, 60_000);
  a.label("spin").dec(CX).jShort(JNZ, "spin");
  a.outImm(0x80, 1);
  a.db(0x4b).jShort(JNZ, "round"); // dec bx
  a.db(0xfa, 0xf4);
  return a.link();
}

const SPIN = Uint8Array.from([0xeb, 0xfe]); // jmp $

async function machineWith(image: Uint8Array): Promise<Machine> {
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  vm.loadFlat(image);
  return vm;
}

describe("soft machines sharing the main thread", () => {
  for (const [name, busyImage] of [
    ["a guest spinning in place", SPIN],
    ["the #UD-loop hostage guest", FAULT_LOOP],
  ] as const) {
    it(`${name} leaves the other machines and the event loop running`, async () => {
      const busy = await machineWith(busyImage);
      const others = await Promise.all([0, 1, 2].map(() => machineWith(finiteGuest())));
      let ticks = 0;
      const interval = setInterval(() => ticks++, 1);
      let busyRunning = true;
      try {
        const busyRun = busy.run({ timeoutMs: BUSY_MS }).finally(() => {
          busyRunning = false;
        });
        const ended: { result: RunResult; whileBusy: boolean }[] = await Promise.all(
          others.map((vm) =>
            vm.run({ timeoutMs: 60_000 }).then((result) => ({ result, whileBusy: busyRunning })),
          ),
        );
        const busyResult = await busyRun;
        expect(busyResult.reason).toBe("timeout");
        for (const { result, whileBusy } of ended) {
          expect(result.reason).toBe("hlt");
          // they finished while the busy guest was still running, not after its timeout freed the thread
          expect(whileBusy).toBe(true);
        }
        // timers kept firing while the busy guest ran its BUSY_MS: the event loop turns between
        // every machine's slices (a frozen loop would tick once, at the end)
        expect(ticks).toBeGreaterThanOrEqual(20);
      } finally {
        clearInterval(interval);
        busy.close();
        for (const vm of others) vm.close();
      }
    });
  }
});
