// Snapshots of the previous format version still restore. fixtures/v1-counting-30.snap was written
// by nodevmm's version-1 writer (deflated page records, one SHA-256 per section): a 4 MiB soft
// machine with the PC devices running countingGuest(30), saved after 46 exits, right after the IN
// of step 15 (its data completed by the save). Its output so far was "ABCDEFGHIJKLMNO" on COM1
// and "abcdefghijklmno" on the debug port; steps 15-29 print the rest ('A' + (step & 15)). The
// guest's code is in the file's RAM, so this test does not depend on guests.ts.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { decodeContainer } from "../../lib/snapshot/format.js";
import {
  createRestoredMachine,
  decodeSnapshot,
  READABLE_VERSIONS,
  SnapshotError,
} from "../../lib/snapshot/index.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";

const V1 = fileURLToPath(new URL("fixtures/v1-counting-30.snap", import.meta.url));

interface Out {
  serial: number[];
  debug: number[];
}

const setupFor = (out: Out) => (vm: Machine) => {
  addPcDevices(vm, {
    serial: (b) => out.serial.push(...b),
    debugcon: (b) => out.debug.push(...b),
    coalesce: false,
  });
};

const text = (b: number[]) => Buffer.from(b).toString("latin1");

describe("format version 1", () => {
  it("is a version this nodevmm reads", () => {
    const file = readFileSync(V1);
    expect(file.readUInt32LE(8)).toBe(1);
    expect(READABLE_VERSIONS).toContain(1);
    const c = decodeContainer(file);
    expect(c.version).toBe(1);
    expect([...c.sections.keys()]).toEqual(["config", "vcpus", "devices", "memory"]);
    const snap = decodeSnapshot(file);
    expect(snap.memory.pages).toBe(2);
    expect(snap.memory.runs.every((r) => r.pages === 1)).toBe(true);
  });

  for (const how of ["path", "decoded"] as const) {
    it(`restores (${how}) and the guest finishes as an uninterrupted run does`, async () => {
      const rest: Out = { serial: [], debug: [] };
      const restore = how === "path" ? V1 : decodeSnapshot(readFileSync(V1));
      const vm = await createRestoredMachine(
        { backend: "soft", restore, setup: setupFor(rest) },
        createMachine,
      );
      try {
        expect(vm.memory.view(0x500, 2)).toEqual(Uint8Array.from([15, 0]));
        expect(vm.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
        expect(text(rest.serial)).toBe("PABCDEFGHIJKLMN");
        expect(text(rest.debug)).toBe("pabcdefghijklmn");
        expect(vm.vcpu(0).getRegs().rcx & 0xffffn).toBe(30n);
        expect(vm.memory.view(0x500, 2)).toEqual(Uint8Array.from([30, 0]));
      } finally {
        vm.close();
      }
    });
  }

  it("a corrupt version-1 memory section is still named", () => {
    const file = Buffer.from(readFileSync(V1));
    file[file.length - 2]! ^= 0x04;
    const e = (() => {
      try {
        decodeSnapshot(file);
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(SnapshotError);
    expect(e).toMatchObject({ section: "memory", message: expect.stringMatching(/checksum mismatch/) });
  });
});
