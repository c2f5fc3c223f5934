// The same guest on KVM and on the soft backend must look the same from the loop's side: serial
// output, the sequence of exits (time-slice interruptions aside) and the final register dump.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Doubler } from "../../examples/plugins/doubler.js";
import type { VmExit } from "../../lib/types/exits.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";

const root = join(import.meta.dirname, "..", "..");
const images = join(root, "examples", "images");

function unavailable(): string | undefined {
  for (const kind of ["kvm", "soft"]) {
    if (!existsSync(join(root, "lib", "vmm", "backends", `${kind}.ts`))) return `no ${kind} backend`;
  }
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return "/dev/kvm is not usable";
  }
  if (!existsSync(join(images, "manifest.json"))) return "no examples/images/manifest.json";
  return undefined;
}

interface Entry {
  name: string;
  file: string;
  format: "flat" | "elf" | "multiboot";
  load?: { address: number; mode: "real" | "protected" | "long" };
  cmdline?: string;
  device?: string;
  hypercall?: string;
}

function describeExit(e: VmExit): string {
  if (e.kind === "io")
    return `io ${e.direction} ${e.port.toString(16)}/${e.size}x${e.count} ${Buffer.from(e.data).toString("hex")}`;
  if (e.kind === "mmio")
    return `mmio ${e.write ? "w" : "r"} ${e.address.toString(16)} ${Buffer.from(e.data).toString("hex")}`;
  return e.kind;
}

async function runOn(kind: "kvm" | "soft", m: Entry) {
  const vm = await createMachine({ memoryMiB: 64, backend: kind });
  try {
    const serial: number[] = [];
    addPcDevices(vm, { serial: (b) => serial.push(...b) });
    if (m.device) vm.addDevice(new Doubler()); // the custom-device example's device (examples/plugins)
    const exits: string[] = [];
    vm.on("exit", (e) => {
      if (e.kind !== "intr") exits.push(describeExit(e));
    });
    vm.load(readFileSync(join(images, m.file)), {
      format: m.format,
      ...(m.load ?? {}),
      ...(m.cmdline !== undefined ? { cmdline: m.cmdline } : {}),
    });
    const r = await vm.run({ timeoutMs: 30_000 });
    return {
      reason: r.reason,
      exitCode: r.exitCode,
      serial: Buffer.from(serial).toString(),
      exits,
      dump: vm.vcpu(0).dump(),
    };
  } finally {
    vm.close();
  }
}

const why = unavailable();
const entries: Entry[] = why
  ? []
  : (JSON.parse(readFileSync(join(images, "manifest.json"), "utf8")) as { images: Entry[] }).images.filter(
      // the hypercall channel needs VMCALL to reach user space, which not every KVM host allows
      (m) => !m.hypercall,
    );

describe.skipIf(why !== undefined)(`KVM and soft backends agree${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const m of entries) {
    it(`${m.name}: same output, exits and final registers`, async () => {
      const kvm = await runOn("kvm", m);
      const soft = await runOn("soft", m);
      expect(soft.reason).toBe(kvm.reason);
      expect(soft.exitCode).toBe(kvm.exitCode);
      expect(soft.serial).toBe(kvm.serial);
      expect(soft.serial.length).toBeGreaterThan(0);
      expect(soft.exits).toEqual(kvm.exits);
      expect(soft.dump).toBe(kvm.dump);
    });
  }
});
