// Snapshots of a stopped machine: save to a file, resume in a fresh machine. The file format is in
// format.ts (RAM in memory.ts, files on disk in file.ts); what a vCPU carries in vcpu-state.ts;
// devices are matched by name and ranges (devices.ts). Restore checks the file and matches every
// device before it writes anything; RAM read from a file is checked as it goes into place, and if
// that or any later write fails the machine is closed, so no half-restored machine runs.

import { readFile } from "node:fs/promises";
import { packageVersion } from "../cli/version.js";
import type { VcpuBackend } from "../vmm/backend.js";
import type { KvmMachineBackend } from "../vmm/backends/kvm.js";
import type { Machine, MachineOptions } from "../vmm/machine.js";
import { applyDevices, captureDevices, type DeviceRecord, matchDevices } from "./devices.js";
import { SnapshotError } from "./errors.js";
import { openSnapshotFile, writeSnapshotFile } from "./file.js";
import {
  type Container,
  decodeContainer,
  encodeContainerPieces,
  jsonBytes,
  jsonSection,
  type SectionEntry,
} from "./format.js";
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
  decodeMemoryMap,
  describeRegions,
  encodeMemoryMap,
  imageFromBytes,
  type MemoryImage,
  type MemoryInFile,
  nonZeroRuns,
  PAGE,
  type RegionInfo,
  runViews,
} from "./memory.js";
import { decodeMemoryV1 } from "./memory-v1.js";
import { applyVcpu, captureVcpu, checkVcpuState, type VcpuState } from "./vcpu-state.js";

export type { DeviceRecord } from "./devices.js";
export { SnapshotError, type SnapshotSection } from "./errors.js";
export { FORMAT_VERSION, MAGIC, READABLE_VERSIONS, type SnapshotHeader } from "./format.js";
export type { MemoryImage, PageRun } from "./memory.js";
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

/**
 * The stopped machine as the pieces of a snapshot file, in order; RAM's are views of guest memory,
 * valid until the machine runs again. SnapshotError("machine") while it runs.
 */
function snapshotPieces(vm: Machine, opts: SaveOptions): { pieces: Uint8Array[]; pages: number } {
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
  const runs = nonZeroRuns(vm.memory);
  const sections: SectionEntry[] = [
    ["config", jsonBytes(config)],
    ["vcpus", jsonBytes(vcpus)],
    ["devices", jsonBytes(devices)],
  ];
  if (platform) sections.push(["kvm", jsonBytes(platform.state)]);
  if (opts.app !== undefined) sections.push(["app", jsonBytes(opts.app)]);
  // RAM last: a restore reads everything before it, then RAM straight into the machine (file.ts)
  sections.push(["memory-map", encodeMemoryMap(runs)], ["memory", runViews(vm.memory, runs), "crc32"]);
  const pieces = encodeContainerPieces(
    { nodevmm: packageVersion(), backend: vm.backend.kind, createdAt: new Date().toISOString() },
    sections,
  );
  return { pieces, pages: runs.reduce((n, r) => n + r.pages, 0) };
}

/** The stopped machine as snapshot bytes. SnapshotError("machine") while it runs. */
export function encodeSnapshot(vm: Machine, opts: SaveOptions = {}): { bytes: Buffer; pages: number } {
  const { pieces, pages } = snapshotPieces(vm, opts);
  return { bytes: Buffer.concat(pieces), pages };
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
  const { pieces, pages } = snapshotPieces(vm, opts);
  // written synchronously: RAM goes out of the machine's own memory, which must not change meanwhile
  const bytes = writeSnapshotFile(path, pieces);
  return { path, bytes, pages };
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
  return fromContainer(decodeContainer(file));
}

/** The snapshot a container holds; RAM from `file` when the container leaves it there. */
function fromContainer(c: Container, file?: { length: number; source: MemoryInFile }): Snapshot {
  const config = checkConfig(jsonSection(c, "config"));
  const vcpusRaw = jsonSection(c, "vcpus");
  if (!Array.isArray(vcpusRaw) || vcpusRaw.length !== config.vcpus) {
    throw new SnapshotError("vcpus", `want ${config.vcpus} vCPU records`);
  }
  const vcpus = vcpusRaw.map((v, i) => checkVcpuState(v, i));
  const devices = jsonSection(c, "devices");
  if (!Array.isArray(devices)) throw new SnapshotError("devices", "the device list is malformed");
  const memory = memoryOf(c, config.regions, file);
  const snap: Snapshot = { header: c.header, config, vcpus, devices: devices as DeviceRecord[], memory };
  if (c.sections.has("app")) snap.app = jsonSection(c, "app" as never);
  if (c.sections.has("kvm")) snap.kvm = checkKvmPlatform(jsonSection(c, "kvm"));
  return snap;
}

function memoryOf(
  c: Container,
  regions: readonly RegionInfo[],
  file?: { length: number; source: MemoryInFile },
): MemoryImage {
  const data = c.sections.get("memory");
  const length = file?.length ?? data?.length;
  if (length === undefined) throw new SnapshotError("memory", "section missing");
  if (c.version === 1) return decodeMemoryV1(data ?? new Uint8Array(0), regions);
  const map = c.sections.get("memory-map");
  if (!map) throw new SnapshotError("memory-map", "section missing");
  const runs = decodeMemoryMap(map, regions, length);
  if (file) return { runs, pages: length / PAGE, file: file.source };
  return imageFromBytes(runs, data!);
}

/** Reads and checks a whole snapshot file, RAM included, into memory. */
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
 * leaves the machine as it was. A failure while writing closes the machine; so does RAM that is
 * still in the file (createMachine({ restore: path }) leaves it there) and turns out corrupt.
 */
export function restoreSnapshot(vm: Machine, snap: Snapshot): RestoreResult {
  if (vm.running) throw new SnapshotError("machine", "the machine is running");
  snap.memory.file?.checkOpen();
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
  // from a file, RAM is read when the machine is there to take it (file.ts); the rest is checked now
  const file = typeof opts.restore === "string" ? openSnapshotFile(opts.restore) : undefined;
  try {
    const snap = file ? fromContainer(file.container, file.memory) : (opts.restore as Snapshot);
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
  } finally {
    file?.close();
  }
}
