// nodevmm's public API: createMachine and the Machine, the exit/register types both backends share,
// the devices, the loaders' errors, and the inspection helpers.

export type { BootLayout, EntryState, LoadResult } from "./boot/index.js";
export { BootSetupError, GuestImageError } from "./boot/index.js";
export type { NodevmmPlugin, PluginContext } from "./cli/plugins.js";
export * from "./devices/index.js";
export * from "./inspect/index.js";
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
export { IoBusApi, MmioBusApi } from "./vmm/bus-api.js";
export {
  BackendUnavailableError,
  BusConflictError,
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
export { createMachine, Machine, type MachineOptions } from "./vmm/machine.js";
export { GuestMemory, GuestMemoryError, type MemoryRegion } from "./vmm/memory.js";
export { addPcDevices, type PcDeviceOptions, type PcDevices } from "./vmm/pc.js";
export { ExitStats } from "./vmm/stats.js";
export { Vcpu } from "./vmm/vcpu.js";
