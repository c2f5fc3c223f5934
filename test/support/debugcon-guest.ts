// The test guests under test/soft/guests that print their findings to the debug console (port
// 0xE9), run as a program runs them (createMachine + addPcDevices), and the form in which they
// print one try: shared by the guests' soft tests and their KVM comparisons.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";

export const GUESTS = join(import.meta.dirname, "..", "soft", "guests");

/** Runs test/soft/guests/`bin` (a flat image for 0x10000) to its end; its debugcon output and run result. */
export async function runDebugconGuest(
  bin: string,
  mode: "protected" | "long",
  backend: "soft" | "kvm" = "soft",
  timeoutMs = 60_000,
  machine: { vcpus?: number; deterministic?: boolean } = {},
) {
  const vm = await createMachine({ backend, memoryMiB: 4, ...machine });
  try {
    let out = "";
    addPcDevices(vm, {
      debugcon: (b: Uint8Array) => {
        out += Buffer.from(b).toString("latin1");
      },
    });
    vm.loadFlat(readFileSync(join(GUESTS, bin)), { address: 0x10000, mode });
    const result = await vm.run({ timeoutMs });
    return { out, result };
  } finally {
    vm.close();
  }
}

/** "<vector>:<error code>:<CR2>" as the guests print a try; vector ff is none */
export const tryResult = (vector: number, err = 0, cr2 = 0): string =>
  [vector, err, cr2].map((v) => v.toString(16).padStart(8, "0")).join(":");
/** a try that raised nothing */
export const NONE = tryResult(0xff);
export const GP0 = tryResult(13);
export const UD = tryResult(6);
