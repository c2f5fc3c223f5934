// Damaged snapshot files are refused with a SnapshotError naming the part at fault.

import { describe, expect, it } from "vitest";
import { decodeContainer, encodeContainer, jsonBytes } from "../../lib/snapshot/format.js";
import {
  decodeSnapshot,
  encodeSnapshot,
  FORMAT_VERSION,
  INCREMENTAL_VERSION,
  READABLE_VERSIONS,
  SnapshotError,
} from "../../lib/snapshot/index.js";
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

/** where a section's bytes start in the file */
function offsetOf(file: Buffer, name: string): number {
  const bytes = decodeContainer(file).sections.get(name);
  if (!bytes) throw new Error(`no section ${name}`);
  return bytes.byteOffset - file.byteOffset;
}

/** the file with one section replaced (checksums recomputed: only the content is wrong) */
function withSection(file: Buffer, name: string, bytes: Uint8Array): Buffer {
  const c = decodeContainer(file);
  const { sections: _s, ...meta } = c.header;
  return encodeContainer(
    meta,
    c.header.sections.map((s) => [
      s.name,
      s.name === name ? bytes : c.sections.get(s.name)!,
      s.crc32 ? "crc32" : "sha256",
    ]),
  );
}

describe("snapshot file checks", () => {
  it("a good file decodes", async () => {
    const good = await goodSnapshot();
    expect(good.readUInt32LE(8)).toBe(FORMAT_VERSION);
    const snap = decodeSnapshot(good);
    expect(snap.config.vcpus).toBe(1);
    expect(snap.memory.pages).toBeGreaterThan(0);
    expect(snap.memory.runs.reduce((n, r) => n + r.pages, 0)).toBe(snap.memory.pages);
    expect(snap.devices.map((d) => d.name)).toContain("debugcon");
    // RAM last, checked with a CRC-32; the rest with SHA-256
    const names = snap.header.sections.map((s) => s.name);
    expect(names.slice(-2)).toEqual(["memory-map", "memory"]);
    expect(snap.header.sections.at(-1)).toMatchObject({ crc32: expect.stringMatching(/^[0-9a-f]{8}$/) });
    expect(snap.header.sections[0]).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
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
    const unknown = Math.max(...READABLE_VERSIONS) + 1;
    future.writeUInt32LE(unknown, 8);
    expect(refused(future)).toMatchObject({
      section: "header",
      message: expect.stringMatching(
        new RegExp(`format version ${unknown}; this nodevmm reads versions 1, 2 and 3`),
      ),
    });
    // a full snapshot's version with a base in its header, and the reverse, are refused too
    const asIncremental = Buffer.from(good);
    asIncremental.writeUInt32LE(INCREMENTAL_VERSION, 8);
    expect(refused(asIncremental)).toMatchObject({
      section: "header",
      message: expect.stringMatching(/without a valid base/),
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

  it("a flipped byte in any section is refused naming that section", async () => {
    const good = await goodSnapshot();
    for (const name of ["config", "vcpus", "devices", "memory-map", "memory"]) {
      const bad = Buffer.from(good);
      bad[offsetOf(good, name)]! ^= 0x80;
      expect(refused(bad), name).toMatchObject({
        section: name,
        message: expect.stringMatching(/checksum mismatch/),
      });
    }
  });

  it("a memory map that does not fit guest RAM or the memory section is refused", async () => {
    const good = await goodSnapshot();
    const run = (region: number, page: number, pages: number) => {
      const b = Buffer.alloc(12);
      b.writeUInt32LE(region, 0);
      b.writeUInt32LE(page, 4);
      b.writeUInt32LE(pages, 8);
      return b;
    };
    const memoryPages = decodeContainer(good).sections.get("memory")!.length / 4096;
    const cases: [Uint8Array, RegExp, string][] = [
      [Buffer.alloc(7), /whole number/, "memory-map"],
      [run(1, 0, memoryPages), /outside guest RAM/, "memory-map"],
      [run(0, 1023, memoryPages + 1), /outside guest RAM/, "memory-map"],
      [run(0, 0, 0), /outside guest RAM/, "memory-map"],
      [Buffer.concat([run(0, 10, 1), run(0, 10, memoryPages - 1)]), /overlaps/, "memory-map"],
      [run(0, 0, memoryPages + 1), /hold \d+ pages/, "memory"],
    ];
    for (const [map, message, section] of cases) {
      expect(refused(withSection(good, "memory-map", map)), String(message)).toMatchObject({
        section,
        message: expect.stringMatching(message),
      });
    }
    const c = decodeContainer(good);
    const { sections: _s, ...meta } = c.header;
    const noMap = encodeContainer(
      meta,
      c.header.sections.filter((s) => s.name !== "memory-map").map((s) => [s.name, c.sections.get(s.name)!]),
    );
    expect(refused(noMap)).toMatchObject({
      section: "memory-map",
      message: "snapshot memory-map: section missing",
    });
  });

  it("a header entry without a checksum is refused", async () => {
    const c = decodeContainer(await goodSnapshot());
    const { sections: _s, ...meta } = c.header;
    const bytes = encodeContainer(meta, [["config", c.sections.get("config")!]]);
    // rewrite the header without the sum, keeping the header's own checksum right
    const json = JSON.stringify({
      ...meta,
      sections: [{ name: "config", length: c.sections.get("config")!.length }],
    });
    const headerBytes = Buffer.from(json);
    const { createHash } = await import("node:crypto");
    const pre = Buffer.from(bytes.subarray(0, 16));
    pre.writeUInt32LE(headerBytes.length, 12);
    const file = Buffer.concat([
      pre,
      headerBytes,
      createHash("sha256").update(headerBytes).digest(),
      c.sections.get("config")!,
    ]);
    expect(refused(file)).toMatchObject({ section: "header", message: expect.stringMatching(/no checksum/) });
    // JSON sections stay JSON: an unreadable one is named
    expect(
      refused(withSection(await goodSnapshot(), "devices", jsonBytes("x").subarray(0, 2))),
    ).toMatchObject({
      section: "devices",
    });
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
