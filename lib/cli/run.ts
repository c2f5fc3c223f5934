// `nodevmm run IMAGE`: a machine with the standard PC devices, the image loaded, the run with its
// limits, then the exit status (the guest's debug-exit code, 0 on a clean halt, non-zero with a
// register dump when the guest crashed).

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { detectFormat, type LoadFormat } from "../boot/detect.js";
import type { CpuMode } from "../boot/entry.js";
import { describeLinuxBoot } from "../boot/linux.js";
import type { GdbServerHandle } from "../gdb/index.js";
import { formatStatsTable } from "../inspect/stats-table.js";
import { formatExit } from "../inspect/trace.js";
import type { RunLimits, RunResult } from "../vmm/loop.js";
import { createMachine, MAX_SOFT_VCPUS, type Machine, machineExitLoop } from "../vmm/machine.js";
import { addPcDevices, type PcDevices } from "../vmm/pc.js";
import { addVirtioDevices } from "../vmm/virtio.js";
import { exitStatus, isCrash, STATUS_GUEST_CRASH, STATUS_INTERRUPTED, STATUS_USAGE } from "./exit-status.js";
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
  sinkOutput,
} from "./parse.js";
import { applyPlugin, type LoadedPlugin, loadPlugin, PluginError, parsePluginSpec } from "./plugins.js";
import { bridgeStdin } from "./stdin.js";

export interface RunCliOptions {
  format: LoadFormat;
  mem?: string;
  backend: "auto" | "kvm" | "soft";
  address?: string;
  mode?: CpuMode;
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
  stats?: boolean;
  maxExits?: string;
  timeout?: string;
  strict?: boolean;
  dumpRegs?: boolean;
  verbose?: boolean;
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
}

export interface CliStreams {
  stdout: NodeJS.WritableStream & { write(chunk: Uint8Array | string): boolean };
  stderr: NodeJS.WritableStream & { write(chunk: Uint8Array | string): boolean };
  stdin: NodeJS.ReadStream;
}

const errorText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

export async function runCommand(imagePath: string, o: RunCliOptions, io: CliStreams): Promise<number> {
  const say = (line: string) => io.stderr.write(`nodevmm: ${line}\n`);
  let vm: Machine | undefined;
  let image: Uint8Array;
  let memoryMiB: number;
  let vcpus = 1;
  const limits: RunLimits = {};
  let serial: ReturnType<typeof parseSink>;
  let debugcon: ReturnType<typeof parseSink>;
  const plugins: LoadedPlugin[] = [];
  let initrd: Uint8Array | undefined;
  let cmdline = o.cmdline;
  let gdb: { host: string; port: number } | undefined;
  let drives: DriveSpec[] = [];
  const readInput = (path: string): Uint8Array => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new CliUsageError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? errorText(e)}`);
    }
  };
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
    drives = (o.drive ?? []).map((d) => parseDrive(d));
    if (o.gdb !== undefined) gdb = parseGdbAddress(o.gdb);
    else if (o.gdbWait) gdb = { host: "127.0.0.1", port: DEFAULT_GDB_PORT };
    for (const spec of o.plugin ?? []) plugins.push(await loadPlugin(parsePluginSpec(spec)));
    image = readInput(imagePath);
    const linux = (o.format === "auto" ? detectFormat(image) : o.format) === "linux";
    if (o.initrd !== undefined) {
      if (!linux) throw new CliUsageError(`--initrd is for a Linux kernel; ${imagePath} is not a bzImage`);
      initrd = readInput(o.initrd);
    }
    // a distribution kernel wants more than a tiny guest's 64 MiB to decompress and start
    memoryMiB = parseMemory(o.mem ?? (linux ? "256M" : "64M"));
  } catch (e) {
    say(e instanceof CliUsageError || e instanceof PluginError ? e.message : errorText(e));
    return STATUS_USAGE;
  }

  let devices: PcDevices | undefined;
  const stdin =
    serial.kind === "stdio"
      ? bridgeStdin(
          io.stdin,
          () => devices?.uart,
          () => vm?.stop(),
        )
      : undefined;
  // a Ctrl-C while the machine is being set up (before a run exists to stop) is remembered
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    vm?.stop();
  };
  process.on("SIGINT", onSigint);
  try {
    try {
      vm = await createMachine({
        memoryMiB,
        vcpus,
        backend: o.backend,
        strict: o.strict ?? false,
        deterministic: o.deterministic ?? false,
      });
      // --stats prints handling times: time every exit, not a sample of them (lib/vmm/stats.ts)
      if (o.stats) vm.stats.timeEvery = 1;
      // "auto" that had to fall back says why, as QEMU warns when it cannot use KVM
      if (o.verbose || o.stats || o.trace || vm.backendInfo.fallbackReason !== undefined) {
        say(`backend ${vm.backendInfo.message}`);
      }
      for (const w of vm.warnings) say(`warning: ${w}`);
      devices = addPcDevices(vm, {
        coalesce: !o.trace,
        ...(sinkOutput(serial, io.stdout) ? { serial: sinkOutput(serial, io.stdout)! } : {}),
        ...(sinkOutput(debugcon, io.stdout) ? { debugcon: sinkOutput(debugcon, io.stdout)! } : {}),
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
      const address = o.address !== undefined ? parseAddress(o.address) : undefined;
      const loaded = vm.load(image, {
        format: o.format,
        ...(address !== undefined ? { address } : {}),
        ...(o.mode ? { mode: o.mode } : {}),
        ...(kernelCmdline !== undefined ? { cmdline: kernelCmdline } : {}),
        ...(initrd ? { initrd } : {}),
      });
      if (loaded.format !== "flat" && (address !== undefined || o.mode)) {
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
    } catch (e) {
      say(e instanceof PluginError ? e.message : errorText(e));
      return STATUS_USAGE;
    }

    if (o.trace) {
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
        io.stderr.write(`${formatExit(exit, detail)}\n`);
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
      say(`${listen ? "" : "internal error: "}${errorText(e)}`);
      return listen ? STATUS_USAGE : STATUS_GUEST_CRASH;
    } finally {
      await stub?.close();
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
      out += `(registers unavailable: ${errorText(e)})\n`;
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
