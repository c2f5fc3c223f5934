// Snapshots of a stopped machine: save to a file, resume in a fresh machine. The file format is in
// format.ts; what a vCPU carries in vcpu-state.ts; devices are matched by name and ranges
// (devices.ts). Restore validates the whole file and matches every device before it writes
// anything; if writing then fails the machine is closed, so no half-restored machine runs.

import { readFile, writeFile } from "node:fs/promises";
import { packageVersion } from "../cli/version.js";
import type { VcpuBackend } from "../vmm/backend.js";
import type { KvmMachineBackend } from "../vmm/backends/kvm.js";
import type { Machine, MachineOptions } from "../vmm/machine.js";
import { applyDevices, captureDevices, type DeviceRecord, matchDevices } from "./devices.js";
import { SnapshotError } from "./errors.js";
import { type Container, decodeContainer, encodeContainer, jsonBytes, jsonSection } from "./format.js";
import {
  applyKvmPlatform,
  applySoftPlatformOnKvm,
  captureKvmPlatform,
  checkKvmPlatform,
  type KvmPlatformState,
  PLATFORM_DEVICES,
} from "./kvm-platform.js";
import { kvmVcpuOf, settleKvm } from "./kvm-vcpu.js";
import {
  applyMemory,
  checkRegions,
  decodeMemory,
  describeRegions,
  encodeMemory,
  type MemoryImage,
  type RegionInfo,
} from "./memory.js";
import { applyVcpu, captureVcpu, checkVcpuState, type VcpuState } from "./vcpu-state.js";

export type { DeviceRecord } from "./devices.js";
export { SnapshotError, type SnapshotSection } from "./errors.js";
export { FORMAT_VERSION, MAGIC, type SnapshotHeader } from "./format.js";
export type { VcpuState } from "./vcpu-state.js";

export interface SnapshotConfig {
  memoryMiB: number;
  vcpus: number;
  regions: RegionInfo[];
  /** the machine clock (guest time, ns) when saved: timers and the TSC continue from it */
  clockNs: number;
  strict: boolean;
}

export interface Snapshot {
  header: Container["header"];
  config: SnapshotConfig;
  vcpus: VcpuState[];
  devices: DeviceRecord[];
  memory: MemoryImage;
  /** free-form data of the program that saved it (the CLI keeps its run options here) */
  app?: unknown;
  /** KVM's in-kernel irqchip and PIT as the kernel gave them (snapshots made on KVM) */
  kvm?: KvmPlatformState;
}

/** Options of `vm.snapshot()` (and saveSnapshot()). */
export interface SaveOptions {
  /** JSON-able data stored with the snapshot and returned as `snapshot.app` */
  app?: unknown;
}

/** What `vm.snapshot()` wrote. */
export interface SaveResult {
  /** The file written. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** non-zero 4 KiB pages stored */
  pages: number;
}

export interface RestoreResult {
  /** what the target machine could not take (cross-backend differences, halted vCPUs) */
  notes: string[];
}

/**
 * The soft vCPU finishes an instruction it exited for (an IN's data, a hypercall's return) at its
 * next entry. An entry with an instruction budget of 0 does that and returns before any guest
 * instruction runs (it is the first step of the run that would come next), so the saved registers
 * are those the guest would see.
 */
function settle(vm: Machine): void {
  if (vm.backend.kind === "kvm") {
    for (let i = 0; i < vm.vcpuCount; i++) {
      const v = kvmVcpuOf(vm.vcpu(i).backend);
      if (v) settleKvm(v);
    }
    return;
  }
  if (vm.backend.kind !== "soft") return;
  for (let i = 0; i < vm.vcpuCount; i++) {
    const b = vm.vcpu(i).backend;
    b.setInstructionBudget?.(0);
    try {
      b.run();
    } finally {
      b.setInstructionBudget?.(undefined);
    }
  }
  // an MMIO instruction this host completed re-executes with the values given at the next entry:
  // run it to its end, which the machine would do first anyway
  for (let step = 0; step < 4 && halfDoneMmio(vm.vcpu(0).backend); step++) vm.runSync({ maxInstructions: 1 });
  if (halfDoneMmio(vm.vcpu(0).backend)) {
    throw new SnapshotError("vcpus", "vCPU 0 is in the middle of an MMIO instruction that does not complete");
  }
}

/** the soft vCPU (in its thread, when it runs in one) is in the middle of an MMIO instruction */
function halfDoneMmio(b: VcpuBackend): boolean {
  return (b as { mmioInFlight?(): boolean }).mmioInFlight?.() === true;
}

