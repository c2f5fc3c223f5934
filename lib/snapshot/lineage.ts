// What a machine remembers of its snapshots: the id of the last one it saved or was restored from
// (the only base an incremental save may name), and on KVM the tracking of what was written since.
// Kept beside the machine (a WeakMap), not in it: a machine that never snapshots pays nothing.
//
// Tracking on KVM starts at the first snapshot saved or restored (KVM_MEM_LOG_DIRTY_PAGES on every
// RAM slot, and GuestMemory's record of the pages the host handed out). Each save drains both; a
// save that then fails keeps what it drained as pending, so the next one still has those pages.

import type { Machine } from "../vmm/machine.js";
import { noPages, orBitmaps, orPages, type PageFlags } from "./written.js";

interface Lineage {
  /** the id (header SHA-256) of the last snapshot this machine saved or was restored from */
  id: string;
  /** its path, when known (for messages) */
  path?: string;
  /** written pages that a failed save drained from the logs */
  pending?: PageFlags;
}

const lineages = new WeakMap<Machine, Lineage>();

export function lineageOf(vm: Machine): Lineage | undefined {
  return lineages.get(vm);
}

/**
 * The machine's RAM now is snapshot `id`: remember it as the next base, and (KVM) have writes
 * tracked from here on. A log that KVM refuses leaves incremental saves comparing RAM instead.
 */
export function setLineage(vm: Machine, id: string, path?: string): void {
  lineages.set(vm, path === undefined ? { id } : { id, path });
  const backend = vm.backend;
  if (!backend.startDirtyLog) return;
  try {
    backend.startDirtyLog();
    vm.memory.trackHostWrites();
  } catch {
    // no log: written() answers undefined and the save compares with the base's files
  }
}

/**
 * On KVM with tracking running: the pages written since the last snapshot (pending ones, KVM's log,
 * the host's), the logs drained. Undefined where nothing tracks (the save compares RAM instead).
 * Only on a stopped machine whose vCPUs are settled.
 */
export function drainWritten(vm: Machine): PageFlags | undefined {
  const backend = vm.backend;
  const lineage = lineages.get(vm);
  if (!backend.dirtyLogging || !backend.takeDirtyLog || !lineage) return undefined;
  const pages = orPages(noPages(vm.memory), lineage.pending);
  orBitmaps(pages, backend.takeDirtyLog());
  orPages(pages, vm.memory.takeHostWrites());
  lineage.pending = undefined;
  return pages;
}

/** A save failed after drainWritten(): its pages stay owed to the next save. */
export function keepPending(vm: Machine, pages: PageFlags): void {
  const lineage = lineages.get(vm);
  if (lineage) lineage.pending = orPages(lineage.pending ?? noPages(vm.memory), pages);
}
