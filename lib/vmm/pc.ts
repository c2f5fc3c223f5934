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
  PostPort,
  ResetControl,
  SystemControlPortA,
  Uart16550,
} from "../devices/index.js";
import type { Machine } from "./machine.js";
import { optionsArg } from "./validate.js";

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

export interface PcDevices {
  uart: Uart16550;
  debugcon: DebugConsole;
  debugExit: DebugExit;
  post: PostPort;
  cmos: CmosRtc;
  i8042: I8042;
  fwCfg: FwCfg;
  /** PM1a event/control blocks and PM timer at 0xB000 (the FADT's), SCI on IRQ 9 */
  acpiPm: AcpiPm;
  /** port 0xCF9 (the FADT's RESET_REG) */
  resetControl: ResetControl;
  /** port 0x92 */
  port92: SystemControlPortA;
  /** soft backend only */
  pit?: I8254;
}

export function addPcDevices(vm: Machine, options?: PcDeviceOptions): PcDevices {
  const opts = optionsArg("options", options);
  const ramBytes = vm.memory.size;
  const uart = vm.addDevice(
    new Uart16550({
      base: 0x3f8,
      irq: 4,
      ...(opts.serial ? { output: opts.serial } : {}),
      ...(opts.onSerialInputSpace ? { onInputSpace: opts.onSerialInputSpace } : {}),
    }),
  );
  const debugcon = vm.addDevice(
    new DebugConsole({ port: 0xe9, ...(opts.debugcon ? { output: opts.debugcon } : {}) }),
  );
  const debugExit = vm.addDevice(new DebugExit({ port: 0xf4 }));
  const post = vm.addDevice(new PostPort({ port: 0x80 }));
  if (opts.coalesce ?? true) {
    vm.coalesceWrites("io", 0xe9);
    vm.coalesceWrites("io", 0x80);
  }
  const cmos = vm.addDevice(new CmosRtc({ memoryBytes: ramBytes, cpus: vm.vcpuCount }));
  const i8042 = vm.addDevice(new I8042());
  const fwCfg = vm.addDevice(
    new FwCfg({
      ramBytes,
      cpus: vm.vcpuCount,
      ...(opts.cmdline !== undefined ? { cmdline: opts.cmdline } : {}),
      dmaMemory: { read: (gpa, len) => vm.memory.read(gpa, len), write: (gpa, b) => vm.memory.write(gpa, b) },
    }),
  );
  const acpiPm = vm.addDevice(
    new AcpiPm({ base: PC_ACPI.pmBase, irq: PC_ACPI.sciIrq, s5SlpTyp: PC_ACPI.s5SlpTyp }),
  );
  const resetControl = vm.addDevice(new ResetControl({ port: PC_ACPI.resetPort }));
  const port92 = vm.addDevice(new SystemControlPortA());
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
  };
  if (vm.backend.kind === "soft") devices.pit = vm.addDevice(new I8254({ base: 0x40, irq: 0 }));
  return devices;
}
