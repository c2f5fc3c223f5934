// Incremental snapshots on the soft backend: a chain of a full save and incremental ones resumes to
// the output of an uninterrupted run (the chain found through the files, or given as a list); an
// incremental file stores only the pages written since its base; and a base that is not the
// machine's last snapshot, missing, replaced or corrupt is refused with a SnapshotError naming it.

import { randomBytes } from "node:crypto";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeContainer } from "../../lib/snapshot/format.js";
import { INCREMENTAL_VERSION, readSnapshot, SnapshotError } from "../../lib/snapshot/index.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { countingGuest } from "./guests.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-incr-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Out {
  serial: number[];
  debug: number[];
}
const fresh = (): Out => ({ serial: [], debug: [] });
const text = (b: number[]) => Buffer.from(b).toString("latin1");

async function pcMachine(out: Out, restore?: string | string[]): Promise<Machine> {
  const setup = (vm: Machine) => {
    addPcDevices(vm, {
      serial: (b) => out.serial.push(...b),
      debugcon: (b) => out.debug.push(...b),
      coalesce: false,
    });
  };
  if (restore) return createMachine({ backend: "soft", memoryMiB: 16, restore, setup });
  const vm = await createMachine({ backend: "soft", memoryMiB: 16 });
  setup(vm);
  return vm;
}

/** the error a promise rejects with (undefined when it resolves) */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectBaseError(e: unknown, names: string): void {
  expect(e).toBeInstanceOf(SnapshotError);
  expect((e as SnapshotError).section).toBe("base");
  expect((e as SnapshotError).message).toContain(names);
}

const versionOf = (path: string) => readFileSync(path).readUInt32LE(8);