/** The stopped machine as snapshot bytes. SnapshotError("machine") while it runs. */
export function encodeSnapshot(vm: Machine, opts: SaveOptions = {}): { bytes: Buffer; pages: number } {
  if (vm.running) {
    throw new SnapshotError(
      "machine",
      "the machine is running: stop it (or let run() return) before a snapshot",
    );
  }
  settle(vm);
  const regions = describeRegions(vm.memory);
  const config: SnapshotConfig = {
    memoryMiB: regions.reduce((n, r) => n + r.size, 0) / (1024 * 1024),
    vcpus: vm.vcpuCount,
    regions,
    clockNs: vm.clock.nowNs(),
    strict: vm.strict,
  };
  const vcpus = Array.from({ length: vm.vcpuCount }, (_, i) => captureVcpu(vm.vcpu(i)));
  const devices = captureDevices(vm.devices);
  const platform = kvmPlatformOf(vm, config.clockNs);
  if (platform) devices.push(...platform.records);
  const memory = encodeMemory(vm.memory);
  const sections: [string, Uint8Array][] = [
    ["config", jsonBytes(config)],
    ["vcpus", jsonBytes(vcpus)],
    ["devices", jsonBytes(devices)],
    ["memory", memory.bytes],
  ];
  if (platform) sections.push(["kvm", jsonBytes(platform.state)]);
  if (opts.app !== undefined) sections.push(["app", jsonBytes(opts.app)]);
  const bytes = encodeContainer(
    { nodevmm: packageVersion(), backend: vm.backend.kind, createdAt: new Date().toISOString() },
    sections,
  );
  return { bytes, pages: memory.pages };
}

function kvmVcpus(vm: Machine) {
  return Array.from({ length: vm.vcpuCount }, (_, i) => kvmVcpuOf(vm.vcpu(i).backend)!);
}

function kvmPlatformOf(vm: Machine, clockNs: number) {
  if (vm.backend.kind !== "kvm") return undefined;
  const kvmVm = (vm.backend as KvmMachineBackend).vm;
  return captureKvmPlatform(kvmVm, kvmVcpus(vm), clockNs);
}

