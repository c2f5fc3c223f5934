// The Linux lane's guest (scripts/linux-lane: Debian's kernel and a busybox /init that reports over
// COM1 as "@@linux:" markers), booted through the API with the disk as virtio-blk, a virtio-rng and
// a virtio-console: shared by test/linux (soft backend) and test/kvm (KVM, in the nested lane).
// scripts/test-linux.mjs and scripts/test-kvm.mjs hand the kernel and initramfs over in
// NODEVMM_LINUX_KERNEL / NODEVMM_LINUX_INITRD.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { expect } from "vitest";
import type { RunResult } from "../../lib/vmm/loop.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { addVirtioDevices } from "../../lib/vmm/virtio.js";

export const LINUX_KERNEL = process.env.NODEVMM_LINUX_KERNEL;
export const LINUX_INITRD = process.env.NODEVMM_LINUX_INITRD;
/** why the Linux tests cannot run here, or undefined */
export const linuxMissing =
  LINUX_KERNEL && LINUX_INITRD
    ? undefined
    : "NODEVMM_LINUX_KERNEL/INITRD not set (npm run test:linux, or the nested lane, sets them)";

export const LINUX_DISK_BYTES = 8 << 20;
export const LINUX_MEMORY_MIB = 256;

export const md5 = (s: string | Uint8Array): string => createHash("md5").update(s).digest("hex");
/** `seq 1 n` as busybox prints it */
export const seq = (n: number): string => Array.from({ length: n }, (_, i) => `${i + 1}\n`).join("");

/** "@@linux:key:value" lines of the console, in order */
export function markers(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const m of text.matchAll(/@@linux:([^:\r\n]*):?([^\r\n]*)/g)) out.push([m[1]!, m[2]!.trim()]);
  return out;
}
export const marker = (ms: [string, string][], key: string): string | undefined =>
  ms.find(([k]) => k === key)?.[1];

/**
 * What every first boot of the lane's /init on a fresh disk reports: it ran, nothing failed, the
 * checksum of generated data, its write to the virtio disk read back; `cpus` CPUs where given.
 * `context` (the console's end) is the message of the first check.
 */
export function expectFirstBoot(ms: [string, string][], context: string, cpus?: number): void {
  expect(marker(ms, "init"), context).toBeDefined();
  expect(ms.filter(([k]) => k === "fail" || k === "missing-flag")).toEqual([]);
  if (cpus !== undefined) expect(marker(ms, "cpus")).toBe(String(cpus));
  expect(marker(ms, "sum")).toBe(md5(seq(50_000)));
  expect(marker(ms, "disk-after")).toBe("nodevmm boot 1");
  expect(marker(ms, "disk-data")).toBe(md5(seq(100_000)));
}

/** what a `nodevmm run` of the lane's kernel printed, and its status */
export interface LinuxCliBoot {
  stdout: string;
  stderr: string;
  status: number | null;
  /** the console's markers */
  markers: [string, string][];
  /** the end of stdout and all of stderr, for assertion messages */
  tail: string;
}

/**
 * `nodevmm run KERNEL --initrd INITRD --append "console=ttyS0 quiet" --drive file=DISK --backend soft
 * --mem 256M --timeout ...` through bin/nodevmm.js, as users boot it, with `extra` options after.
 */
export function runLinuxCli(disk: string, extra: readonly string[], timeoutMs: number): LinuxCliBoot {
  const args = ["bin/nodevmm.js", "run", LINUX_KERNEL!, "--initrd", LINUX_INITRD!];
  args.push("--append", "console=ttyS0 quiet", "--drive", `file=${disk}`, "--backend", "soft");
  args.push("--mem", `${LINUX_MEMORY_MIB}M`, "--timeout", String(Math.ceil(timeoutMs / 1000)), ...extra);
  const r = spawnSync(process.execPath, args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: timeoutMs + 60_000,
  });
  return {
    stdout: r.stdout,
    stderr: r.stderr,
    status: r.status,
    markers: markers(r.stdout),
    tail: `${r.stdout.slice(-3000)}\n${r.stderr}`,
  };
}

export interface LinuxBoot {
  result: RunResult;
  /** how the kernel was entered ("vmlinux": decompressed on the host; "bzImage": by itself) */
  entry: "vmlinux" | "bzImage";
  serial: string;
  hvc: string;
  broken: string[];
}

/** one boot through the API: COM1 and hvc0 captured, `disk` as virtio-blk, a virtio-rng */
export async function bootLinux(
  backend: "soft" | "kvm",
  disk: string,
  timeoutMs: number,
): Promise<LinuxBoot> {
  const vm = await createMachine({ backend, memoryMiB: LINUX_MEMORY_MIB });
  let serial = "";
  let hvc = "";
  const decoder = new TextDecoder();
  const broken: string[] = [];
  try {
    addPcDevices(vm, {
      serial: (b: Uint8Array) => {
        serial += decoder.decode(b);
      },
    });
    const virtio = addVirtioDevices(vm, {
      drives: [{ path: disk }],
      rng: true,
      console: {
        output: (b: Uint8Array) => {
          hvc += decoder.decode(b);
        },
      },
      onBroken: (device, message) => broken.push(`${device}: ${message}`),
    });
    const loaded = vm.loadLinux({
      kernel: readFileSync(LINUX_KERNEL!),
      initrd: readFileSync(LINUX_INITRD!),
      cmdline: `console=ttyS0 quiet ${virtio.cmdline.join(" ")}`,
    });
    const result = await vm.run({ timeoutMs });
    return { result, serial, hvc, broken, entry: loaded.linux.entry };
  } finally {
    vm.close();
  }
}
