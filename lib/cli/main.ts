// The `nodevmm` command. main(argv) returns the exit status; bin/nodevmm.js sets it.
// The commands' modules (the machine, devices, loaders) load when a command runs, not for --help
// or --version; the backends load when one is opened (lib/vmm/backend-select.ts).

import { Command, CommanderError, Option } from "commander";
import { STATUS_USAGE } from "./exit-status.js";
import type { ResumeCliOptions } from "./resume.js";
import type { CliStreams, RunCliOptions } from "./run.js";
import { packageVersion } from "./version.js";

const RUN_EPILOG = `
Flat images default to the boot-sector convention: loaded at 0x7C00, real mode, CS:IP 0000:7C00.
Devices: COM1 (0x3f8, IRQ 4), debug console (0xe9), isa-debug-exit (0xf4), POST (0x80), CMOS/RTC,
i8042, fw_cfg (0x510); on the soft backend also the i8259 PICs and the i8254 PIT.
With --serial stdio, stdin is COM1's input: a terminal is put in raw mode (Ctrl-A x stops the
machine); piped input is passed on byte for byte.

Plugins: --plugin PATH[,key=value...] imports PATH (relative to the working directory) and calls its
default export (vm, { options, optionText, path, log }) after the image is loaded, before the run;
it may add devices (vm.addDevice), port/MMIO handlers (vm.io.onIn/onOut, vm.mmio.onRead/onWrite) and
exit handlers (vm.setExitHandler). ",," stands for a comma inside PATH or a value. Examples:
  --plugin dist/examples/plugins/doubler.js       the device of examples/guests/custom-device.c
  --plugin dist/examples/plugins/hypercall.js     the VMCALL channel of examples/guests/hypercall.md

Exit status:
  the guest's isa-debug-exit code ((value << 1) | 1, low 8 bits), 0 on a clean halt (or reset),
  2 bad arguments / image / plugin / backend, 3 the guest crashed (triple fault, entry failure,
  internal error, a handler that threw; registers are dumped to stderr), 124 --timeout or
  --max-exits reached, 130 interrupted.`;

export function buildProgram(io: CliStreams, setStatus: (n: number) => void): Command {
  const program = new Command("nodevmm")
    .description("A virtual machine monitor for Node.js: KVM where /dev/kvm works, a software VT-x elsewhere")
    .version(packageVersion(), "-V, --version", "print the nodevmm version")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError();

  program
    .command("run")
    .description("boot a guest image")
    .argument("<image>", "guest image (flat binary, ELF32/ELF64, multiboot v1, Linux bzImage, firmware)")
    .addOption(
      new Option(
        "--format <format>",
        "image format (bios: a 64/128/256 KiB firmware image at the reset vector; never auto-detected)",
      )
        .choices(["auto", "flat", "elf", "multiboot", "linux", "bios"])
        .default("auto"),
    )
    .option("--mem <size>", "guest RAM, e.g. 64M, 1G (default 64M; 256M for a Linux kernel)")
    .option("--smp <n>", "vCPUs (default 1; more than 1 runs on the soft backend for now)")
    .option(
      "--deterministic",
      "soft backend: guest time counts instructions and vCPUs take fixed turns, so runs repeat exactly",
    )
    .addOption(
      new Option("--backend <backend>", "CPU backend (auto: KVM when usable)")
        .choices(["auto", "kvm", "soft"])
        .default("auto"),
    )
    .option(
      "--vcpu-thread",
      "soft backend: run each vCPU in a worker thread of its own beside the exit loop (not with --gdb, --deterministic)",
    )
    .option(
      "--vcpu-threads <n>",
      "soft backend: run the vCPUs on N worker threads (implies --vcpu-thread; fewer than --smp: they take turns and move between threads; not with --gdb)",
    )
    .option(
      "--address <addr>",
      "load address of a flat image (default 0x7C00 in real mode, 0x100000 otherwise)",
    )
    .addOption(
      new Option("--mode <mode>", "entry mode of a flat image").choices(["real", "protected", "long"]),
    )
    .option("--cmdline <text>", "kernel command line (Linux, multiboot info, fw_cfg)")
    .option("--append <text>", "the same as --cmdline (QEMU's spelling)")
    .option("--initrd <file>", "initial ramdisk of a Linux kernel")
    .option(
      "--drive <file=PATH[,readonly][,serial=ID]>",
      "a virtio-blk disk backed by an image file (vda, vdb, ... in order); repeatable",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--rng", "a virtio-rng entropy device")
    .option("--serial <sink>", "COM1 output: stdio | file:PATH | none", "stdio")
    .option("--debugcon <sink>", "port 0xE9 output: stdio | file:PATH | none", "stdio")
    .option("--trace", "print every VM exit to stderr")
    .option("--trace-file <path>", "print every VM exit to this file instead (implies --trace)")
    .option("--stats", "print exit statistics to stderr at the end")
    .option("--max-exits <n>", "stop after N exits")
    .option("--timeout <seconds>", "stop after this many seconds")
    .option("--strict", "accesses to unregistered ports/MMIO are errors")
    .option(
      "--plugin <module[,key=value...]>",
      "ES module whose default export (vm, context) adds devices or handlers before the run; repeatable",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--dump-regs", "print the registers at the end of every run")
    .option("--gdb <[host:]port>", "listen for gdb (remote protocol) there; host default 127.0.0.1")
    .option("--gdb-wait", "stop before the first instruction until gdb continues (port 1234 without --gdb)")
    .option("--save <path>", "save a snapshot when the run stops for --max-exits/--timeout (see resume)")
    .option("-v, --verbose", "say which backend runs, what the image looks like and how the run ended")
    .option("-q, --quiet", "no notice when KVM is unavailable and the soft backend runs instead, no warnings")
    .addHelpText("after", RUN_EPILOG)
    .action(async (image: string, opts: RunCliOptions) => {
      const { runCommand } = await import("./run.js");
      setStatus(await runCommand(image, opts, io));
    });

  program
    .command("resume")
    .description("resume a snapshot saved with run --save")
    .argument("<snapshot>", "snapshot file")
    .addOption(
      new Option("--backend <backend>", "CPU backend (auto: KVM when usable)")
        .choices(["auto", "kvm", "soft"])
        .default("auto"),
    )
    .option("--serial <sink>", "COM1 output: stdio | file:PATH | none", "stdio")
    .option("--debugcon <sink>", "port 0xE9 output: stdio | file:PATH | none", "stdio")
    .option("--max-exits <n>", "stop after N exits")
    .option("--timeout <seconds>", "stop after this many seconds")
    .option("--save <path>", "save again when this run stops for a limit")
    .option("-v, --verbose", "say which backend runs")
    .action(async (path: string, opts: ResumeCliOptions) => {
      const { resumeCommand } = await import("./resume.js");
      setStatus(await resumeCommand(path, opts, io));
    });

  program
    .command("info")
    .description("report whether this host can use KVM, and what the backends say")
    .option("--json", "machine-readable output")
    .action(async (opts: { json?: boolean }) => {
      const { infoCommand } = await import("./info.js");
      setStatus(await infoCommand(opts, io));
    });

  return program;
}

export async function main(
  argv: string[],
  io: CliStreams = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
): Promise<number> {
  let status = 0;
  const program = buildProgram(io, (n) => {
    status = n;
  });
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end through here with exit code 0
      status = e.exitCode === 0 ? 0 : STATUS_USAGE;
    } else {
      const { messageOf } = await import("./messages.js");
      io.stderr.write(`nodevmm: ${messageOf(e)}\n`);
      status = 1;
    }
  }
  process.exitCode = status;
  return status;
}
