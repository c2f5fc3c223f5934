// Damaged snapshot files are refused with a SnapshotError naming the part at fault.

import { describe, expect, it } from "vitest";
import { decodeSnapshot, encodeSnapshot, FORMAT_VERSION, SnapshotError } from "../../lib/snapshot/index.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { countingGuest } from "./guests.js";

async function goodSnapshot(): Promise<Buffer> {
  const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
  addPcDevices(vm);
  vm.loadFlat(countingGuest(20));
  vm.runSync({ maxExits: 10 });
  const { bytes } = encodeSnapshot(vm);
  vm.close();
  return bytes;
}

function refused(bytes: Uint8Array): SnapshotError {
  try {
    decodeSnapshot(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(SnapshotError);
    return e as SnapshotError;
  }
  throw new Error("the damaged snapshot was accepted");
}

describe("snapshot file checks", () => {
  it("a good file decodes", async () => {
    const snap = decodeSnapshot(await goodSnapshot());
    expect(snap.config.vcpus).toBe(1);
    expect(snap.memory.pages.length).toBeGreaterThan(0);
    expect(snap.devices.map((d) => d.name)).toContain("debugcon");
  });

  it("names what is wrong: magic, version, truncation, corruption", async () => {
    const good = await goodSnapshot();
    const notSnap = Buffer.from(good);
    notSnap.write("XXXX", 0, "latin1");
    expect(refused(notSnap)).toMatchObject({
      section: "file",
      message: expect.stringMatching(/not a nodevmm snapshot/),
    });

    const future = Buffer.from(good);
    future.writeUInt32LE(FORMAT_VERSION + 1, 8);
    expect(refused(future)).toMatchObject({
      section: "header",
      message: expect.stringMatching(/format version 2/),
    });

    expect(refused(good.subarray(0, 10)).section).toBe("file");
    expect(refused(good.subarray(0, 40)).section).toBe("header");
    // cut inside the last section (memory)
    expect(refused(good.subarray(0, good.length - 5))).toMatchObject({
      section: "memory",
      message: expect.stringMatching(/truncated/),
    });
    // one bit flipped in the last section's bytes
    const flipped = Buffer.from(good);
    flipped[flipped.length - 3]! ^= 0x10;
    expect(refused(flipped)).toMatchObject({ section: "memory", message: expect.stringMatching(/checksum/) });
    // one bit flipped in the header JSON
    const header = Buffer.from(good);
    header[20]! ^= 0x01;
    expect(refused(header)).toMatchObject({ section: "header", message: expect.stringMatching(/checksum/) });
    expect(refused(Buffer.concat([good, Buffer.from([0])])).section).toBe("file");
  });

  it("a device section that names a device the machine lacks is refused before anything is written", async () => {
    const good = await goodSnapshot();
    const snap = decodeSnapshot(good);
    snap.devices.push({
      name: "mystery",
      ranges: [{ space: "io", base: 0x2f8, length: 8 }],
      state: null,
      snapshottable: false,
    });
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    addPcDevices(vm);
    vm.loadFlat(countingGuest(20));
    const before = vm.vcpu(0).getRegs();
    const { restoreSnapshot } = await import("../../lib/snapshot/index.js");
    expect(() => restoreSnapshot(vm, snap)).toThrow(/mystery \(io 0x2f8\+8\), which this machine lacks/);
    expect(vm.vcpu(0).getRegs()).toEqual(before);
    vm.close();
  });
});
