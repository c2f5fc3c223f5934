// Every example guest of examples/images/manifest.json on KVM, through the machine the CLI and the
// examples use (createMachine + addPcDevices): the serial output must equal the .expected file and
// the run must end the way the manifest says. In the nested-KVM lane this is issue 5's "every
// example passes on KVM".

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Doubler } from "../../examples/plugins/doubler.js";
import { addHypercallChannel } from "../../examples/plugins/hypercall.js";
import { hypercallExitsReachLoop } from "../../lib/vmm/backends/kvm.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { probe, skipReason } from "./helpers.js";

const images = join(import.meta.dirname, "..", "..", "examples", "images");

interface Entry {
  name: string;
  file: string;
  format: "flat" | "elf" | "multiboot";
  load?: { address: number; mode: "real" | "protected" | "long" };
  memoryMiB?: number;
  cmdline?: string;
  expected: string;
  stop: "hlt" | "debug-exit";
  debugExitValue?: number;
  device?: string;
  hypercall?: string;
}

const manifest: Entry[] = (
  JSON.parse(readFileSync(join(images, "manifest.json"), "utf8")) as { images: Entry[] }
).images;

const hypercalls = hypercallExitsReachLoop();

describe.skipIf(!probe.usable)(`example guests on KVM (createMachine)${skipReason}`, () => {
  it("the manifest lists the examples", () => {
    expect(manifest.map((m) => m.name)).toEqual(
      expect.arrayContaining(["real-hello", "protected-hello", "long-crc", "custom-device", "hypercall"]),
    );
    for (const m of manifest) expect(existsSync(join(images, m.file)), m.file).toBe(true);
  });

  for (const m of manifest) {
    const skip = m.hypercall !== undefined && !hypercalls.ok;
    const title = `${m.name}: serial output and stop as expected${skip ? ` (skipped: ${hypercalls.reason})` : ""}`;
    it.skipIf(skip)(title, async () => {
      const vm = await createMachine({ memoryMiB: m.memoryMiB ?? 64, backend: "kvm" });
      try {
        expect(vm.backendInfo.kind).toBe("kvm");
        const serial: number[] = [];
        addPcDevices(vm, {
          serial: (b) => serial.push(...b),
          ...(m.cmdline !== undefined ? { cmdline: m.cmdline } : {}),
        });
        // the same host code `nodevmm run --plugin` loads for these guests (examples/plugins)
        if (m.device) vm.addDevice(new Doubler());
        const channel = m.hypercall ? addHypercallChannel(vm) : undefined;
        let exits = 0;
        vm.on("exit", () => {
          exits++;
        });
        vm.load(readFileSync(join(images, m.file)), {
          format: m.format,
          ...(m.load ?? {}),
          ...(m.cmdline !== undefined ? { cmdline: m.cmdline } : {}),
        });
        const r = await vm.run({ timeoutMs: 20_000, maxExits: 200_000 });
        expect(Buffer.from(serial).toString()).toBe(readFileSync(join(images, m.expected), "utf8"));
        expect(r.reason).toBe(m.stop);
        if (m.stop === "debug-exit") expect(r.exitCode).toBe(((m.debugExitValue ?? 0) << 1) | 1);
        if (channel) expect(channel.calls).toBeGreaterThan(0);
        expect(exits).toBeGreaterThan(0);
      } finally {
        vm.close();
      }
    });
  }
});
