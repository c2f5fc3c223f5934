/**
 * A virtual machine monitor for Node.js: `createMachine()` gives a {@link Machine} that runs x86
 * guests on KVM where `/dev/kvm` is usable and on a software VT-x everywhere else, with the same
 * VM-exit loop, devices, loaders and register inspection on both. The raw KVM layer
 * (`Kvm`, `KvmVm`, `KvmVcpu`) is the `nodevmm/kvm` subpath.
 *
 * @packageDocumentation
 */

// nodevmm's public API: createMachine and the Machine, the exit/register types both backends share,
// the devices, the loaders' options and errors, and the inspection helpers. Runtime exports are
// listed one by one: helpers the modules share among themselves (encoders, bit tests, unit
// conversions, fw_cfg keys) stay internal. The raw KVM layer is the `nodevmm/kvm` subpath.
//
// Naming: exit kinds (`VmExit["kind"]`) are snake_case, as KVM's KVM_EXIT_* names are
// (`internal_error`, `fail_entry`); run reasons (`RunResult["reason"]`) are kebab-case words for
// people (`internal-error`, `debug-exit`). Bus handlers take (where, handler, length?) on both
// buses; mmio.onRead/onWrite also accept the older (address, length, handler).

export type {
  BootLayout,
  ElfOptions,
  EntryState,
  FlatOptions,
  ImageFormat,
  LinuxOptions,
  LoadFormat,
  LoadImageOptions,
  LoadResult,
  MultibootOptions,
} from "./boot/index.js";
export { BootSetupError, GuestImageError } from "./boot/index.js";
export type { NodevmmPlugin, PluginContext } from "./cli/plugins.js";
export type * from "./devices/index.js";
export {
  AcpiPm,
  ApicTimer,
  CmosRtc,
  DebugConsole,
  DebugExit,
  DeviceConfigError,
  FwCfg,
  FwCfgError,
  I8042,
  I8254,
  I8259Pair,
  IoApic,
  LocalApic,
  openDiskImage,
  PcInterrupts,
  PicChip,
  PostPort,
  ResetControl,
  SystemControlPortA,
  Uart16550,
  VirtioBlk,
  VirtioConsole,
  VirtioMmioDevice,
  VirtioRng,
  Virtqueue,
  VirtqueueError,
} from "./devices/index.js";
export type * from "./inspect/index.js";
export {
  CR0_BITS,
  CR4_BITS,
  cpuMode,
  decodeCr0,
  decodeCr3,
  decodeCr4,
  decodeDescriptor,
  decodeEfer,
  decodeRflags,
  describeSegment,
  disassemble,
  EFER_BITS,
  formatDescriptors,
  formatDisassembly,
  formatExit,
  formatExitDetail,
  formatRaw,
  formatRegisters,
  formatSegmentLine,
  formatStatsTable,
  formatTranslation,
  kvmExitName,
  listDescriptors,
  modeBitness,
  pagingMode,
  RFLAGS_BITS,
  segmentAttributes,
  vmxExitReasonName,
  walkPageTables,
} from "./inspect/index.js";
export { KvmUnavailableError, type KvmUnavailableReason } from "./kvm/errors.js";
// exits.ts's DebugExit (a debug exception) is exported as DebugExceptionExit: DebugExit is the
// isa-debug-exit device.
export type {
  CpuidExit,
  DebugExit as DebugExceptionExit,
  FailEntryExit,
  HltExit,
  HypercallExit,
  InternalErrorExit,
  IntrExit,
  IoExit,
  IrqWindowOpenExit,
  MmioExit,
  MsrExit,
  RawExit,
  ShutdownExit,
  SystemEventExit,
  UnknownExit,
  VmExit,
  VmExitKind,
} from "./types/exits.js";
export type * from "./types/regs.js";
export { emptyRegs, GPR_NAMES, segment } from "./types/regs.js";
export type { BackendKind, InterruptController, MachineBackend, VcpuBackend } from "./vmm/backend.js";
export type {
  BackendFactory,
  BackendFactoryOptions,
  BackendInfo,
  BackendRequest,
} from "./vmm/backend-select.js";
export { Bus, type BusClaim, type UnhandledAccess } from "./vmm/bus.js";
export {
  IoBusApi,
  MmioBusApi,
  type MmioReadHandler,
  type MmioWriteHandler,
  type PortInHandler,
  type PortOutHandler,
} from "./vmm/bus-api.js";
export {
  BackendUnavailableError,
  BusConflictError,
  InvalidArgumentError,
  MachineBusyError,
  MachineClosedError,
  MachineConfigError,
  RegisterValueError,
  UnhandledAccessError,
  VmmError,
} from "./vmm/errors.js";
export type { ExitEventInfo, MachineEvents } from "./vmm/events.js";
export { HYPERCALL_ENOSYS } from "./vmm/handlers.js";
export { type HostInfo, probeHost } from "./vmm/host-info.js";
export type {
  ExitContext,
  ExitHandler,
  ExitHandlerTable,
  RunLimits,
  RunReason,
  RunResult,
  StopRun,
} from "./vmm/loop.js";
// the class as a type only: machines come from createMachine, which sets up what a run needs
export { createMachine, type Machine, type MachineOptions } from "./vmm/machine.js";
export { GuestMemory, GuestMemoryError, type MemoryRegion } from "./vmm/memory.js";
export { addPcDevices, type PcDeviceOptions, type PcDevices } from "./vmm/pc.js";
export { ExitStats } from "./vmm/stats.js";
export { Vcpu } from "./vmm/vcpu.js";
