// Runs a guest in a child process whose stdout carries the guest's debug port (QEMU's
// `-debugcon stdio`, `nodevmm run --debugcon stdio`): each byte is timed when it arrives on the pipe.

import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { DebugStream } from "./debug-stream.js";

export interface ChildRun {
  stream: DebugStream;
  /** why the run is not usable (exit status, timeout, stderr tail), when it is not */
  error?: string;
  /** wall time from spawn to exit */
  wallMs: number;
}

/**
 * Spawns `cmd args`, feeds its stdout to a DebugStream and resolves when it exits. The run is good
 * when the exit status is `okStatus` (the guest's isa-debug-exit code) and at least one phase came.
 */
export function runChildTimed(
  cmd: string,
  args: string[],
  timeoutMs: number,
  okStatus: number,
  stream: DebugStream = new DebugStream(),
): Promise<ChildRun> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      const now = performance.now();
      for (const b of chunk) stream.push(b, now);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.length > 8192) stderr = stderr.slice(-4096);
    });
    const finish = (error: string | undefined) => {
      clearTimeout(timer);
      resolve({ stream, wallMs: performance.now() - t0, ...(error ? { error } : {}) });
    };
    child.on("error", (e) => finish(`${cmd}: ${e.message}`));
    child.on("close", (code, signal) => {
      const tail = stderr.trim().split("\n").slice(-3).join(" / ").slice(0, 300);
      if (timedOut) finish(`killed after ${timeoutMs} ms${tail ? `: ${tail}` : ""}`);
      else if (code !== okStatus || stream.phases.length === 0)
        finish(`ended with ${code ?? signal} (expected ${okStatus})${tail ? `: ${tail}` : ""}`);
      else finish(undefined);
    });
  });
}
