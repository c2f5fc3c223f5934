// The interrupt controllers and the PIT across backends. On the soft backend they are devices
// (i8259 pair, I/O APIC, local APIC page, i8254) whose state() goes in the device list; on KVM they
// live in the kernel (KVM_GET/SET_IRQCHIP, KVM_GET/SET_PIT2, KVM_GET/SET_LAPIC per vCPU). A KVM
// snapshot keeps the kernel's structs as they are (the "kvm" section, what a KVM resume puts back)
// and also writes them as the soft devices' records, so the soft backend restores them as its own.
// A soft snapshot resumed on KVM goes the other way: the records of devices the KVM machine lacks
// become the kernel's structs. The field mapping is 1:1 for the 8259s (both follow the same
// reference model), the I/O APIC's redirection table and the LAPIC's registers. Time is where they
// differ: KVM_SET_PIT2 and KVM_SET_LAPIC restart a running PIT count or APIC timer from its full
// initial count (QEMU's KVM resume does the same), while the soft devices count from the moment
// the saved count was loaded, translated from host time to guest time.

import { I8254, type I8254State, type PitChannelState } from "../devices/i8254.js";
import type { I8259State } from "../devices/i8259.js";
import type { PicChipState } from "../devices/i8259-chip.js";
import type { IoApicState } from "../devices/ioapic.js";
import type { LocalApicState } from "../devices/lapic.js";
import { PcInterrupts } from "../devices/pc-interrupts.js";
import { KVM_CAP, KVM_IRQCHIP_ID, type KvmVcpu, type KvmVm, LAYOUTS } from "../kvm/index.js";
import type { DeviceRecord } from "./devices.js";
import { SnapshotError } from "./errors.js";

/** the soft machine's platform devices, by name: what KVM keeps in the kernel */
export const PLATFORM_DEVICES: readonly string[] = ["i8259", "ioapic", "lapic", "i8254"];

export interface KvmPlatformState {
  /** kvm_irqchip unions (512 bytes each), base64: master 8259, slave 8259, I/O APIC */
  picMaster: string;
  picSlave: string;
  ioapic: string;
  /** kvm_pit_state2, base64 */
  pit?: string;
  /** host CLOCK_MONOTONIC (KVM's ktime) when saved: count_load_time is relative to it */
  hostNs: bigint;
}

const b64 = (a: Uint8Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));

// ---- 8259

const P = LAYOUTS.kvm_pic_state.fields;

export function picFromKvm(b: Uint8Array): PicChipState {
  return {
    lastIrr: b[P.last_irr]!,
    irr: b[P.irr]!,
    imr: b[P.imr]!,
    isr: b[P.isr]!,
    priorityAdd: b[P.priority_add]!,
    irqBase: b[P.irq_base]!,
    readRegSelect: b[P.read_reg_select]!,
    poll: b[P.poll] !== 0,
    specialMask: b[P.special_mask] !== 0,
    initState: b[P.init_state]!,
    autoEoi: b[P.auto_eoi] !== 0,
    rotateOnAutoEoi: b[P.rotate_on_auto_eoi] !== 0,
    specialFullyNested: b[P.special_fully_nested_mode] !== 0,
    init4: b[P.init4] !== 0,
    singleMode: false,
    levelTriggeredAll: false,
    elcr: b[P.elcr]!,
  };
}

/** `base` is the kernel's current chip (keeps elcr_mask, which the soft 8259 has not) */
export function picToKvm(s: PicChipState, base: Uint8Array): Uint8Array {
  const b = base.slice();
  const n = (v: number | boolean) => (typeof v === "boolean" ? (v ? 1 : 0) : v & 0xff);
  b[P.last_irr] = n(s.lastIrr);
  b[P.irr] = n(s.irr);
  b[P.imr] = n(s.imr);
  b[P.isr] = n(s.isr);
  b[P.priority_add] = n(s.priorityAdd);
  b[P.irq_base] = n(s.irqBase);
  b[P.read_reg_select] = n(s.readRegSelect);
  b[P.poll] = n(s.poll);
  b[P.special_mask] = n(s.specialMask);
  b[P.init_state] = n(s.initState);
  b[P.auto_eoi] = n(s.autoEoi);
  b[P.rotate_on_auto_eoi] = n(s.rotateOnAutoEoi);
  b[P.special_fully_nested_mode] = n(s.specialFullyNested);
  b[P.init4] = n(s.init4);
  b[P.elcr] = n(s.elcr);
  return b;
}

// ---- I/O APIC

