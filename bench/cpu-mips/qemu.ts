// Runs a benchmark image under QEMU TCG as a floppy boot sector: the debug port goes to stdout
// (-debugcon stdio), timed by arrival, and isa-debug-exit on port 0xF4 ends QEMU.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { DebugStream } from "./debug-stream.js";

export const QEMU = "qemu-system-x86_64";

export function qemuVersion(): string | undefined {
  const r = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split("\n")[0]?.trim();
}

export async function runOnQemu(
  image: Uint8Array,
  timeoutMs: number,
): Promise<{ stream: DebugStream; error?: string }> {
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-mips-"));
  const file = join(dir, "guest.img");
  writeFileSync(file, image);
  const stream = new DebugStream();
  try {
    return await new Promise((resolve) => {
      const child = spawn(
        QEMU,
        [
          "-accel",
          "tcg",
          "-display",
          "none",
          "-nodefaults",
          "-no-reboot",
          "-m",
          "16",
          "-drive",
          `format=raw,file=${file},if=floppy,readonly=on`,
          "-debugcon",
          "stdio",
          "-device",
          "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.stdout.on("data", (chunk: Buffer) => {
        const now = performance.now();
        for (const b of chunk) stream.push(b, now);
      });
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        // isa-debug-exit makes QEMU exit with (value << 1) | 1
        const ok = code === 1 && stream.phases.length > 0;
        resolve({
          stream,
          error: ok ? undefined : `qemu ended with ${code ?? signal}: ${stderr.trim().slice(0, 200)}`,
        });
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
