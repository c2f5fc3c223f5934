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
// Naming: every string the API hands out or takes as a name is kebab-case: exit kinds
// (`VmExit["kind"]`: `internal-error`, `fail-entry`, `irq-window-open`) and run reasons
// (`RunResult["reason"]`: `internal-error`, `debug-exit`), so an exit and the run reason it causes
// read the same. Bus handlers take (where, handler, length?) on both buses; mmio.onRead/onWrite also
// accept the older (address, length, handler).

export type { PayloadFormat } from "./boot/bzimage-payload.js";
export type { DecompressorKind } from "./boot/decompress.js";
export type { EntryMode, EntryRegName } from "./boot/entry.js";
export type {
  BootLayout,
  DecompressOptions,
  E820Entry,
  ElfOptions,
  EntryRegs,
  EntrySregs,
  EntryState,
  FlatOptions,
  ImageFormat,
  LinuxBootInfo,
  LinuxLayout,
  LinuxOptions,
  LoadedRange,
  LoadFormat,
  LoadImageOptions,
  LoadResult,
  MultibootModule,
  MultibootOptions,
  ReservedRange,
} from "./boot/index.js";
export { BootSetupError, GuestImageError } from "./boot/index.js";
export type { LinuxSetupHeader } from "./boot/linux-header.js";
export type { NodevmmPlugin, PluginContext } from "./cli/plugins.js";
export type { ApicBus, BusDelivery } from "./devices/apic-bus.js";
export type {
  AcpiPmOptions,
  AcpiPmState,
  AddressSpace,
  ApicMessage,
  ApicMessageSink,
  ApicTimerState,
  BlockImage,
  ByteOutput,
  Clock,
  CmosRtcOptions,
  CmosRtcState,
  CpuInterrupts,
  CpuSignalHandler,
  CpuSignalKind,
  DebugConsoleOptions,
  DebugExitOptions,
  DescriptorChain,
  Device,
  DeviceContext,
  DeviceRange,
  DmaMemory,
  E820Entry as FwCfgE820Entry,
  FwCfgBlob,
  FwCfgFileEntry,
  FwCfgOptions,
  FwCfgState,
  GuestRam,
  I8042Options,
  I8042State,
  I8254Options,
  I8254State,
  I8259Options,
  I8259State,
  IoApicOptions,
  IoApicState,
  Ipi,
  IpiShorthand,
  IrqLine,
  LocalApicMsrs,
  LocalApicOptions,
  LocalApicState,
  ModemLines,
  PcInterruptsOptions,
  PciHostOptions,
  PciHostState,
  PicChipState,
  PitChannelState,
  PostPortOptions,
  QueuedByte,
  QueueLayout,
  ResetControlOptions,
  SnapshottableDevice,
  StopRequest,
  SystemControlPortAOptions,
  TscDeadlineState,
  TscSource,
  Uart16550Options,
  Uart16550State,
  VirtioBlkOptions,
  VirtioConsoleOptions,
  VirtioConsoleSnapshot,
  VirtioDeviceSpec,
  VirtioMmioOptions,
  VirtioMmioSnapshot,
  VirtioQueueSnapshot,
  VirtioRngOptions,
  VirtqueueOptions,
} from "./devices/index.js";
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
  PciHost,
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
export type { LapicPage, LapicPageState } from "./devices/lapic-page.js";
export type { GdbServerHandle, GdbServerOptions } from "./gdb/index.js";
export type {
  BitName,
  CpuMode,
  DescriptorEntry,
  DescriptorMemory,
  DisassembledInstruction,
  DumpOptions,
  LevelName,
  PagingMode,
  PagingState,
  PhysicalReader,
  StatsRow,
  TraceInfo,
  Translation,
  WalkLevel,
} from "./inspect/index.js";
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
export type { AddonKickTarget, KickTarget, KoffiKickTarget } from "./kvm/binding-api.js";
export { KvmUnavailableError, type KvmUnavailableReason } from "./kvm/errors.js";
export type { SaveOptions, SaveResult, SnapshotInfo } from "./snapshot/index.js";
// the base of the errors that were RangeErrors (DeviceConfigError, GuestMemoryError, ...)
export { VmmRangeError } from "./types/errors.js";
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
export type { DescriptorTable, Regs, Segment, SpecialRegs } from "./types/regs.js";
export { emptyRegs, GPR_NAMES, segment } from "./types/regs.js";
export type {
  ApicMsrAccess,
  BackendKind,
  CpuSignal,
  InterruptController,
  IoeventSink,
  MachineBackend,
  VcpuBackend,
} from "./vmm/backend.js";
export type {
  BackendFactory,
  BackendFactoryOptions,
  BackendInfo,
  BackendRequest,
} from "./vmm/backend-select.js";
export { Bus, type BusClaim, type BusReader, type BusWriter, type UnhandledAccess } from "./vmm/bus.js";
export {
  IoBusApi,
  MmioBusApi,
  type MmioReadHandler,
  type MmioWriteHandler,
  type PortInHandler,
  type PortOutHandler,
} from "./vmm/bus-api.js";
export type { GuestClock } from "./vmm/clock.js";
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
export { type ExitKindStats, ExitStats } from "./vmm/stats.js";
export { Vcpu } from "./vmm/vcpu.js";