const IO = LAYOUTS.kvm_ioapic_state.fields;
const IOAPIC_PINS = 24;

export function ioapicFromKvm(b: Uint8Array): IoApicState {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const low: number[] = [];
  const high: number[] = [];
  for (let i = 0; i < IOAPIC_PINS; i++) {
    low.push(dv.getUint32(IO.redirtbl + 8 * i, true));
    high.push(dv.getUint32(IO.redirtbl + 8 * i + 4, true));
  }
  return {
    id: dv.getUint32(IO.id, true) & 0xf,
    regsel: dv.getUint32(IO.ioregsel, true) & 0xff,
    low,
    high,
    pins: 0,
  };
}

export function ioapicToKvm(s: IoApicState, base: Uint8Array): Uint8Array {
  const b = base.slice();
  const dv = new DataView(b.buffer);
  dv.setUint32(IO.id, s.id & 0xf, true);
  dv.setUint32(IO.ioregsel, s.regsel & 0xff, true);
  dv.setUint32(IO.irr, 0, true);
  for (let i = 0; i < IOAPIC_PINS; i++) {
    dv.setUint32(IO.redirtbl + 8 * i, (s.low[i] ?? 0x10000) >>> 0, true);
    dv.setUint32(IO.redirtbl + 8 * i + 4, (s.high[i] ?? 0) >>> 0, true);
  }
  return b;
}

// ---- local APIC (the register page, SDM vol. 3 table 11-1)

const R = {
  id: 0x20,
  tpr: 0x80,
  ldr: 0xd0,
  dfr: 0xe0,
  svr: 0xf0,
  isr: 0x100,
  tmr: 0x180,
  irr: 0x200,
  esr: 0x280,
  icrLow: 0x300,
  icrHigh: 0x310,
  lvt: 0x320,
  tmict: 0x380,
  tdcr: 0x3e0,
} as const;

function timerDivisor(tdcr: number): number {
  const v = (tdcr & 3) | ((tdcr >> 1) & 4);
  return v === 7 ? 1 : 2 << v;
}

export function lapicFromKvm(page: Uint8Array, clockNs: number): LocalApicState {
  const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const r = (off: number) => dv.getUint32(off, true);
  const words = (off: number) => Array.from({ length: 8 }, (_, i) => r(off + 0x10 * i));
  const lvt = Array.from({ length: 6 }, (_, i) => r(R.lvt + 0x10 * i));
  const tdcr = r(R.tdcr) & 0xb;
  return {
    id: r(R.id),
    tpr: r(R.tpr) & 0xff,
    ldr: r(R.ldr),
    dfr: r(R.dfr),
    svr: r(R.svr) & 0x3ff,
    isr: words(R.isr),
    tmr: words(R.tmr),
    irr: words(R.irr),
    esr: r(R.esr),
    esrPending: 0,
    icrLow: r(R.icrLow),
    icrHigh: r(R.icrHigh),
    lvt,
    tdcr,
    // the count restarts at the resume, as KVM_SET_LAPIC does on KVM
    timer: {
      initial: r(R.tmict),
      startNs: clockNs,
      divisor: timerDivisor(tdcr),
      periodic: ((lvt[0]! >> 17) & 3) === 1,
      reported: 0,
    },
  };
}

export function lapicToKvm(s: LocalApicState, base: Uint8Array): Uint8Array {
  const page = base.slice();
  const dv = new DataView(page.buffer);
  const w = (off: number, v: number) => dv.setUint32(off, v >>> 0, true);
  w(R.id, s.id);
  w(R.tpr, s.tpr);
  w(R.ldr, s.ldr);
  w(R.dfr, s.dfr);
  w(R.svr, s.svr);
  for (let i = 0; i < 8; i++) {
    w(R.isr + 0x10 * i, s.isr[i] ?? 0);
    w(R.tmr + 0x10 * i, s.tmr[i] ?? 0);
    w(R.irr + 0x10 * i, s.irr[i] ?? 0);
  }
  w(R.esr, s.esr);
  w(R.icrLow, s.icrLow);
  w(R.icrHigh, s.icrHigh);
  s.lvt.forEach((v, i) => {
    w(R.lvt + 0x10 * i, v);
  });
  w(R.tdcr, s.tdcr);
  w(R.tmict, s.timer?.initial ?? 0);
  return page;
}

// ---- i8254

const C = LAYOUTS.kvm_pit_channel_state;
const PIT_FLAGS_SPEAKER_DATA_ON = 2;