export async function saveSnapshot(vm: Machine, path: string, opts: SaveOptions = {}): Promise<SaveResult> {
  const { bytes, pages } = encodeSnapshot(vm, opts);
  try {
    await writeFile(path, bytes);
  } catch (e) {
    throw new SnapshotError(
      "file",
      `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  return { path, bytes: bytes.length, pages };
}

function checkConfig(c: unknown): SnapshotConfig {
  const cfg = c as SnapshotConfig;
  if (
    !cfg ||
    !Number.isInteger(cfg.vcpus) ||
    cfg.vcpus < 1 ||
    !Number.isFinite(cfg.memoryMiB) ||
    !Array.isArray(cfg.regions) ||
    cfg.regions.some((r) => !Number.isSafeInteger(r?.gpa) || !Number.isSafeInteger(r?.size)) ||
    !Number.isFinite(cfg.clockNs)
  ) {
    throw new SnapshotError("config", "memory size, vCPU count, RAM regions or clock missing or malformed");
  }
  return cfg;
}

/** Parses and checks a whole snapshot (every section) without touching any machine. */
export function decodeSnapshot(file: Uint8Array): Snapshot {
  const c = decodeContainer(file);
  const config = checkConfig(jsonSection(c, "config"));
  const vcpusRaw = jsonSection(c, "vcpus");
  if (!Array.isArray(vcpusRaw) || vcpusRaw.length !== config.vcpus) {
    throw new SnapshotError("vcpus", `want ${config.vcpus} vCPU records`);
  }
  const vcpus = vcpusRaw.map((v, i) => checkVcpuState(v, i));
  const devices = jsonSection(c, "devices");
  if (!Array.isArray(devices)) throw new SnapshotError("devices", "the device list is malformed");
  const memoryBytes = c.sections.get("memory");
  if (!memoryBytes) throw new SnapshotError("memory", "section missing");
  const memory = decodeMemory(memoryBytes, config.regions);
  const snap: Snapshot = { header: c.header, config, vcpus, devices: devices as DeviceRecord[], memory };
  if (c.sections.has("app")) snap.app = jsonSection(c, "app" as never);
  if (c.sections.has("kvm")) snap.kvm = checkKvmPlatform(jsonSection(c, "kvm"));
  return snap;
}

export async function readSnapshot(path: string): Promise<Snapshot> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (e) {
    throw new SnapshotError("file", `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return decodeSnapshot(file);
}

/**
 * Puts a snapshot on a machine that has not run yet and has the snapshot's devices attached (same
 * names and ranges). Checks come first (RAM layout, vCPU count, devices): a SnapshotError from them
 * leaves the machine as it was. A failure while writing closes the machine.
 */
export function restoreSnapshot(vm: Machine, snap: Snapshot): RestoreResult {
  if (vm.running) throw new SnapshotError("machine", "the machine is running");
  checkRegions(vm.memory, snap.config.regions);
  if (vm.vcpuCount !== snap.config.vcpus) {
    throw new SnapshotError(
      "vcpus",
      `the snapshot has ${snap.config.vcpus} vCPUs, this machine ${vm.vcpuCount}`,
    );
  }
  const notes: string[] = [];
  const { own, platform } = splitPlatform(vm, snap.devices, notes);
  const pairs = matchDevices(own, vm.devices);
  if (snap.header.backend !== vm.backend.kind) {
    notes.push(
      `saved on ${snap.header.backend}, restored on ${vm.backend.kind}: the guest sees this backend's CPUID, and MSRs it refuses are listed here`,
    );
  }
  try {
    applyMemory(vm.memory, snap.memory);
    // code the soft vCPUs compiled from the old contents is stale now (each keeps its own)
    for (let i = 0; i < vm.vcpuCount; i++) {
      const b = vm.vcpu(i).backend as { invalidateCode?(gpa: number, length: number): void };
      for (const r of vm.memory.regions) b.invalidateCode?.(r.guestPhysAddr, r.size);
    }
    vm.clock.advanceTo(snap.config.clockNs);
    snap.vcpus.forEach((s, i) => {
      applyVcpu(vm.vcpu(i), s, notes);
    });
    if (vm.backend.kind === "kvm") {
      const kvmVm = (vm.backend as KvmMachineBackend).vm;
      try {
        if (snap.kvm && snap.header.backend === "kvm") applyKvmPlatform(kvmVm, snap.kvm, notes);
        else applySoftPlatformOnKvm(kvmVm, kvmVcpus(vm), platform, notes);
      } catch (e) {
        if (e instanceof SnapshotError) throw e;
        throw new SnapshotError(
          "kvm",
          `in-kernel irqchip/PIT: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    }
    applyDevices(pairs);
    vm.strict = snap.config.strict;
  } catch (e) {
    vm.close();
    throw e;
  }
  return { notes };
}

/**
 * The records this machine restores as devices, and those of the interrupt controllers and PIT
 * that it keeps elsewhere: on KVM in the kernel; on soft, a KVM snapshot's PIT when the machine
 * has no i8254 attached (skipped, with a note).
 */
function splitPlatform(
  vm: Machine,
  records: readonly DeviceRecord[],
  notes: string[],
): { own: DeviceRecord[]; platform: DeviceRecord[] } {
  const own: DeviceRecord[] = [];
  const platform: DeviceRecord[] = [];
  for (const r of records) {
    const isPlatform = r && typeof r.name === "string" && PLATFORM_DEVICES.includes(r.name);
    const present = vm.devices.some((d) => d.name === r?.name);
    if (isPlatform && vm.backend.kind === "kvm" && !present) platform.push(r);
    else if (isPlatform && r.platform && !present)
      notes.push(`${r.name}: not on this machine, its state is dropped`);
    else own.push(r);
  }
  return { own, platform };
}

export interface RestoreOptions extends MachineOptions {
  /** a snapshot file, or one already read with readSnapshot() */
  restore: string | Snapshot;
  /**
   * Attaches the devices the snapshot has (e.g. addPcDevices) before the state goes back; the
   * machine's own platform devices are there already.
   */
  setup?: (vm: Machine, snap: Snapshot) => void | Promise<void>;
  /** receives what the restore could not carry over (see RestoreResult.notes) */
  onNotes?: (notes: string[]) => void;
}

/** createMachine({ restore }): a machine of the snapshot's size, set up, then restored. */
export async function createRestoredMachine(
  opts: RestoreOptions,
  create: (o: MachineOptions) => Promise<Machine>,
): Promise<Machine> {
  const snap = typeof opts.restore === "string" ? await readSnapshot(opts.restore) : opts.restore;
  const { restore: _r, setup, onNotes, ...rest } = opts;
  const vm = await create({ ...rest, memoryMiB: snap.config.memoryMiB, vcpus: snap.config.vcpus });
  try {
    await setup?.(vm, snap);
    const { notes } = restoreSnapshot(vm, snap);
    if (opts.strict !== undefined) vm.strict = opts.strict;
    onNotes?.(notes);
    return vm;
  } catch (e) {
    vm.close();
    throw e;
  }
}
