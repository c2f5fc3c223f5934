// Snapshots of a stopped machine: save to a file, resume in a fresh machine. The file format is in
// format.ts (RAM in memory.ts, files on disk in file.ts); what a vCPU carries in vcpu-state.ts;
// devices are matched by name and ranges (devices.ts). Restore checks the file and matches every
// device before it writes anything; RAM read from a file is checked as it goes into place, and if
// that or any later write fails the machine is closed, so no half-restored machine runs.

import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { packageVersion } from "../cli/version.js";
import type { VcpuBackend } from "../vmm/backend.js";
import type { KvmMachineBackend } from "../vmm/backends/kvm.js";
import type { Machine, MachineOptions } from "../vmm/machine.js";
import { type ChainLink, walkChain } from "./chain.js";
import { applyDevices, captureDevices, type DeviceRecord, matchDevices } from "./devices.js";
import { SnapshotError } from "./errors.js";
import { type OpenedFile, openSnapshotFile, writeSnapshotFile } from "./file.js";
import {
  type Container,
  decodeContainer,
  encodeContainerPieces,
  idOfPieces,
  jsonBytes,
  jsonSection,
  type SectionEntry,
  type SnapshotBase,
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
import { drainWritten, keepPending, lineageOf, setLineage } from "./lineage.js";
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
  type PageRun,
  type RegionInfo,
  runViews,
} from "./memory.js";
import { decodeMemoryV1 } from "./memory-v1.js";
import { applyVcpu, captureVcpu, checkVcpuState, type VcpuState } from "./vcpu-state.js";
import { changedSince, type PageFlags, runsOf } from "./written.js";

export type { DeviceRecord } from "./devices.js";
export { SnapshotError, type SnapshotSection } from "./errors.js";
export {
  FORMAT_VERSION,
  INCREMENTAL_VERSION,
  MAGIC,
  READABLE_VERSIONS,
  type SnapshotBase,
  type SnapshotHeader,
} from "./format.js";
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

/**
 * What a restore's `setup` callback (MachineOptions.setup) is told of the snapshot it restores: enough
 * to rebuild the devices the saving program had. The rest of a snapshot (registers, device states, RAM)
 * goes back into the machine after `setup` returns.
 */
export interface SnapshotInfo {
  /** the file's id (its header's SHA-256, hex) */
  readonly id: string;
  /** the saved machine's guest RAM (MiB) and vCPU count, which the restored machine takes */
  readonly config: { readonly memoryMiB: number; readonly vcpus: number };
  /** free-form data of the program that saved it (`SaveOptions.app`; the CLI keeps its run options here) */
  readonly app?: unknown;
}

/** A snapshot read and checked in memory (readSnapshot(), decodeSnapshot()): every section decoded. */
export interface Snapshot extends SnapshotInfo {
  header: Container["header"];
  /** the file's id (its header's SHA-256, hex): what an incremental snapshot on it names */
  id: string;
  config: SnapshotConfig;
  vcpus: VcpuState[];
  devices: DeviceRecord[];
  memory: MemoryImage;
  /**
   * An incremental snapshot's bases' RAM, the full snapshot's first: `memory` goes on top of them.
   * Present when read with its chain (readSnapshot(), createMachine({ restore })).
   */
  bases?: MemoryImage[];
  /** free-form data of the program that saved it (the CLI keeps its run options here) */
  app?: unknown;
  /** KVM's in-kernel irqchip and PIT as the kernel gave them (snapshots made on KVM) */
  kvm?: KvmPlatformState;
}

/** Options of `vm.snapshot()` (and saveSnapshot()). */
export interface SaveOptions {
  /** JSON-able data stored with the snapshot and returned as `snapshot.app` */
  app?: unknown;
  /**
   * An incremental save: the path of the snapshot this machine last saved or was restored from.
   * Only the pages written since then are stored (on KVM, the pages of KVM's dirty log and those
   * the host wrote; on soft, the pages that differ from the base's), and the file names its base by
   * id and by its path relative to the new file, so `createMachine({ restore: path })` finds it.
   * Any other file (or a missing or corrupt one) is a SnapshotError("base") naming it. Without
   * `base` a save is full (every non-zero page), and any snapshot can be the next one's base.
   */
  base?: string;
}

