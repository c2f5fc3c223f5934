// Runs a benchmark image on the path users run on the software backend: in process through
// createMachine({ backend: "soft" }) + addPcDevices + load + `await vm.run()` (the debug console's
// output timed as each byte is written), or as the `nodevmm run IMAGE --backend soft --debugcon
// stdio` command (timed by arrival on its stdout pipe, as QEMU is).

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { addPcDevices, createMachine, type Machine, type PcDevices } from "../../lib/index.js";
import { type ChildRun, runChildTimed } from "./child.js";
import { DebugStream } from "./debug-stream.js";
import { REPO } from "./qemu.js";

export interface MachineRun {
  stream: DebugStream;
  error?: string;
  /** guest instructions the run retired (soft backend) */
  instructions?: number;
  /** VM exits the loop handled during the run */
  exits: number;
  /** the PC devices, to read their counters after the run */
  devices: PcDevices;
}

/**
 * `okCode` is the isa-debug-exit code the guest ends with ((value << 1) | 1). `setup` may add
 * handlers before the run.
 */
export async function runOnMachine(
  image: Uint8Array,
  timeoutMs: number,
  opts: { okCode?: number; memoryMiB?: number; setup?: (vm: Machine, devices: PcDevices) => void } = {},
): Promise<MachineRun> {
  const stream = new DebugStream();
  const vm = await createMachine({
    backend: "soft",
    ...(opts.memoryMiB ? { memoryMiB: opts.memoryMiB } : {}),
  });
  try {
    const devices = addPcDevices(vm, {
      debugcon: (bytes) => {
        const now = performance.now();
        for (const b of bytes) stream.push(b, now);
      },
    });
    vm.load(image);
    opts.setup?.(vm, devices);
    const r = await vm.run({ timeoutMs });
    const ok = opts.okCode ?? 1;
    let error: string | undefined;
    if (r.reason !== "debug-exit" || r.exitCode !== ok) {
      let rip = "";
      try {
        rip = ` at rip 0x${vm.vcpu(0).getRegs().rip.toString(16)}`;
      } catch {}
      error = `run ended with ${r.reason}${r.exitCode !== undefined ? ` code ${r.exitCode}` : ""}${r.message ? ` (${r.message})` : ""}${rip} after ${r.durationMs.toFixed(0)} ms`;
    }
    return {
      stream,
      exits: r.exits,
      devices,
      ...(error ? { error } : {}),
      ...(r.instructions !== undefined ? { instructions: r.instructions } : {}),
    };
  } finally {
    vm.close();
  }
}

/** `nodevmm run` (bin/nodevmm.js of this checkout) in a child process; `okStatus` = guest exit code. */
export async function runOnCli(
  image: Uint8Array,
  timeoutMs: number,
  opts: { okStatus?: number; extraArgs?: string[] } = {},
): Promise<ChildRun> {
  const dir = mkdtempSync(join(tmpdir(), "nodevmm-bench-"));
  const file = join(dir, "guest.bin");
  writeFileSync(file, image);
  try {
    return await runChildTimed(
      process.execPath,
      [
        join(REPO, "bin", "nodevmm.js"),
        "run",
        file,
        "--backend",
        "soft",
        "--debugcon",
        "stdio",
        "--timeout",
        String(Math.ceil(timeoutMs / 1000)),
        ...(opts.extraArgs ?? []),
      ],
      timeoutMs + 10_000,
      opts.okStatus ?? 1,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