export function pitFromKvm(b: Uint8Array, hostNs: bigint, clockNs: number): I8254State {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const channels: PitChannelState[] = [0, 1, 2].map((i) => {
    const at = LAYOUTS.kvm_pit_state2.fields.channels + i * C.size;
    const f = C.fields;
    const mode = b[at + f.mode]!;
    const elapsed = Number(hostNs - dv.getBigInt64(at + f.count_load_time, true));
    return {
      count: dv.getUint32(at + f.count, true),
      latchedCount: dv.getUint16(at + f.latched_count, true),
      countLatched: b[at + f.count_latched]!,
      status: b[at + f.status]!,
      statusLatched: b[at + f.status_latched] !== 0,
      readState: b[at + f.read_state]!,
      writeState: b[at + f.write_state]!,
      writeLatch: b[at + f.write_latch]!,
      rwMode: b[at + f.rw_mode]!,
      mode,
      bcd: b[at + f.bcd] !== 0,
      gate: b[at + f.gate] !== 0,
      loadTime: clockNs - Math.max(0, elapsed),
      armed: true,
      gateTriggered: !(mode === 1 || mode === 5) || b[at + f.gate] !== 0,
    };
  });
  const flags = dv.getUint32(LAYOUTS.kvm_pit_state2.fields.flags, true);
  return { channels, speakerData: (flags & PIT_FLAGS_SPEAKER_DATA_ON) !== 0, refreshToggle: false };
}

export function pitToKvm(s: I8254State, base: Uint8Array): Uint8Array {
  const b = base.slice();
  const dv = new DataView(b.buffer);
  s.channels.forEach((c, i) => {
    const at = LAYOUTS.kvm_pit_state2.fields.channels + i * C.size;
    const f = C.fields;
    dv.setUint32(at + f.count, c.count >>> 0, true);
    dv.setUint16(at + f.latched_count, c.latchedCount & 0xffff, true);
    b[at + f.count_latched] = c.countLatched & 0xff;
    b[at + f.status_latched] = c.statusLatched ? 1 : 0;
    b[at + f.status] = c.status & 0xff;
    b[at + f.read_state] = c.readState & 0xff;
    b[at + f.write_state] = c.writeState & 0xff;
    b[at + f.write_latch] = c.writeLatch & 0xff;
    b[at + f.rw_mode] = c.rwMode & 0xff;
    b[at + f.mode] = c.mode & 0xff;
    b[at + f.bcd] = c.bcd ? 1 : 0;
    b[at + f.gate] = c.gate ? 1 : 0;
  });
  const fo = LAYOUTS.kvm_pit_state2.fields.flags;
  const flags = dv.getUint32(fo, true) & ~PIT_FLAGS_SPEAKER_DATA_ON;
  dv.setUint32(fo, flags | (s.speakerData ? PIT_FLAGS_SPEAKER_DATA_ON : 0), true);
  return b;
}

// ---- capture and apply

function hasPit2(vm: KvmVm): boolean {
  try {
    return vm.checkExtension(KVM_CAP.PIT_STATE2) > 0;
  } catch {
    return false;
  }
}

/** The soft machine's platform devices, for their names and ranges. */
function softPlatform(cpus: number): { name: string; ranges: DeviceRecord["ranges"] }[] {
  const pc = new PcInterrupts({ cpus });
  const list = [...pc.devices, new I8254({ base: 0x40, irq: 0 })];
  return list.map((d) => ({ name: d.name, ranges: d.ranges.map((r) => ({ ...r })) }));
}

/**
 * The in-kernel irqchip and PIT of a KVM machine: the kernel's own structs, and the same state as
 * the soft devices' records (marked `platform`, so a soft machine without a PIT skips it).
 */
export function captureKvmPlatform(
  vm: KvmVm,
  vcpus: readonly KvmVcpu[],
  clockNs: number,
): { state: KvmPlatformState; records: DeviceRecord[] } | undefined {
  let master: Uint8Array;
  try {
    master = vm.getIrqchip(KVM_IRQCHIP_ID.PIC_MASTER);
  } catch {
    return undefined; // no in-kernel irqchip
  }
  const slave = vm.getIrqchip(KVM_IRQCHIP_ID.PIC_SLAVE);
  const ioapic = vm.getIrqchip(KVM_IRQCHIP_ID.IOAPIC);
  const hostNs = process.hrtime.bigint();
  const state: KvmPlatformState = {
    picMaster: b64(master),
    picSlave: b64(slave),
    ioapic: b64(ioapic),
    hostNs,
  };
  let pit: Uint8Array | undefined;
  if (hasPit2(vm)) {
    try {
      pit = vm.getPit2();
      state.pit = b64(pit);
    } catch {
      pit = undefined; // no in-kernel PIT
    }
  }
  const stateOf: Record<string, unknown> = {
    i8259: { master: picFromKvm(master), slave: picFromKvm(slave) } satisfies I8259State,
    ioapic: ioapicFromKvm(ioapic),
    lapic: { lapics: vcpus.map((v) => lapicFromKvm(v.getLapic(), clockNs)) },
    ...(pit ? { i8254: pitFromKvm(pit, hostNs, clockNs) } : {}),
  };
  const records = softPlatform(vcpus.length)
    .filter((d) => stateOf[d.name] !== undefined)
    .map((d) => ({ ...d, state: stateOf[d.name], snapshottable: true, platform: true }));
  return { state, records };
}

