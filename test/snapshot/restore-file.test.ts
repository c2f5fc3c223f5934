// Restoring from a path: everything but RAM is checked before a machine is made; RAM goes from the
// file into the machine and its checksum is compared at the end, and a mismatch closes the machine
// (createMachine rejects, nothing half restored is handed out). RAM is stored sparse, as runs of
// non-zero pages.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { crc32, crc32Js } from "../../lib/snapshot/crc32.js";
import { decodeContainer, encodeContainer } from "../../lib/snapshot/format.js";
import {
  createRestoredMachine,
  decodeSnapshot,
  restoreSnapshot,
  type Snapshot,
  SnapshotError,
} from "../../lib/snapshot/index.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-snap-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1 << 20;

/** a halted machine whose RAM holds data at scattered places, saved to `name` */
async function savedMachine(name: string): Promise<{ path: string; ram: Uint8Array; pages: number }> {
  const vm = await createMachine({ backend: "soft", memoryMiB: 8 });
  vm.memory.write(0, Uint8Array.of(0xf4)); // the first page of RAM
  vm.loadFlat(Uint8Array.of(0xf4), { address: 0x7c00 });
  vm.memory.write(0x1fff, Uint8Array.of(1, 2)); // across a page boundary: two pages
  vm.memory.write(0x10000, new Uint8Array(5 * 4096).fill(0x5a)); // a run of five pages
  vm.memory.write(0x10000 + 7 * 4096 + 100, Uint8Array.of(9)); // one page after a gap
  vm.memory.write(8 * MiB - 1, Uint8Array.of(0xee)); // the last byte of RAM
  // a run longer than 2 MiB: the restore has its whole blocks backed by huge pages first
  vm.memory.write(
    2 * MiB + 100,
    Uint8Array.from({ length: 3 * MiB }, (_, i) => (i % 251) + 1),
  );
  expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
  const path = join(dir, name);
  const saved = await vm.snapshot(path);
  const ram = vm.memory.read(0, 8 * MiB);
  vm.close();
  return { path, ram, pages: saved.pages };
}

async function rejected(p: Promise<unknown>): Promise<SnapshotError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(SnapshotError);
  return e as SnapshotError;
}

describe("restore from a file", () => {
  it("stores only the non-zero pages, as runs, and restores RAM exactly", async () => {
    const { path, ram, pages } = await savedMachine("sparse.snap");
    let nonZero = 0;
    for (let p = 0; p < ram.length / 4096; p++)
      if (ram.subarray(p * 4096, (p + 1) * 4096).some((b) => b !== 0)) nonZero++;
    expect(pages).toBe(nonZero);
    const snap = decodeSnapshot(readFileSync(path));
    expect(snap.memory.pages).toBe(nonZero);
    // the five-page run is one run, and so are the 3 MiB
    expect(snap.memory.runs).toContainEqual({ region: 0, page: 0x10, pages: 5 });
    expect(snap.memory.runs).toContainEqual({ region: 0, page: 0x200, pages: 769 });
    expect(readFileSync(path).length).toBeLessThan(nonZero * 4096 + 64 * 1024);
    const vm = await createMachine({ backend: "soft", restore: path });
    try {
      expect(Buffer.compare(Buffer.from(vm.memory.read(0, 8 * MiB)), Buffer.from(ram))).toBe(0);
    } finally {
      vm.close();
    }
  });

  it("a corrupt byte of RAM in the file: SnapshotError(memory), and the machine made for it is closed", async () => {
    const { path } = await savedMachine("bad-ram.snap");
    const file = readFileSync(path);
    const memory = decodeContainer(file).sections.get("memory")!;
    const at = memory.byteOffset - file.byteOffset + 5 * 4096 + 17;
    file[at]! ^= 0x01;
    const bad = join(dir, "bad-ram-flipped.snap");
    writeFileSync(bad, file);
    let made: Machine | undefined;
    const e = await rejected(
      createMachine({
        backend: "soft",
        restore: bad,
        setup: (m) => {
          made = m;
        },
      }),
    );
    expect(e).toMatchObject({ section: "memory", message: expect.stringMatching(/checksum mismatch/) });
    expect(made?.closed).toBe(true);
  });

  it("a truncated file or a corrupt memory map is refused before any machine is made", async () => {
    const { path } = await savedMachine("cut.snap");
    const file = readFileSync(path);
    const cut = join(dir, "cut-short.snap");
    writeFileSync(cut, file.subarray(0, file.length - 4096));
    let setups = 0;
    const setup = () => {
      setups++;
    };
    expect(await rejected(createMachine({ backend: "soft", restore: cut, setup }))).toMatchObject({
      section: "memory",
      message: expect.stringMatching(/truncated/),
    });
    const map = decodeContainer(file).sections.get("memory-map")!;
    const flipped = Buffer.from(file);
    flipped[map.byteOffset - file.byteOffset + 4]! ^= 0x01;
    const badMap = join(dir, "bad-map.snap");
    writeFileSync(badMap, flipped);
    expect(await rejected(createMachine({ backend: "soft", restore: badMap, setup }))).toMatchObject({
      section: "memory-map",
    });
    expect(
      await rejected(createMachine({ backend: "soft", restore: join(dir, "none.snap"), setup })),
    ).toMatchObject({
      section: "file",
      message: expect.stringMatching(/ENOENT/),
    });
    expect(setups).toBe(0);
  });

  it("a snapshot kept from setup cannot be restored after the file was closed", async () => {
    const { path } = await savedMachine("kept.snap");
    let kept: Snapshot | undefined;
    const vm = await createRestoredMachine(
      {
        backend: "soft",
        restore: path,
        setup: (_m, s) => {
          kept = s;
        },
      },
      createMachine,
    );
    vm.close();
    const e = await rejected(createRestoredMachine({ backend: "soft", restore: kept! }, createMachine));
    expect(e).toMatchObject({
      section: "file",
      message: expect.stringMatching(/closed: read the snapshot again/),
    });
    // refused before anything is written: the machine stays usable
    const own = await createMachine({ backend: "soft", memoryMiB: 8 });
    expect(() => restoreSnapshot(own, kept!)).toThrow(/closed: read the snapshot again/);
    expect(own.closed).toBe(false);
    own.close();
  });

  it("a file whose RAM is not the last section still restores (read whole)", async () => {
    const { path, ram } = await savedMachine("order.snap");
    const c = decodeContainer(readFileSync(path));
    const { sections: _s, ...meta } = c.header;
    const names = c.header.sections.map((s) => s.name);
    const reordered = [...names.filter((n) => n === "memory"), ...names.filter((n) => n !== "memory")];
    const other = join(dir, "reordered.snap");
    writeFileSync(
      other,
      encodeContainer(
        meta,
        reordered.map((n) => [n, c.sections.get(n)!]),
      ),
    );
    const vm = await createMachine({ backend: "soft", restore: other });
    try {
      expect(Buffer.compare(Buffer.from(vm.memory.read(0, 8 * MiB)), Buffer.from(ram))).toBe(0);
    } finally {
      vm.close();
    }
  });

  it("the CRC-32 is zlib's, also where node:zlib lacks crc32()", () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7919) & 0xff));
    expect(crc32Js(Buffer.from("123456789"))).toBe(0xcbf43926);
    expect(crc32Js(data)).toBe(crc32(data));
    expect(crc32Js(data.subarray(300), crc32Js(data.subarray(0, 300)))).toBe(crc32(data));
    const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
    if (native) expect(native(data)).toBe(crc32Js(data));
    else console.log("node:zlib has no crc32() on this Node: the JavaScript CRC-32 is in use");
  });
});