describe("incremental snapshots on the soft backend", () => {
  it("a full save and two incremental ones resume to the uninterrupted output", async () => {
    const image = countingGuest(200);
    const whole = fresh();
    const ref = await pcMachine(whole);
    ref.loadFlat(image);
    expect(ref.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
    const refRegs = ref.vcpu(0).getRegs();
    ref.close();

    const sub = join(dir, "chain");
    mkdirSync(sub);
    const first = fresh();
    const a = await pcMachine(first);
    a.loadFlat(image);
    // a page of data the later parts overwrite, and one they clear: both must come back as saved
    a.memory.write(0x20000, randomBytes(8192));
    expect(a.runSync({ maxExits: 150 }).reason).toBe("max-exits");
    const full = await a.snapshot(join(sub, "0.snap"));
    expect(full.base).toBeUndefined();
    a.memory.write(0x20000, randomBytes(100));
    expect(a.runSync({ maxExits: 150 }).reason).toBe("max-exits");
    const d1 = await a.snapshot(join(sub, "1.snap"), { base: join(sub, "0.snap") });
    a.memory.fill(0x21000, 4096, 0);
    expect(a.runSync({ maxExits: 150 }).reason).toBe("max-exits");
    const d2 = await a.snapshot(join(sub, "2.snap"), { base: join(sub, "1.snap") });
    const ram = a.memory.read(0, 16 << 20);
    a.close();

    expect(versionOf(join(sub, "0.snap"))).toBe(2);
    expect(versionOf(join(sub, "2.snap"))).toBe(INCREMENTAL_VERSION);
    const header = decodeContainer(readFileSync(join(sub, "2.snap"))).header;
    expect(header.base).toEqual({ id: d1.id, file: "1.snap" });
    // the guest's counter page and the host's write each time; the cleared page in the second
    expect(d1.pages).toBe(2);
    expect(d2.pages).toBe(2);

    // the chain found from the newest file, and given as a list (the full snapshot first)
    for (const restore of [join(sub, "2.snap"), ["0.snap", "1.snap", "2.snap"].map((f) => join(sub, f))]) {
      const second = fresh();
      const b = await pcMachine(second, restore);
      expect(Buffer.from(b.memory.read(0, 16 << 20)).equals(Buffer.from(ram))).toBe(true);
      expect(b.runSync({ maxExits: 10_000 }).reason).toBe("hlt");
      expect(text([...first.serial, ...second.serial])).toBe(text(whole.serial));
      expect(text([...first.debug, ...second.debug])).toBe(text(whole.debug));
      expect(second.debug.length).toBeGreaterThan(0);
      const regs = b.vcpu(0).getRegs();
      for (const k of ["rax", "rcx", "rdx", "rip"] as const) expect(regs[k], k).toBe(refRegs[k]);
      b.close();
    }

    // readSnapshot() brings the chain along too, and a machine restored from a diff can be the
    // base of the next one
    const snap = await readSnapshot(join(sub, "2.snap"));
    expect(snap.bases?.length).toBe(2);
    const c = await pcMachine(fresh(), join(sub, "2.snap"));
    c.runSync({ maxExits: 30 });
    const d3 = await c.snapshot(join(sub, "3.snap"), { base: join(sub, "2.snap") });
    expect(d3.pages).toBe(1);
    c.close();
  }, 60_000);

  it("stores only the pages written since the base: few against a full save's many", async () => {
    const a = await pcMachine(fresh());
    a.loadFlat(countingGuest(200));
    a.memory.write(0x100000, randomBytes(4 << 20));
    const full = await a.snapshot(join(dir, "big.snap"));
    expect(full.pages).toBeGreaterThanOrEqual(1024);
    a.memory.write(0x180000, randomBytes(3 * 4096));
    expect(a.runSync({ maxExits: 30 }).reason).toBe("max-exits");
    const diff = await a.snapshot(join(dir, "big-1.snap"), { base: join(dir, "big.snap") });
    // three pages of the host's and the guest's counter page
    expect(diff.pages).toBe(4);
    expect(diff.bytes).toBeLessThan(full.bytes / 50);
    const ram = a.memory.read(0x100000, 4 << 20);
    a.close();
    const b = await pcMachine(fresh(), join(dir, "big-1.snap"));
    expect(Buffer.from(b.memory.read(0x100000, 4 << 20)).equals(Buffer.from(ram))).toBe(true);
    b.close();
  }, 60_000);

  it("refuses a base that is not the machine's last snapshot, a missing one and none at all", async () => {
    const a = await pcMachine(fresh());
    a.loadFlat(countingGuest(200));
    const never = await failure(a.snapshot(join(dir, "n-1.snap"), { base: join(dir, "n-0.snap") }));
    expectBaseError(never, "n-0.snap");
    await a.snapshot(join(dir, "n-0.snap"));
    await a.snapshot(join(dir, "n-0b.snap"));
    // n-0b is the last one now
    expectBaseError(
      await failure(a.snapshot(join(dir, "n-1.snap"), { base: join(dir, "n-0.snap") })),
      "n-0.snap",
    );
    expectBaseError(
      await failure(a.snapshot(join(dir, "n-1.snap"), { base: join(dir, "gone.snap") })),
      "gone.snap",
    );
    expectBaseError(
      await failure(a.snapshot(join(dir, "n-0b.snap"), { base: join(dir, "n-0b.snap") })),
      "n-0b.snap",
    );
    const ok = await a.snapshot(join(dir, "n-1.snap"), { base: join(dir, "n-0b.snap") });
    expect(ok.base).toBe(join(dir, "n-0b.snap"));
    a.close();
  }, 60_000);

  it("refuses a restore whose base is missing, replaced, corrupt or listed wrong, naming it", async () => {
    const sub = join(dir, "bad");
    mkdirSync(sub);
    const at = (f: string) => join(sub, f);
    const a = await pcMachine(fresh());
    a.loadFlat(countingGuest(200));
    a.memory.write(0x30000, randomBytes(4096));
    a.runSync({ maxExits: 30 });
    await a.snapshot(at("base.snap"));
    a.runSync({ maxExits: 30 });
    await a.snapshot(at("diff.snap"), { base: at("base.snap") });
    a.close();
    const other = await pcMachine(fresh());
    await other.snapshot(at("other.snap"));
    other.close();

    // missing
    renameSync(at("base.snap"), at("moved.snap"));
    expectBaseError(await failure(pcMachine(fresh(), at("diff.snap"))), "base.snap");
    // given explicitly from where it went
    const b = await pcMachine(fresh(), [at("moved.snap"), at("diff.snap")]);
    b.close();
    // another snapshot in its place
    copyFileSync(at("other.snap"), at("base.snap"));
    expectBaseError(await failure(pcMachine(fresh(), at("diff.snap"))), "base.snap");
    expectBaseError(await failure(pcMachine(fresh(), [at("other.snap"), at("diff.snap")])), "other.snap");
    // an incremental file first in the list
    expectBaseError(await failure(pcMachine(fresh(), [at("diff.snap")])), "diff.snap");
    // corrupt: RAM (the last bytes of the file) and the header
    const good = readFileSync(at("moved.snap"));
    const badRam = Buffer.from(good);
    badRam[badRam.length - 1]! ^= 0xff;
    writeFileSync(at("base.snap"), badRam);
    expectBaseError(await failure(pcMachine(fresh(), at("diff.snap"))), "base.snap");
    const badHeader = Buffer.from(good);
    badHeader[20]! ^= 0x01;
    writeFileSync(at("base.snap"), badHeader);
    expectBaseError(await failure(pcMachine(fresh(), at("diff.snap"))), "base.snap");
    // and back in place, it restores
    writeFileSync(at("base.snap"), good);
    (await pcMachine(fresh(), at("diff.snap"))).close();
  }, 60_000);
});