export function checkKvmPlatform(p: unknown): KvmPlatformState {
  const s = p as KvmPlatformState;
  const bad = (what: string) => new SnapshotError("kvm", what);
  if (!s || typeof s !== "object" || typeof s.hostNs !== "bigint")
    throw bad("the in-kernel irqchip state is malformed");
  for (const [k, want] of [
    ["picMaster", 512],
    ["picSlave", 512],
    ["ioapic", 512],
    ["pit", LAYOUTS.kvm_pit_state2.size],
  ] as const) {
    const v = s[k];
    if (v === undefined && k === "pit") continue;
    if (typeof v !== "string" || Buffer.from(v, "base64").length !== want)
      throw bad(`${k} is not ${want} bytes`);
  }
  return s;
}

/** The kernel's own structs back (a snapshot made on KVM). */
export function applyKvmPlatform(vm: KvmVm, s: KvmPlatformState, notes: string[]): void {
  vm.setIrqchip(KVM_IRQCHIP_ID.PIC_MASTER, unb64(s.picMaster));
  vm.setIrqchip(KVM_IRQCHIP_ID.PIC_SLAVE, unb64(s.picSlave));
  vm.setIrqchip(KVM_IRQCHIP_ID.IOAPIC, unb64(s.ioapic));
  if (s.pit !== undefined) {
    if (hasPit2(vm)) vm.setPit2(unb64(s.pit));
    else notes.push("the PIT's state was not restored (this KVM lacks KVM_CAP_PIT_STATE2)");
  }
}

/** Soft device records (a snapshot made on the soft backend) into the in-kernel chips. */
export function applySoftPlatformOnKvm(
  vm: KvmVm,
  vcpus: readonly KvmVcpu[],
  records: readonly DeviceRecord[],
  notes: string[],
): void {
  for (const rec of records) {
    const st = rec.state as Record<string, unknown> | null;
    if (!st || typeof st !== "object") continue;
    try {
      if (rec.name === "i8259") {
        const s = st as unknown as I8259State;
        vm.setIrqchip(
          KVM_IRQCHIP_ID.PIC_MASTER,
          picToKvm(s.master, vm.getIrqchip(KVM_IRQCHIP_ID.PIC_MASTER)),
        );
        vm.setIrqchip(KVM_IRQCHIP_ID.PIC_SLAVE, picToKvm(s.slave, vm.getIrqchip(KVM_IRQCHIP_ID.PIC_SLAVE)));
      } else if (rec.name === "ioapic") {
        const s = st as unknown as IoApicState;
        vm.setIrqchip(KVM_IRQCHIP_ID.IOAPIC, ioapicToKvm(s, vm.getIrqchip(KVM_IRQCHIP_ID.IOAPIC)));
      } else if (rec.name === "lapic") {
        const list = Array.isArray(st.lapics)
          ? (st.lapics as LocalApicState[])
          : [st as unknown as LocalApicState];
        if (list.length !== vcpus.length) {
          throw new Error(`${list.length} local APICs for ${vcpus.length} vCPUs`);
        }
        vcpus.forEach((v, i) => {
          v.setLapic(lapicToKvm(list[i]!, v.getLapic()));
        });
      } else if (rec.name === "i8254") {
        if (!hasPit2(vm)) {
          notes.push("the PIT's state was not restored (this KVM lacks KVM_CAP_PIT_STATE2)");
          continue;
        }
        vm.setPit2(pitToKvm(st as unknown as I8254State, vm.getPit2()));
        notes.push("PIT counts restart from their initial values (KVM_SET_PIT2 reloads them)");
      }
    } catch (e) {
      throw new SnapshotError(
        "devices",
        `${rec.name} into KVM's in-kernel chip: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }
}
