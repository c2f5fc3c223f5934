// `nodevmm run IMAGE`: a machine with the standard PC devices, the image loaded, the run with its
// limits, then the exit status (the guest's debug-exit code, 0 on a clean halt, non-zero with a
// register dump when the guest crashed).

import { accessSync, constants, readFileSync, type Stats, statSync } from "node:fs";
import { resolve } from "node:path";
import { detectFormat, type LoadFormat } from "../boot/detect.js";
import type { EntryMode } from "../boot/entry.js";
import { GuestImageError } from "../boot/errors.js";
import { describeLinuxBoot } from "../boot/linux.js";
import type { ByteOutput } from "../devices/output.js";
import type { GdbServerHandle } from "../gdb/index.js";
import { formatStatsTable } from "../inspect/stats-table.js";
import { formatExit } from "../inspect/trace.js";
import type { RunLimits, RunResult } from "../vmm/loop.js";
import { createMachine, MAX_SOFT_VCPUS, type Machine, machineExitLoop } from "../vmm/machine.js";
import { addPcDevices, type PcDevices } from "../vmm/pc.js";
import { addVirtioDevices } from "../vmm/virtio.js";
import { exitStatus, isCrash, STATUS_GUEST_CRASH, STATUS_INTERRUPTED, STATUS_USAGE } from "./exit-status.js";
import { imageNotes } from "./image-notes.js";
import { LineTracker, messageOf } from "./messages.js";
import { OutputFiles } from "./outputs.js";
import {
  CliUsageError,
  DEFAULT_GDB_PORT,
  type DriveSpec,
  parseAddress,
  parseCount,
  parseDrive,
  parseGdbAddress,
  parseMemory,
  parseSeconds,
  parseSink,
  type Sink,
} from "./parse.js";
import { applyPlugin, type LoadedPlugin, loadPlugin, parsePluginSpec } from "./plugins.js";
import { bridgeStdin } from "./stdin.js";

export interface RunCliOptions {
  format: LoadFormat;
  mem?: string;
  backend: "auto" | "kvm" | "soft";
  address?: string;
  mode?: EntryMode;
  cmdline?: string;
  /** --append: QEMU's name for --cmdline */
  append?: string;
  initrd?: string;
  /** --drive file=PATH[,readonly][,serial=ID], repeatable: virtio-blk disks */
  drive?: string[];
  /** --rng: a virtio-rng */
  rng?: boolean;
  serial: string;
  debugcon: string;
  trace?: boolean;
  /** --trace-file PATH: the --trace lines go to this file instead of stderr */
  traceFile?: string;
  stats?: boolean;
  maxExits?: string;
  timeout?: string;
  strict?: boolean;
  dumpRegs?: boolean;
  verbose?: boolean;
  /** --quiet: no notice that "auto" fell back to the soft backend, no warnings */
  quiet?: boolean;
  /** --plugin MODULE[,key=value...], in the order given */
  plugin?: string[];
  /** --gdb [HOST:]PORT: a GDB remote stub listens there */
  gdb?: string;
  /** --gdb-wait: stop before the first instruction until gdb continues (QEMU's -S) */
  gdbWait?: boolean;
  /** --save PATH: a snapshot when the run stops for --max-exits/--timeout (lib/cli/resume.ts) */
  save?: string;
  /** --smp N: vCPUs */
  smp?: string;
  /** --deterministic: instruction-counted guest time, fixed vCPU turns (soft backend) */
  deterministic?: boolean;
  /** --vcpu-thread: the soft vCPU runs in a worker thread (createMachine's vcpuThread) */
  vcpuThread?: boolean;
  /** --vcpu-threads N: the worker threads the soft vCPUs run on (createMachine's vcpuThreads) */
  vcpuThreads?: string;
}

export interface CliStreams {
  stdout: NodeJS.WritableStream & { write(chunk: Uint8Array | string): boolean };
  stderr: NodeJS.WritableStream & { write(chunk: Uint8Array | string): boolean };
  stdin: NodeJS.ReadStream;
}

/** lib/vmm/machine.ts's bound on memoryMiB (either backend): 64 GiB */
export const MAX_MEM_MIB = 1 << 16;

