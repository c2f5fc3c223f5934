// `nodevmm run ... --save PATH` and `nodevmm resume PATH`: a run that stops for a limit is saved
// (lib/snapshot) with the options that rebuild its devices; resume rebuilds them, restores the
// machine and runs on with the limits given to it.

import type { RunLimits, RunResult } from "../vmm/loop.js";
import { createMachine, type Machine } from "../vmm/machine.js";
import { addPcDevices } from "../vmm/pc.js";
import { addVirtioDevices } from "../vmm/virtio.js";
import { exitStatus, isCrash, STATUS_GUEST_CRASH, STATUS_USAGE } from "./exit-status.js";
import { messageOf } from "./messages.js";
import { OutputFiles } from "./outputs.js";
import { type DriveSpec, parseCount, parseSeconds, parseSink, type Sink } from "./parse.js";
import type { CliStreams } from "./run.js";

/** What the CLI keeps in a snapshot to rebuild the machine's devices on resume. */
export interface CliSnapshotApp {
  cli: { cmdline?: string; drives: DriveSpec[]; rng: boolean };
}

const SAVED_ON: readonly string[] = ["timeout", "max-exits", "stopped"];

/** --save: writes the snapshot when the run stopped for a limit (or was stopped); the status to use. */
export async function saveAfterRun(
  vm: Machine,
  result: RunResult,
  path: string,
  app: CliSnapshotApp,
  say: (line: string) => void,
): Promise<number | undefined> {
  if (!SAVED_ON.includes(result.reason)) {
    say(`not saved: the guest ended (${result.reason}), there is nothing to resume`);
    return undefined;
  }
  try {
    const saved = await vm.snapshot(path, { app });
    say(`saved ${saved.path} (${saved.bytes} bytes, ${saved.pages} pages of RAM)`);
    return undefined;
  } catch (e) {
    say(`cannot save: ${messageOf(e)}`);
    return STATUS_GUEST_CRASH;
  }
}

export interface ResumeCliOptions {
  backend: "auto" | "kvm" | "soft";
  serial: string;
  debugcon: string;
  maxExits?: string;
  timeout?: string;
  save?: string;
  verbose?: boolean;
}

export async function resumeCommand(path: string, o: ResumeCliOptions, io: CliStreams): Promise<number> {
  const files = new OutputFiles();
  try {
    return await resumeWithFiles(path, o, io, files);
  } finally {
    files.closeAll();
  }
}

async function resumeWithFiles(
  path: string,
  o: ResumeCliOptions,
  io: CliStreams,
  files: OutputFiles,
): Promise<number> {
  const say = (line: string) => io.stderr.write(`nodevmm: ${line}\n`);
  const limits: RunLimits = {};
  const output = (sink: Sink, option: string) =>
    sink.kind === "stdio" ? io.stdout : sink.kind === "file" ? files.open(sink.path, option) : undefined;
  let out: ReturnType<typeof output>;
  let dbg: ReturnType<typeof output>;
  // the output files are opened before the snapshot is read: a bad path is a usage error
  try {
    const serial = parseSink(o.serial, "--serial");
    const debugcon = parseSink(o.debugcon, "--debugcon");
    if (o.maxExits !== undefined) limits.maxExits = parseCount(o.maxExits, "--max-exits");
    if (o.timeout !== undefined) limits.timeoutMs = parseSeconds(o.timeout, "--timeout") * 1000;
    out = output(serial, "--serial");
    dbg = output(debugcon, "--debugcon");
  } catch (e) {
    say(messageOf(e));
    return STATUS_USAGE;
  }
  let vm: Machine | undefined;
  let app: CliSnapshotApp = { cli: { drives: [], rng: false } };
  try {
    try {
      vm = await createMachine({
        restore: path,
        backend: o.backend,
        setup: (m, snap) => {
          const saved = (snap.app as Partial<CliSnapshotApp> | undefined)?.cli;
          if (saved) app = { cli: saved };
          addPcDevices(m, {
            ...(out ? { serial: out } : {}),
            ...(dbg ? { debugcon: dbg } : {}),
            ...(app.cli.cmdline !== undefined ? { cmdline: app.cli.cmdline } : {}),
          });
          if (app.cli.drives.length || app.cli.rng) {
            addVirtioDevices(m, { drives: app.cli.drives, ...(app.cli.rng ? { rng: true } : {}) });
          }
        },
        onNotes: (notes) => {
          for (const n of notes) say(`note: ${n}`);
        },
      });
    } catch (e) {
      say(messageOf(e));
      return STATUS_USAGE;
    }
    if (o.verbose) say(`resumed ${path} on ${vm.backendInfo.message}`);
    const result = await vm.run(limits);
    let status = exitStatus(result);
    if (isCrash(result) || (result.reason !== "hlt" && result.reason !== "debug-exit")) {
      say(`${result.reason}${result.message ? `: ${result.message}` : ""}`);
    }
    if (o.save !== undefined) status = (await saveAfterRun(vm, result, o.save, app, say)) ?? status;
    return status;
  } finally {
    vm?.close();
  }
}
