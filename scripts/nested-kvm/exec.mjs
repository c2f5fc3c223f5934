// Running host commands with errors that say which step failed, and finding tools on PATH.
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export class StepError extends Error {
  /** @param {string} step what the lane was doing, e.g. "download the kernel package" */
  constructor(step, detail) {
    super(`nested-kvm: could not ${step}: ${detail}`);
    this.name = "StepError";
    this.step = step;
  }
}

/** Absolute path of `tool` on PATH (plus the sbin folders a non-login root shell may miss), or null. */
export function which(tool) {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, tool);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

/**
 * Runs a command to completion; throws a StepError carrying its stderr tail when it fails.
 * `inherit: true` shows its output live (apt), otherwise output is captured and returned.
 */
export function runStep(step, cmd, args, { cwd, inherit = false, env } = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    env: env ?? process.env,
    stdio: inherit ? ["ignore", "inherit", "inherit"] : ["ignore", "pipe", "pipe"],
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw new StepError(step, `${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const tail = (r.stderr || r.stdout || "").trim().split("\n").slice(-15).join("\n");
    const how = r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`;
    throw new StepError(step, `\`${[cmd, ...args].join(" ")}\` failed (${how})${tail ? `:\n${tail}` : ""}`);
  }
  return r.stdout ?? "";
}
