// The standard PC devices a guest expects, with their usual ports and IRQs: COM1, the debug
// console, isa-debug-exit, POST, CMOS/RTC, i8042, fw_cfg, the ACPI PM block and reset ports the
// ACPI tables describe (lib/boot/acpi, written by vm.loadLinux), and on the soft backend the i8254 PIT
// (KVM emulates the PIT, PICs and APICs in the kernel; the soft machine's i8259 pair, I/O APIC and
// local APIC come with createMachine). What `nodevmm run` attaches.

import { PC_ACPI } from "../boot/acpi/pc.js";
import {
  AcpiPm,
  type ByteOutput,
  CmosRtc,
  DebugConsole,
  DebugExit,
  FwCfg,
  I8042,
  I8254,
  PCI_CONFIG_ADDRESS,
  PciHost,
  PostPort,
  ResetControl,
  SystemControlPortA,
  Uart16550,
} from "../devices/index.js";
import { byteOutputProblem } from "../devices/output.js";
import { InvalidArgumentError } from "./errors.js";
import type { Machine } from "./machine.js";
import { booleanArg, functionArg, objectArg, optional, optionsArg, stringArg } from "./validate.js";

/** A ByteOutput option, checked here so that the error names addPcDevices' option, not the device's. */
function outputArg(argument: string, value: unknown): ByteOutput {
  const problem = byteOutputProblem(value);
  if (problem) throw new InvalidArgumentError(`${argument}: ${problem}`, argument);
  return value as ByteOutput;
}

/** Options of addPcDevices(). */
export interface PcDeviceOptions {
  /** COM1 output; default: discard */
  serial?: ByteOutput;
  /** port 0xE9 output; default: discard */
  debugcon?: ByteOutput;
  /** fw_cfg's kernel command line */
  cmdline?: string;
  /**
   * Let the debug console's and POST port's writes skip their exits (KVM coalesced PIO; replayed in
   * order before the next exit, see Machine.coalesceWrites). Default true; off for exact per-exit
   * traces (a replayed write's exit comes after the guest ran on).
   */
  coalesce?: boolean;
  /** called when COM1's receive FIFO has room again after receive() refused bytes */
  onSerialInputSpace?: () => void;
}

/** The devices addPcDevices() added, to reach them afterwards (input to the UART, POST codes, ...). */
export interface PcDevices {
  /** COM1: port 0x3F8, IRQ 4. */
  uart: Uart16550;
  /** The debug console at port 0xE9. */
  debugcon: DebugConsole;
  /** isa-debug-exit at port 0xF4. */
  debugExit: DebugExit;
  /** The POST code port 0x80. */
  post: PostPort;
  /** CMOS/RTC at 0x70/0x71, IRQ 8, with the RAM size and CPU count filled in. */
  cmos: CmosRtc;
  /** The keyboard controller at 0x60/0x64, IRQ 1. */
  i8042: I8042;
  /** fw_cfg at 0x510 with DMA at 0x514 (RAM size, CPUs, command line). */
  fwCfg: FwCfg;
  /** PM1a event/control blocks and PM timer at 0xB000 (the FADT's), SCI on IRQ 9 */
  acpiPm: AcpiPm;
  /** port 0xCF9 (the FADT's RESET_REG) */
  resetControl: ResetControl;
  /** port 0x92 */
  port92: SystemControlPortA;
  /** PCI configuration mechanism #1 (0xCF8/0xCFC) with the i440FX host bridge at 00:00.0 */
  pciHost: PciHost;
  /** soft backend only */
  pit?: I8254;
}

/**
 * Adds the standard PC devices a guest expects, at their usual ports and IRQs (what `nodevmm run` attaches):
 * COM1, debug console, isa-debug-exit, POST, CMOS/RTC, i8042, fw_cfg, the ACPI PM block, the reset ports, and
 * on the soft backend the i8254 PIT. Options are checked before any device is added.
 */
export function addPcDevices(vm: Machine, options?: PcDeviceOptions): PcDevices {
  objectArg("vm", vm);
  const opts = optionsArg("options", options);
  // every option is checked before the first device is added, so a wrong one leaves vm as it was
  const serial = optional(opts.serial, "options.serial", outputArg);
  const debugconOut = optional(opts.debugcon, "options.debugcon", outputArg);
  const cmdline = optional(opts.cmdline, "options.cmdline", stringArg);
  const coalesce = optional(opts.coalesce, "options.coalesce", booleanArg) ?? true;
  const onSerialInputSpace = optional(opts.onSerialInputSpace, "options.onSerialInputSpace", functionArg);
  const ramBytes = vm.memory.size;
  const uart = vm.addDevice(
    new Uart16550({
      base: 0x3f8,
      irq: 4,
      ...(serial ? { output: serial } : {}),
      ...(onSerialInputSpace ? { onInputSpace: onSerialInputSpace as () => void } : {}),
    }),
  );
  const debugcon = vm.addDevice(
    new DebugConsole({ port: 0xe9, ...(debugconOut ? { output: debugconOut } : {}) }),
  );
  const debugExit = vm.addDevice(new DebugExit({ port: 0xf4 }));
  const post = vm.addDevice(new PostPort({ port: 0x80 }));
  if (coalesce) {
    vm.coalesceWrites("io", 0xe9);
    vm.coalesceWrites("io", 0x80);
  }
  const cmos = vm.addDevice(new CmosRtc({ memoryBytes: ramBytes, cpus: vm.vcpuCount }));
  const i8042 = vm.addDevice(new I8042());
  const fwCfg = vm.addDevice(
    new FwCfg({
      ramBytes,
      cpus: vm.vcpuCount,
      ...(cmdline !== undefined ? { cmdline } : {}),
      dmaMemory: { read: (gpa, len) => vm.memory.read(gpa, len), write: (gpa, b) => vm.memory.write(gpa, b) },
    }),
  );
  const acpiPm = vm.addDevice(
    new AcpiPm({ base: PC_ACPI.pmBase, irq: PC_ACPI.sciIrq, s5SlpTyp: PC_ACPI.s5SlpTyp }),
  );
  const resetControl = vm.addDevice(new ResetControl({ port: PC_ACPI.resetPort }));
  const port92 = vm.addDevice(new SystemControlPortA());
  const pciHost = vm.addDevice(new PciHost());
  // CONFIG_ADDRESS writes take effect only at the next CONFIG_DATA access (which exits, and replays
  // the queue first), as QEMU's i440FX coalesces 0xCF8. KVM queues every write inside the zone: a
  // byte write to 0xCF9 (reset control) is applied at the vCPU's next exit, within one watchdog
  // period even if the guest halts.
  if (coalesce) vm.coalesceWrites("io", PCI_CONFIG_ADDRESS, 4);
  const devices: PcDevices = {
    uart,
    debugcon,
    debugExit,
    post,
    cmos,
    i8042,
    fwCfg,
    acpiPm,
    resetControl,
    port92,
    pciHost,
  };
  if (vm.backend.kind === "soft") devices.pit = vm.addDevice(new I8254({ base: 0x40, irq: 0 }));
  return devices;
}