/** What `vm.snapshot()` wrote. */
export interface SaveResult {
  /** The file written. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** 4 KiB pages stored: the non-zero ones, or (incremental) the ones written since the base */
  pages: number;
  /** the file's id (its header's SHA-256, hex): what an incremental snapshot on it names */
  id: string;
  /** an incremental save: its base's path, as given */
  base?: string;
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
function snapshotPieces(
  vm: Machine,
  opts: SaveOptions,
  pickRuns: () => { runs: PageRun[]; base?: SnapshotBase } = () => ({ runs: nonZeroRuns(vm.memory) }),
): { pieces: Uint8Array[]; pages: number } {
  checkStopped(vm);
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
  const { runs, base } = pickRuns();
  const sections: SectionEntry[] = [
    ["config", jsonBytes(config)],
    ["vcpus", jsonBytes(vcpus)],
    ["devices", jsonBytes(devices)],
  ];
  if (platform) sections.push(["kvm", jsonBytes(platform.state)]);
  if (opts.app !== undefined) sections.push(["app", jsonBytes(opts.app)]);
  // RAM last: a restore reads everything before it, then RAM straight into the machine (file.ts)
  sections.push(["memory-map", encodeMemoryMap(runs)], ["memory", runViews(vm.memory, runs), "crc32"]);
  const meta = { nodevmm: packageVersion(), backend: vm.backend.kind, createdAt: new Date().toISOString() };
  const pieces = encodeContainerPieces(base ? { ...meta, base } : meta, sections);
  return { pieces, pages: runs.reduce((n, r) => n + r.pages, 0) };
}

function checkStopped(vm: Machine): void {
  if (vm.running) {
    throw new SnapshotError(
      "machine",
      "the machine is running: stop it (or let run() return) before a snapshot",
    );
  }
}

/**
 * The stopped machine as the bytes of a full snapshot (`opts.base` is for files: vm.snapshot()).
 * SnapshotError("machine") while it runs.
 */
export function encodeSnapshot(vm: Machine, opts: SaveOptions = {}): { bytes: Buffer; pages: number } {
  if (opts.base !== undefined) {
    throw new SnapshotError(
      "base",
      "encodeSnapshot() makes full snapshots: save incremental ones with vm.snapshot(path, { base })",
    );
  }
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
  checkStopped(vm);
  // the base is checked before anything is drained or written
  const chain = opts.base === undefined ? undefined : openBaseChain(vm, path, opts.base);
  let drained: PageFlags | undefined;
  try {
    const { pieces, pages } = snapshotPieces(vm, opts, () => {
      drained = drainWritten(vm);
      if (!chain) return { runs: nonZeroRuns(vm.memory) };
      const top = chain.links[chain.links.length - 1]!;
      const base = { id: top.file.container.id, file: chain.relativePath };
      const written = drained ?? changedFromChain(vm, chain.links, opts.base!);
      return { runs: runsOf(written), base };
    });
    // written synchronously: RAM goes out of the machine's own memory, which must not change meanwhile
    const bytes = writeSnapshotFile(path, pieces);
    const id = idOfPieces(pieces);
    setLineage(vm, id, path);
    const out: SaveResult = { path, bytes, pages, id };
    if (opts.base !== undefined) out.base = opts.base;
    return out;
  } catch (e) {
    if (drained) keepPending(vm, drained);
    throw e;
  } finally {
    for (const l of chain?.links ?? []) l.file.close();
  }
}

/**
 * The chain of `base` for an incremental save to `path`: `base` must be the snapshot this machine
 * last saved or was restored from (same id), of the same RAM layout, and not `path` itself.
 */
function openBaseChain(
  vm: Machine,
  path: string,
  base: string,
): { links: ChainLink<OpenedFile>[]; relativePath: string } {
  if (typeof base !== "string" || base === "") {
    throw new SnapshotError("base", "base must be the path of a snapshot file");
  }
  const lineage = lineageOf(vm);
  if (!lineage) {
    throw new SnapshotError(
      "base",
      `${base}: this machine has saved no snapshot and was restored from none, so nothing can be its base: save a full snapshot first`,
    );
  }
  if (resolve(base) === resolve(path)) {
    throw new SnapshotError("base", `${base}: an incremental snapshot cannot replace its own base`);
  }
  const links = walkChain(
    base,
    (p) => {
      try {
        return openSnapshotFile(p);
      } catch (e) {
        if (p !== base) throw e;
        throw new SnapshotError("base", `${base}: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
    (f) => f.close(),
  );
  try {
    const top = links[links.length - 1]!;
    if (top.file.container.id !== lineage.id) {
      throw new SnapshotError(
        "base",
        `${base} is not the last snapshot this machine saved or was restored from (${lineage.path ?? "id"} ${lineage.id.slice(0, 16)}..., ${base} ${top.file.container.id.slice(0, 16)}...)`,
      );
    }
    const regions = describeRegions(vm.memory);
    for (const l of links) checkChainRegions(l, regions);
    return { links, relativePath: relative(dirname(resolve(path)), resolve(base)) };
  } catch (e) {
    for (const l of links) l.file.close();
    throw e;
  }
}

/** a file of a chain must have the RAM layout of the machine (or of the chain's newest file) */
function checkChainRegions(link: ChainLink<{ container: Container }>, regions: readonly RegionInfo[]): void {
  const cfg = checkConfig(jsonSection(link.file.container, "config"));
  const same =
    cfg.regions.length === regions.length &&
    cfg.regions.every((r, i) => r.gpa === regions[i]!.gpa && r.size === regions[i]!.size);
  if (!same) throw new SnapshotError("base", `${link.path}: its RAM layout is not this machine's`);
}

/** the pages of RAM that differ from the chain's image; a base whose RAM is corrupt is named */
function changedFromChain(vm: Machine, links: readonly ChainLink<OpenedFile>[], base: string): PageFlags {
  try {
    return changedSince(vm.memory, chainImages(links));
  } catch (e) {
    if (!(e instanceof SnapshotError) || e.section === "base") throw e;
    const which = links.length > 1 ? `${base} or one of its bases` : base;
    throw new SnapshotError("base", `${which}: ${e.message}`);
  }
}

/** each file's RAM image, oldest first (RAM still in the files is read as it is used) */
function chainImages(links: readonly ChainLink<OpenedFile>[]): MemoryImage[] {
  return links.map((l) => {
    const cfg = checkConfig(jsonSection(l.file.container, "config"));
    return memoryOf(l.file.container, cfg.regions, l.file.memory);
  });
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
  const snap: Snapshot = {
    header: c.header,
    id: c.id,
    config,
    vcpus,
    devices: devices as DeviceRecord[],
    memory,
  };
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

/**
 * Reads and checks a whole snapshot file, RAM included, into memory; an incremental one with its
 * chain of bases (`path` a list: those files, the full snapshot first), as `snapshot.bases`.
 */
export async function readSnapshot(path: string | readonly string[]): Promise<Snapshot> {
  const links = walkChain(path, (p) => {
    let file: Buffer;
    try {
      file = readFileSync(p);
    } catch (e) {
      throw new SnapshotError("file", `cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    return { container: decodeContainer(file) };
  });
  return withBases(links);
}

/**
 * The snapshot of a chain's newest file, with the older files' RAM as its bases; each file's RAM
 * left in it (`memory` of an opened file) is read when restored.
 */
function withBases(
  links: readonly ChainLink<{ container: Container; memory?: OpenedFile["memory"] }>[],
): Snapshot {
  const top = links[links.length - 1]!;
  const snap = fromContainer(top.file.container, top.file.memory);
  if (links.length > 1) {
    for (const l of links) checkChainRegions(l, snap.config.regions);
    snap.bases = links.slice(0, -1).map((l) => {
      const image = memoryOf(l.file.container, snap.config.regions, l.file.memory);
      if (image.file) image.file = namingBase(image.file, l.path);
      return image;
    });
  }
  return snap;
}

/** a base's RAM still in its file: a failure reading or checking it names that file */
function namingBase(source: MemoryInFile, path: string): MemoryInFile {
  const named = (e: unknown) =>
    e instanceof SnapshotError ? new SnapshotError("base", `${path}: ${e.message}`) : e;
  return {
    checkOpen: () => source.checkOpen(),
    readInto: (place) => {
      try {
        source.readInto(place);
      } catch (e) {
        throw named(e);
      }
    },
  };
}

/**
 * Puts a snapshot on a machine that has not run yet and has the snapshot's devices attached (same
 * names and ranges). Checks come first (RAM layout, vCPU count, devices): a SnapshotError from them
 * leaves the machine as it was. A failure while writing closes the machine; so does RAM that is
 * still in the file (createMachine({ restore: path }) leaves it there) and turns out corrupt.
 */
export function restoreSnapshot(vm: Machine, snap: Snapshot): RestoreResult {
  if (vm.running) throw new SnapshotError("machine", "the machine is running");
  if (snap.header.base && !snap.bases?.length) {
    throw new SnapshotError(
      "base",
      `an incremental snapshot (on ${snap.header.base.file}): read it with readSnapshot(path) or restore it with createMachine({ restore: path }), so that its base comes along`,
    );
  }
  snap.memory.file?.checkOpen();
  for (const b of snap.bases ?? []) b.file?.checkOpen();
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
    // a chain: the full snapshot's RAM, then each incremental one's pages over it, in order
    const layers = [...(snap.bases ?? []), snap.memory];
    layers.forEach((image, i) => {
      applyMemory(vm.memory, image, i === 0);
    });
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
    setLineage(vm, snap.id);
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

export interface RestoreOptions extends Omit<MachineOptions, "restore" | "setup"> {
  /**
   * a snapshot file (an incremental one brings its chain of bases, found where it names them), the
   * chain as a list (the full snapshot first), or one already read with readSnapshot()
   */
  restore: string | readonly string[] | Snapshot;
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
  // from files, RAM is read when the machine is there to take it (file.ts); the rest is checked now
  const paths = typeof opts.restore === "string" || Array.isArray(opts.restore) ? opts.restore : undefined;
  const links = paths ? walkChain(paths, openSnapshotFile, (f) => f.close()) : [];
  try {
    const snap = paths ? withBases(links) : (opts.restore as Snapshot);
    const { restore: _r, setup, onNotes, ...rest } = opts;
    const vm = await create({ ...rest, memoryMiB: snap.config.memoryMiB, vcpus: snap.config.vcpus });
    try {
      await setup?.(vm, snap);
      const { notes } = restoreSnapshot(vm, snap);
      if (opts.strict !== undefined) vm.strict = opts.strict;
      if (links.length > 0) setLineage(vm, snap.id, links[links.length - 1]!.path);
      onNotes?.(notes);
      return vm;
    } catch (e) {
      vm.close();
      throw e;
    }
  } finally {
    for (const l of links) l.file.close();
  }
}