const sizeText = (mib: number): string => (mib % 1024 === 0 ? `${mib / 1024}G` : `${mib}M`);

/** The guest RAM a machine can have: a usage error naming the limit when it is more. */
function checkMemory(memoryMiB: number, text: string): void {
  if (memoryMiB > MAX_MEM_MIB) {
    throw new CliUsageError(
      `--mem: ${text} is more than a machine can have (at most ${sizeText(MAX_MEM_MIB)})`,
    );
  }
}

/**
 * Reads an image or initrd: a regular file only. A FIFO or a device such as /dev/zero may never end
 * (and opening a FIFO waits for a writer), so it is refused by its stat, before it is opened.
 */
function readInput(path: string): Uint8Array {
  const failed = (e: unknown) =>
    new CliUsageError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? messageOf(e)}`);
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw failed(e);
  }
  if (!st.isFile()) {
    const kind = st.isDirectory()
      ? "a directory"
      : st.isFIFO()
        ? "a FIFO"
        : st.isCharacterDevice() || st.isBlockDevice()
          ? "a device"
          : st.isSocket()
            ? "a socket"
            : "not a regular file";
    throw new CliUsageError(`cannot read ${path}: ${kind}; give an image file`);
  }
  try {
    return readFileSync(path);
  } catch (e) {
    throw failed(e);
  }
}

/** A --drive image must be a regular file the run can open as asked (the device opens it later). */
function checkDrive(d: DriveSpec): void {
  try {
    if (!statSync(d.path).isFile()) throw new CliUsageError(`--drive: ${d.path} is not a regular file`);
    accessSync(d.path, d.readonly ? constants.R_OK : constants.R_OK | constants.W_OK);
  } catch (e) {
    if (e instanceof CliUsageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? messageOf(e));
    throw new CliUsageError(
      `--drive: cannot open ${d.path}: ${why}${code === "EACCES" && !d.readonly ? " (readonly?)" : ""}`,
    );
  }
}

/** The fallback notice: the first clause of why KVM could not be used, in one short line. */
function fallbackLine(reason: string): string {
  const why = reason.replace(/^KVM unavailable: /, "").split(" (")[0];
  return `KVM unavailable (${why}), using the soft backend`;
}

export async function runCommand(imagePath: string, o: RunCliOptions, io: CliStreams): Promise<number> {
  const lines = new LineTracker();
  const say = (line: string) => io.stderr.write(`${lines.takeBreak()}nodevmm: ${line}\n`);
  const files = new OutputFiles();
  try {
    return await runWithFiles(imagePath, o, io, say, lines, files);
  } finally {
    files.closeAll();
  }
}

async function runWithFiles(
  imagePath: string,
  o: RunCliOptions,
  io: CliStreams,
  say: (line: string) => void,
  lines: LineTracker,
  files: OutputFiles,
): Promise<number> {
  const guestStdout = lines.track(io.stdout);
  const output = (sink: Sink, option: string): ByteOutput | undefined =>
    sink.kind === "stdio" ? guestStdout : sink.kind === "file" ? files.open(sink.path, option) : undefined;
  let vm: Machine | undefined;
  let image: Uint8Array;
  let memoryMiB: number;
  let vcpus = 1;
  let vcpuThreads: number | undefined;
  const limits: RunLimits = {};
  let serial: ReturnType<typeof parseSink>;
  let debugcon: ReturnType<typeof parseSink>;
  const plugins: LoadedPlugin[] = [];
  let initrd: Uint8Array | undefined;
  let cmdline = o.cmdline;
  let gdb: { host: string; port: number } | undefined;
  let drives: DriveSpec[] = [];
  let address: number | undefined;
  let serialOut: ByteOutput | undefined;
  let debugconOut: ByteOutput | undefined;
  // trace lines on stderr share the terminal with the guest's output, as nodevmm's own lines do
  let traceOut: { write(text: string): unknown } = {
    write: (text: string) => io.stderr.write(lines.takeBreak() + text),
  };
  const backend = o.backend;
  let memText: string;
  // every argument is checked, and every output file opened, before a backend starts
  try {
    if (o.append !== undefined) {
      if (cmdline !== undefined) throw new CliUsageError("give the command line once: --cmdline or --append");
      cmdline = o.append;
    }
    serial = parseSink(o.serial, "--serial");
    debugcon = parseSink(o.debugcon, "--debugcon");
    if (o.maxExits !== undefined) limits.maxExits = parseCount(o.maxExits, "--max-exits");
    if (o.smp !== undefined) {
      vcpus = parseCount(o.smp, "--smp");
      if (vcpus < 1 || vcpus > MAX_SOFT_VCPUS) {
        throw new CliUsageError(`--smp takes 1-${MAX_SOFT_VCPUS} vCPUs, not ${o.smp}`);
      }
    }
    if (o.timeout !== undefined) limits.timeoutMs = parseSeconds(o.timeout, "--timeout") * 1000;
    if (o.address !== undefined) address = parseAddress(o.address);
    drives = (o.drive ?? []).map((d) => parseDrive(d));
    for (const d of drives) checkDrive(d);
    if (o.gdb !== undefined) gdb = parseGdbAddress(o.gdb);
    else if (o.gdbWait) gdb = { host: "127.0.0.1", port: DEFAULT_GDB_PORT };
    if (o.vcpuThreads !== undefined) {
      vcpuThreads = parseCount(o.vcpuThreads, "--vcpu-threads");
      if (vcpuThreads < 1 || vcpuThreads > MAX_SOFT_VCPUS) {
        throw new CliUsageError(`--vcpu-threads takes 1-${MAX_SOFT_VCPUS} threads, not ${o.vcpuThreads}`);
      }
      if (o.backend === "kvm") throw new CliUsageError("--vcpu-threads is for the soft backend");
      // the debugger holds vCPUs in their threads while one steps
      if (gdb !== undefined && vcpuThreads < vcpus) {
        throw new CliUsageError(
          `--gdb needs a thread per vCPU: --vcpu-threads ${vcpuThreads} is fewer than --smp ${vcpus}`,
        );
      }
    }
    // the soft backend's vCPU threads (KVM's have none of these limits)
    if ((o.vcpuThread || vcpuThreads !== undefined) && o.backend !== "kvm" && o.deterministic === true) {
      throw new CliUsageError(
        `${o.vcpuThread ? "--vcpu-thread" : "--vcpu-threads"} cannot be used with --deterministic yet`,
      );
    }
    for (const spec of o.plugin ?? []) plugins.push(await loadPlugin(parsePluginSpec(spec)));
    image = readInput(imagePath);
    const linux = (o.format === "auto" ? detectFormat(image) : o.format) === "linux";
    if (o.initrd !== undefined) {
      if (!linux) throw new CliUsageError(`--initrd is for a Linux kernel; ${imagePath} is not a bzImage`);
      initrd = readInput(o.initrd);
    }
    // a distribution kernel wants more than a tiny guest's 64 MiB to decompress and start
    memText = o.mem ?? (linux ? "256M" : "64M");
    memoryMiB = parseMemory(memText);
    checkMemory(memoryMiB, memText);
    serialOut = output(serial, "--serial");
    debugconOut = output(debugcon, "--debugcon");
    if (o.traceFile !== undefined) {
      const file = files.open(o.traceFile, "--trace-file");
      const encoder = new TextEncoder();
      traceOut = { write: (text: string) => file.write(encoder.encode(text)) };
    }
  } catch (e) {
    say(messageOf(e));
    return STATUS_USAGE;
  }

  let devices: PcDevices | undefined;
  const stdin =
    serial.kind === "stdio"
      ? bridgeStdin(
          io.stdin,
          () => devices?.uart,
          () => vm?.stop(),
          // the run then ends "stopped", which --save saves (resume.ts saveAfterRun)
          o.save !== undefined ? { saveAndStop: () => vm?.stop() } : {},
        )
      : undefined;
  // a Ctrl-C while the machine is being set up (before a run exists to stop) is remembered
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    vm?.stop();
  };
  process.on("SIGINT", onSigint);
  // a plugin's promise that rejects, or its timer that throws, after it registered would end the
  // process with Node's stack trace: it ends the run instead, reported in one line with status 2
  let pluginFailure: string | undefined;
  const onRejection = (reason: unknown) => {
    pluginFailure ??= `a plugin failed after the run started: ${messageOf(reason)}`;
    vm?.stop();
  };
  if (plugins.length) {
    process.on("unhandledRejection", onRejection);
    process.on("uncaughtException", onRejection);
  }
  const trace = o.trace || o.traceFile !== undefined;
  try {
    try {
      vm = await createMachine({
        memoryMiB,
        vcpus,
        backend,
        strict: o.strict ?? false,
        deterministic: o.deterministic ?? false,
        ...(o.vcpuThread ? { vcpuThread: true } : {}),
        ...(vcpuThreads !== undefined ? { vcpuThreads } : {}),
      });
      // --stats prints handling times: time every exit, not a sample of them (lib/vmm/stats.ts)
      if (o.stats) vm.stats.timeEvery = 1;
      const fallback = vm.backendInfo.fallbackReason;
      if (o.verbose || (!o.quiet && (o.stats || o.trace))) say(`backend ${vm.backendInfo.message}`);
      // "auto" that had to fall back says so in one line, as QEMU warns when it cannot use KVM
      else if (fallback !== undefined && !o.quiet) say(fallbackLine(fallback));
      if (!o.quiet) for (const w of vm.warnings) say(`warning: ${w}`);
      devices = addPcDevices(vm, {
        coalesce: !trace,
        ...(serialOut ? { serial: serialOut } : {}),
        ...(debugconOut ? { debugcon: debugconOut } : {}),
        ...(cmdline !== undefined ? { cmdline } : {}),
        ...(stdin ? { onSerialInputSpace: () => stdin.resume() } : {}),
      });
      // virtio-mmio devices; a Linux kernel learns of them from its command line
      const virtio =
        drives.length || o.rng
          ? addVirtioDevices(vm, { drives, ...(o.rng ? { rng: true } : {}) })
          : undefined;
      const kernelCmdline = virtio?.cmdline.length
        ? [cmdline, ...virtio.cmdline].filter((s) => s !== undefined && s !== "").join(" ")
        : cmdline;
      // input that came while the machine was being created waits in the bridge's backlog
      stdin?.resume();
      const loaded = vm.load(image, {
        format: o.format,
        ...(address !== undefined ? { address } : {}),
        ...(o.mode ? { mode: o.mode } : {}),
        ...(kernelCmdline !== undefined ? { cmdline: kernelCmdline } : {}),
        ...(initrd ? { initrd } : {}),
        // a multiboot kernel's command line starts with the image's name, as GRUB and QEMU pass it
        imageName: imagePath,
      });
      if (loaded.format !== "flat" && (address !== undefined || o.mode) && !o.quiet) {
        say(`warning: --address/--mode apply to flat images; ${imagePath} loaded as ${loaded.format}`);
      }
      // after the load, so that a plugin sees the machine as the guest will start on it
      const defaultHypercall = machineExitLoop(vm).handlers.hypercall;
      for (const p of plugins) await applyPlugin(vm, p, say);
      if (machineExitLoop(vm).handlers.hypercall !== defaultHypercall) {
        const blocked = await hypercallsBlocked(vm);
        if (blocked) say(`warning: a plugin answers hypercalls, but ${blocked}`);
      }
      if (o.verbose)
        say(
          `loaded ${imagePath} as ${loaded.format}, entry rip=0x${(loaded.entry.regs.rip ?? 0n).toString(16)}`,
        );
      if (o.verbose && loaded.linux) say(describeLinuxBoot(loaded.linux));
      if (o.verbose) for (const note of imageNotes(imagePath, image, loaded.format, o.mode)) say(note);
    } catch (e) {
      // the loader says which field is wrong and where; the path says in which file
      say(e instanceof GuestImageError ? `${imagePath}: ${e.message}` : messageOf(e));
      return STATUS_USAGE;
    }

    if (trace) {
      const machine = vm;
      // with several vCPUs each line says whose exit it is
      const smp = machine.vcpuCount > 1;
      machine.on("exit", (exit, info) => {
        let rip: bigint | undefined;
        try {
          rip = machine.vcpu(info.vcpu).getRegs().rip;
        } catch {
          rip = undefined;
        }
        const detail = {
          index: info.index,
          unhandled: info.unhandled,
          ...(smp ? { vcpu: info.vcpu } : {}),
          ...(rip !== undefined ? { rip } : {}),
        };
        traceOut.write(`${formatExit(exit, detail)}\n`);
      });
    }

    if (interrupted) {
      say("stopped before the guest ran");
      return STATUS_INTERRUPTED;
    }
    let result: RunResult;
    let stub: GdbServerHandle | undefined;
    try {
      if (gdb) {
        stub = await vm.gdbServer({ ...gdb, wait: o.gdbWait ?? false, log: say });
        say(
          `gdb: listening on ${stub.host}:${stub.port}${o.gdbWait ? " (the guest waits for gdb to continue)" : ""}`,
        );
      }
      result = stub ? await stub.run(limits) : await vm.run(limits);
    } catch (e) {
      // the run could not start or went wrong outside the guest (e.g. a plugin closed the machine)
      // a port gdb cannot have (in use, not permitted) is the user's to fix, like a bad option
      const listen = e instanceof Error && e.name === "GdbServerError";
      say(`${listen ? "" : "internal error: "}${messageOf(e)}`);
      return listen ? STATUS_USAGE : STATUS_GUEST_CRASH;
    } finally {
      await stub?.close();
    }
    if (pluginFailure !== undefined) {
      say(pluginFailure);
      return STATUS_USAGE;
    }
    let status = exitStatus(result);
    if (o.save !== undefined) {
      const { saveAfterRun } = await import("./resume.js");
      const cli = { drives: drives.map((d) => ({ ...d, path: resolve(d.path) })), rng: o.rng ?? false };
      const app = { cli: cmdline === undefined ? cli : { ...cli, cmdline } };
      status = (await saveAfterRun(vm, result, o.save, app, say)) ?? status;
    }
    if (isCrash(result)) {
      say(`guest stopped: ${result.reason}${result.message ? ` (${result.message})` : ""}`);
      io.stderr.write(safeReport(vm));
    } else if (result.reason !== "hlt" && result.reason !== "debug-exit") {
      say(`${result.reason}${result.message ? `: ${result.message}` : ""}`);
    } else if (o.verbose) {
      say(
        `${result.reason}${result.exitCode !== undefined ? ` code ${result.exitCode}` : ""} after ${result.exits} exits`,
      );
    }
    if (o.dumpRegs && !isCrash(result)) io.stderr.write(safeReport(vm));
    if (o.stats) {
      io.stderr.write(
        formatStatsTable(vm.stats.rows(), {
          guestNs: vm.stats.guestNs,
          unhandled: vm.stats.unhandled,
          byVcpu: vm.stats.byVcpu,
        }),
      );
    }
    return status;
  } finally {
    process.off("SIGINT", onSigint);
    process.off("unhandledRejection", onRejection);
    process.off("uncaughtException", onRejection);
    stdin?.close();
    vm?.close();
  }
}

/** Every vCPU's registers (with a CPU#n header, as QEMU's `info registers -a`, when there are several). */
function safeReport(vm: Machine): string {
  let out = "";
  for (let i = 0; i < vm.vcpuCount; i++) {
    if (vm.vcpuCount > 1) out += `CPU#${i}\n`;
    try {
      out += vm.vcpu(i).report();
    } catch (e) {
      out += `(registers unavailable: ${messageOf(e)})\n`;
    }
  }
  return out;
}

/** Why VMCALLs of the guest will not reach the loop's hypercall handler on this machine, if so. */
async function hypercallsBlocked(vm: Machine): Promise<string | undefined> {
  if (vm.backend.kind !== "kvm") return undefined;
  const numbers = (vm.backend as { hypercalls?: readonly number[] }).hypercalls;
  if (numbers && numbers.length === 0) {
    return "this kernel does not pass VMCALL to user space (KVM_CAP_EXIT_HYPERCALL); try --backend soft";
  }
  const kvm = await import("../vmm/backends/kvm.js");
  const reach = kvm.hypercallExitsReachLoop();
  return reach.ok ? undefined : `${reach.reason}; try --backend soft`;
}
