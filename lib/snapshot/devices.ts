// Device state in a snapshot: each attached device's name, ranges and its snapshot() data. On
// restore every saved device must find one on the new machine with the same name and ranges
// (else a SnapshotError naming it); all are matched before any restore() runs.

import type { Device, DeviceRange, SnapshottableDevice } from "../devices/device.js";
import { SnapshotError } from "./errors.js";

export interface DeviceRecord {
  name: string;
  ranges: DeviceRange[];
  /** null: the device keeps no state of its own, or has no snapshot() yet */
  state: unknown;
  snapshottable: boolean;
  /**
   * a device KVM keeps in the kernel (8259s, I/O APIC, LAPIC, PIT), written from a KVM machine in
   * the soft device's form: a soft machine that lacks it skips it instead of refusing the snapshot
   */
  platform?: boolean;
}

const isSnapshottable = (d: Device): d is SnapshottableDevice =>
  typeof (d as Partial<SnapshottableDevice>).snapshot === "function" &&
  typeof (d as Partial<SnapshottableDevice>).restore === "function";

const rangeText = (ranges: readonly DeviceRange[]): string =>
  ranges.map((r) => `${r.space} 0x${r.base.toString(16)}+${r.length}`).join(", ") || "no ranges";

export const describeDevice = (d: { name: string; ranges: readonly DeviceRange[] }): string =>
  `${d.name} (${rangeText(d.ranges)})`;

export function captureDevices(devices: readonly Device[]): DeviceRecord[] {
  return devices.map((d) => ({
    name: d.name,
    ranges: d.ranges.map((r) => ({ space: r.space, base: r.base, length: r.length })),
    state: isSnapshottable(d) ? d.snapshot() : null,
    snapshottable: isSnapshottable(d),
  }));
}

const sameRanges = (a: readonly DeviceRange[], b: readonly DeviceRange[]): boolean =>
  a.length === b.length &&
  a.every((r, i) => r.space === b[i]!.space && r.base === b[i]!.base && r.length === b[i]!.length);

/** Pairs each saved record with a device of the machine; throws naming the first without one. */
export function matchDevices(records: unknown, devices: readonly Device[]): [DeviceRecord, Device][] {
  if (!Array.isArray(records)) throw new SnapshotError("devices", "the device list is malformed");
  const free = [...devices];
  return records.map((rec: DeviceRecord, i) => {
    if (!rec || typeof rec.name !== "string" || !Array.isArray(rec.ranges)) {
      throw new SnapshotError("devices", `record ${i} is malformed`);
    }
    const at = free.findIndex((d) => d.name === rec.name && sameRanges(d.ranges, rec.ranges));
    if (at < 0) {
      throw new SnapshotError(
        "devices",
        `the snapshot has ${describeDevice(rec)}, which this machine lacks (add it before restoring)`,
      );
    }
    const device = free.splice(at, 1)[0]!;
    if (rec.snapshottable && !isSnapshottable(device)) {
      throw new SnapshotError("devices", `${describeDevice(rec)} on this machine cannot restore state`);
    }
    return [rec, device];
  });
}

export function applyDevices(pairs: readonly [DeviceRecord, Device][]): void {
  for (const [rec, device] of pairs) {
    if (!rec.snapshottable || !isSnapshottable(device)) continue;
    try {
      device.restore(rec.state);
    } catch (e) {
      throw new SnapshotError(
        "devices",
        `${describeDevice(rec)}: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }
}
