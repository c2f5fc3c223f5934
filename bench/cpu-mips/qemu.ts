// Runs a benchmark image under QEMU TCG as a floppy boot sector: the debug port goes to stdout
// (-debugcon stdio), timed by arrival, and isa-debug-exit on port 0xF4 ends QEMU. QEMU is installed
// from Debian's packages when missing and we are root (scripts/ensure-packages.mjs, as the nested-KVM
// lane does).

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type ChildRun, runChildTimed } from "./child.js";
import type { DebugStream } from "./debug-stream.js";

export const QEMU = "qemu-system-x86_64";

const here = dirname(fileURLToPath(import.meta.url));
/** the checkout: this file runs from dist/bench/cpu-mips (compiled) or bench/cpu-mips (vitest) */
export const REPO = [resolve(here, "../../.."), resolve(here, "../..")].find((d) =>
  existsSync(join(d, "package.json")),
)!;

export function qemuVersion(): string | undefined {
  const r = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split("\n")[0]?.trim();
}

/**
 * QEMU's version line, installing `qemu-system-x86` first when it is missing; or why there is none.
 * apt's output goes to stderr (the benchmark's table is on stdout).
 */
export function ensureQemu(): { version: string } | { reason: string } {
  const have = qemuVersion();
  if (have) return { version: have };
  const helper = join(REPO, "scripts", "ensure-packages.mjs");
  if (!existsSync(helper)) return { reason: `not installed (${helper} missing)` };
  console.error(`${QEMU} not found: installing qemu-system-x86`);
  const r = spawnSync(process.execPath, [helper, `${QEMU}=qemu-system-x86`], {
    stdio: ["ignore", 2, "pipe"],
    encoding: "utf8",
  });
  const version = qemuVersion();
  if (version) return { version };
  const why = (r.stderr ?? "").trim().split("\n").pop() ?? "";
  return { reason: `not installed (${why.replace(/^ensure-packages: /, "") || `exit ${r.status}`})` };
}

/** Boots `image` as a floppy boot sector under TCG; `okStatus` is QEMU's status for the guest's exit. */
export async function runOnQemu(
  image: Uint8Array,
  timeoutMs: number,
  opts: { okStatus?: number; stream?: DebugStream; memoryMiB?: number } = {},
): Promise<ChildRun> {
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-bench-"));
  const file = join(dir, "guest.img");
  writeFileSync(file, image);
  try {
    return await runChildTimed(
      QEMU,
      [
        "-accel",
        "tcg",
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-m",
        String(opts.memoryMiB ?? 16),
        "-drive",
        `format=raw,file=${file},if=floppy,readonly=on`,
        "-debugcon",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
      ],
      timeoutMs,
      // isa-debug-exit makes QEMU exit with (value << 1) | 1; the MIPS guests write 0
      opts.okStatus ?? 1,
      opts.stream,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
