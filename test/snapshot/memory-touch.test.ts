// A restore clears the RAM the snapshot does not hold only where something may have written it:
// a machine nothing touched is all zero already (GuestMemory.untouched), one whose setup wrote RAM
// is scanned and cleared.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createMachine } from "../../lib/vmm/machine.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-snap-touch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("GuestMemory.untouched and restores", () => {
  it("is true for a new machine, false after a host access or a run", async () => {
    const a = await createMachine({ backend: "soft", memoryMiB: 1 });
    expect(a.memory.untouched).toBe(true);
    a.memory.readU8(0);
    expect(a.memory.untouched).toBe(false);
    a.close();
    const b = await createMachine({ backend: "soft", memoryMiB: 1 });
    b.loadFlat(Uint8Array.of(0xf4), { address: 0x7c00 });
    expect(b.memory.untouched).toBe(false);
    b.close();
    const c = await createMachine({ backend: "soft", memoryMiB: 1 });
    c.runSync({ maxInstructions: 1 });
    expect(c.memory.untouched).toBe(false);
    c.close();
  });

  it("a restore into a machine whose setup wrote RAM leaves only the snapshot's contents", async () => {
    const path = join(dir, "one.snap");
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    vm.loadFlat(Uint8Array.of(0xf4), { address: 0x7c00 });
    expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
    await vm.snapshot(path);
    vm.close();
    const restored = await createMachine({
      backend: "soft",
      restore: path,
      setup: (m) => m.memory.write(0x5000, Uint8Array.of(1, 2, 3)),
    });
    try {
      expect([...restored.memory.read(0x5000, 3)]).toEqual([0, 0, 0]);
      expect(restored.memory.readU8(0x7c00)).toBe(0xf4);
    } finally {
      restored.close();
    }
  });
});
