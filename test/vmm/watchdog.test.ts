import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { availableBindings, loadBinding } from "../../lib/kvm/binding.js";
import { ExitLoop } from "../../lib/vmm/loop.js";
import { absoluteNow, Watchdog } from "../../lib/vmm/watchdog.js";
import { FakeBackend, intr } from "./fake-backend.js";

const hasKoffi = availableBindings().includes("koffi");
const dir = mkdtempSync(join(tmpdir(), "nodevmm-watchdog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Stands in for the addon: kick() accepts only the vCPU fd the watchdog was given.
const fakeAddon = join(dir, "fake-addon.cjs");
writeFileSync(fakeAddon, `exports.kick = (fd) => { if (fd !== 42) throw new Error("wrong fd " + fd); };\n`);

async function until(cond: () => boolean, maxMs = 3000): Promise<boolean> {
  const end = Date.now() + maxMs;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return cond();
}

describe("Watchdog", () => {
  it("kicks the vCPU fd once its deadline passes, and not when disarmed", async () => {
    const w = new Watchdog({ addonPath: fakeAddon, vcpuFd: 42 });
    try {
      w.arm(absoluteNow() + 10);
      expect(await until(() => w.kicks === 1)).toBe(true);
      // one kick per deadline
      await new Promise((r) => setTimeout(r, 50));
      expect(w.kicks).toBe(1);
      w.arm(absoluteNow() + 30);
      w.disarm();
      await new Promise((r) => setTimeout(r, 100));
      expect(w.kicks).toBe(1);
    } finally {
      await w.close();
    }
  });
});

describe("Watchdog start-up", () => {
  it("ready() resolves once the addon loaded, and rejects for a module without kick()", async () => {
    const good = new Watchdog({ addonPath: fakeAddon, vcpuFd: 42 });
    await expect(good.ready()).resolves.toBeUndefined();
    await good.close();
    const noKick = join(dir, "no-kick.cjs");
    writeFileSync(noKick, "exports.run = () => true;\n");
    const bad = new Watchdog({ addonPath: noKick, vcpuFd: 42 });
    await expect(bad.ready()).rejects.toThrow(/has no kick/);
    await bad.close();
  });

  it.skipIf(!hasKoffi)(
    "a koffi target is acted on by the thread itself, and refused for a non-vCPU fd",
    async () => {
      const koffi = loadBinding("koffi");
      const fd = koffi.eventfd(0, 0);
      try {
        const w = new Watchdog({
          binding: "koffi",
          addonPath: createRequire(import.meta.url).resolve("koffi"),
          vcpuFd: fd,
          shared: new SharedArrayBuffer(16),
          signal: constants.signals.SIGURG,
        });
        await expect(w.ready()).rejects.toThrow(new RegExp(`fd ${fd} is not a KVM vCPU`));
        await w.close();
      } finally {
        koffi.close(fd);
      }
    },
  );
});

describe("ExitLoop with a watchdog", () => {
  it("arms about once per period rather than once per exit, and disarms at the end", () => {
    const arms: number[] = [];
    let disarms = 0;
    const loop = new ExitLoop({ intr: () => undefined });
    loop.watchdog = { arm: (d) => void arms.push(d), disarm: () => void disarms++ };
    const vcpu = new FakeBackend([], { tail: intr }).createVcpu(0);
    const before = absoluteNow();
    const r = loop.runSync(vcpu, { maxExits: 2000, timeoutMs: 10_000 });
    expect(r.exits).toBe(2000);
    expect(arms.length).toBeGreaterThan(0);
    expect(arms.length).toBeLessThan(200);
    // armed no further ahead than the watchdog period, never in the past of the run's start
    expect(arms[0]!).toBeGreaterThanOrEqual(before);
    expect(arms[0]! - before).toBeLessThanOrEqual(60);
    expect(disarms).toBe(1);
  });

  it("never arms later than the run's timeout", () => {
    const arms: number[] = [];
    const loop = new ExitLoop({ intr: () => undefined });
    loop.watchdog = { arm: (d) => void arms.push(d), disarm: () => {} };
    const vcpu = new FakeBackend([], { tail: intr }).createVcpu(0);
    const start = absoluteNow();
    loop.runSync(vcpu, { timeoutMs: 5 });
    expect(Math.max(...arms)).toBeLessThanOrEqual(start + 5 + 2);
  });
});
