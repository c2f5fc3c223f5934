// A VMCS as the logical processor holds it while it is current, and its region in host-physical
// memory. Region layout: bytes 0-3 revision id (bit 31 shadow indicator), 4-7 VMX-abort indicator,
// 8-11 launch state (ours), then one 8-byte slot per field of the table from byte 16. While a VMCS
// is current the processor works on a cached copy (as hardware may); VMCLEAR writes it back.
//
// The guest state a VM exit saves stays in the processor's interpreter until something reads it
// (SDM 24.11.1: a current VMCS's data may live in the processor, its memory image is undefined
// until VMCLEAR): a slot the last exit would have saved is "stale" until VMREAD, a check or a flush
// syncs it from the interpreter (LiveGuest.sync), and the next entry loads only what VMWRITE
// changed. Exits and entries then cost what the host touches, not the ~60 guest-state fields.

import { F, FIELDS, type FieldInfo, FieldType, FieldWidth, type ResolvedField } from "./fields.js";
import type { HostMemory } from "./host-memory.js";

const VM_EXIT_CONTROLS = F.VM_EXIT_CONTROLS;
const slotByEncoding = (encoding: number): number => FIELDS.find((f) => f.encoding === encoding)!.slot;
const GUEST_CR0_SLOT = slotByEncoding(F.GUEST_CR0);
const GUEST_CR4_SLOT = slotByEncoding(F.GUEST_CR4);

export const REVISION_OFFSET = 0;
export const ABORT_OFFSET = 4;
export const LAUNCH_STATE_OFFSET = 8;
export const DATA_OFFSET = 16;

export const enum LaunchState {
  Clear = 0,
  Launched = 1,
}

const MASK: Record<FieldWidth, bigint> = {
  [FieldWidth.W16]: 0xffffn,
  [FieldWidth.W32]: 0xffffffffn,
  [FieldWidth.W64]: 0xffffffffffffffffn,
  [FieldWidth.Natural]: 0xffffffffffffffffn,
};

/** The interpreter holding a VMCS's live guest state (the processor that last exited from it). */
export interface LiveGuest {
  /** writes the slot's current value (what a VM exit would have saved) into the data with set/setNumber */
  sync(v: VmcsData, slot: number): void;
}

const NO_SLOTS = new Uint8Array(FIELDS.length);

/** The cached contents of one VMCS: field values by slot, plus its launch state. */
export class VmcsData {
  readonly lo = new Uint32Array(FIELDS.length);
  readonly hi = new Uint32Array(FIELDS.length);
  launchState: LaunchState = LaunchState.Clear;
  /**
   * The host-state checks passed and nothing they read (host-state fields, VM-exit controls) has
   * been written since. Only VMWRITE changes those fields, so the checks need not run on every entry.
   */
  hostStateChecked = false;

  constructor(readonly address: number) {}

  /** the processor whose interpreter holds the guest state the last VM exit saved; null: the slots do */
  live: LiveGuest | null = null;
  /** saved[slot] = 1: the last exit saved the slot (it is in `live` until synced) */
  saved: Uint8Array = NO_SLOTS;
  /** VM exits so far: a slot is synced for this exit when synced[slot] === epoch */
  epoch = 1;
  readonly synced = new Uint32Array(FIELDS.length);
  /** slots VMWRITE wrote since the last VM entry loaded guest state (written[slot] = 1; `writes` lists them) */
  readonly written = new Uint8Array(FIELDS.length);
  readonly writes: number[] = [];

  /** the slot's value is in the live interpreter, not in the data */
  stale(slot: number): boolean {
    return this.live !== null && this.saved[slot] === 1 && this.synced[slot] !== this.epoch;
  }
  #sync(slot: number): void {
    this.live!.sync(this, slot);
    this.synced[slot] = this.epoch;
  }
  /** A VM exit that leaves the guest state in `live`: the slots in `saved` are stale from now on. */
  leaveLive(live: LiveGuest, saved: Uint8Array): void {
    this.live = live;
    this.saved = saved;
    this.epoch++;
  }
  /** syncs every stale slot and ends the live state (the data alone holds the VMCS again) */
  syncAll(): void {
    if (this.live === null) return;
    const saved = this.saved;
    for (let s = 0; s < saved.length; s++) if (saved[s] === 1 && this.synced[s] !== this.epoch) this.#sync(s);
    this.live = null;
  }
  /** forgets the VMWRITEs since the last entry (that entry loaded them) */
  clearWritten(): void {
    for (const s of this.writes) this.written[s] = 0;
    this.writes.length = 0;
  }
  #wrote(f: FieldInfo): void {
    const slot = f.slot;
    if (this.written[slot] === 0) {
      this.written[slot] = 1;
      this.writes.push(slot);
    }
    if (f.type === FieldType.Host || f.encoding === VM_EXIT_CONTROLS) this.hostStateChecked = false;
    // a stale CR0/CR4 is synced with the guest/host mask the exit had, before the mask changes
    if (this.live !== null) {
      if (f.encoding === F.CR0_GUEST_HOST_MASK && this.stale(GUEST_CR0_SLOT)) this.#sync(GUEST_CR0_SLOT);
      if (f.encoding === F.CR4_GUEST_HOST_MASK && this.stale(GUEST_CR4_SLOT)) this.#sync(GUEST_CR4_SLOT);
    }
  }

  /** slots read while a memoized check runs (see memoCheck); null when not tracing */
  trace: number[] | null = null;
  /** memoized entry checks: the fields each read last time and its verdict */
  readonly memos = new Map<object, CheckMemo<unknown>>();

  get(f: FieldInfo): bigint {
    if (this.trace !== null) this.trace.push(f.slot);
    if (this.live !== null && this.stale(f.slot)) this.#sync(f.slot);
    const hi = this.hi[f.slot]!;
    return hi === 0 ? BigInt(this.lo[f.slot]!) : (BigInt(hi) << 32n) | BigInt(this.lo[f.slot]!);
  }
  /** fast path for fields of at most 32 bits */
  get32(f: FieldInfo): number {
    if (this.trace !== null) this.trace.push(f.slot);
    if (this.live !== null && this.stale(f.slot)) this.#sync(f.slot);
    return this.lo[f.slot]!;
  }
  set(f: FieldInfo, value: bigint): void {
    this.synced[f.slot] = this.epoch;
    if (value >= 0n && value <= 0xffffffffn) {
      // most values fit 32 bits: no BigInt arithmetic (each would allocate)
      this.setNumber(f, Number(value));
      return;
    }
    const v = value & MASK[f.width];
    this.lo[f.slot] = Number(v & 0xffffffffn);
    this.hi[f.slot] = Number(v >> 32n);
  }
  /** the same for a non-negative integer below 2^53, without BigInt arithmetic (the exit path) */
  setNumber(f: FieldInfo, value: number): void {
    this.synced[f.slot] = this.epoch;
    const width = f.width;
    if (width === FieldWidth.W16) this.lo[f.slot] = value & 0xffff;
    else this.lo[f.slot] = value >>> 0;
    this.hi[f.slot] =
      width === FieldWidth.W64 || width === FieldWidth.Natural ? Math.floor(value / 2 ** 32) : 0;
  }

  /** a 64-bit or natural-width field from a two's-complement signed number (|value| < 2^53) */
  setSigned(f: FieldInfo, value: number): void {
    if (value >= 0) {
      this.setNumber(f, value);
      return;
    }
    this.synced[f.slot] = this.epoch;
    const hi = Math.floor(value / 2 ** 32);
    this.lo[f.slot] = value - hi * 2 ** 32;
    this.hi[f.slot] = hi >>> 0;
  }
  /** bits 63:32 of a field */
  getHigh(f: FieldInfo): number {
    if (this.trace !== null) this.trace.push(f.slot);
    if (this.live !== null && this.stale(f.slot)) this.#sync(f.slot);
    return this.hi[f.slot]!;
  }
  /** a 64-bit or natural-width field as a two's-complement signed number (exact within +-2^53) */
  getSigned(f: FieldInfo): number {
    if (this.trace !== null) this.trace.push(f.slot);
    if (this.live !== null && this.stale(f.slot)) this.#sync(f.slot);
    return (this.hi[f.slot]! | 0) * 2 ** 32 + this.lo[f.slot]!;
  }

  /** VMREAD semantics for a resolved access. */
  read(r: ResolvedField): bigint {
    if (r.high && this.live !== null && this.stale(r.info.slot)) this.#sync(r.info.slot);
    return r.high ? BigInt(this.hi[r.info.slot]!) : this.get(r.info);
  }
  /** VMWRITE semantics: the value is truncated to the field's width; a high access sets bits 63:32. */
  write(r: ResolvedField, value: bigint): void {
    this.#wrote(r.info);
    if (r.high) {
      // the low half stays what it is: synced first when the interpreter holds it
      if (this.live !== null && this.stale(r.info.slot)) this.#sync(r.info.slot);
      this.hi[r.info.slot] = Number(value & 0xffffffffn);
    } else this.set(r.info, value);
  }

  /** VMREAD as a number: exact when the value is below 2^53 (callers check `readHigh` otherwise) */
  readNumber(r: ResolvedField): number {
    const slot = r.info.slot;
    if (this.live !== null && this.stale(slot)) this.#sync(slot);
    return r.high ? this.hi[slot]! : this.lo[slot]! + this.hi[slot]! * 2 ** 32;
  }
  /** `write` for a non-negative integer below 2^53, without BigInt arithmetic */
  writeNumber(r: ResolvedField, value: number): void {
    this.#wrote(r.info);
    if (r.high) {
      if (this.live !== null && this.stale(r.info.slot)) this.#sync(r.info.slot);
      this.hi[r.info.slot] = value % 2 ** 32;
    } else this.setNumber(r.info, value);
  }

  /** Writes the cached data and launch state into the region (VMCLEAR). */
  flush(mem: HostMemory): void {
    this.syncAll();
    mem.writeU32(this.address + LAUNCH_STATE_OFFSET, this.launchState);
    for (let i = 0; i < FIELDS.length; i++) {
      mem.writeU32(this.address + DATA_OFFSET + i * 8, this.lo[i]!);
      mem.writeU32(this.address + DATA_OFFSET + i * 8 + 4, this.hi[i]!);
    }
  }

  /** Reads a VMCS from its region (VMPTRLD). */
  static load(mem: HostMemory, address: number): VmcsData {
    const d = new VmcsData(address);
    d.launchState =
      mem.readU32(address + LAUNCH_STATE_OFFSET) === 1 ? LaunchState.Launched : LaunchState.Clear;
    for (let i = 0; i < FIELDS.length; i++) {
      d.lo[i] = mem.readU32(address + DATA_OFFSET + i * 8);
      d.hi[i] = mem.readU32(address + DATA_OFFSET + i * 8 + 4);
    }
    return d;
  }
}

// dense by encoding (all encodings are below 0x8000): entries and exits touch ~150 fields, so no
// hashing on that path. Pre-filled so the engine keeps a packed array rather than a dictionary.
const SLOT: (FieldInfo | undefined)[] = Array.from({ length: 0x8000 }, () => undefined);
for (const f of FIELDS) SLOT[f.encoding] = f;
const slotOf = (encoding: number): FieldInfo => {
  const f = SLOT[encoding];
  if (!f) throw new RangeError(`no VMCS field 0x${encoding.toString(16)}`);
  return f;
};

/** Processor-internal access by encoding (the processor itself is not bound by read-only-ness). */
export function vmcsGet(d: VmcsData, encoding: number): bigint {
  return d.get(slotOf(encoding));
}
export function vmcsGet32(d: VmcsData, encoding: number): number {
  return d.get32(slotOf(encoding));
}
export function vmcsSet(d: VmcsData, encoding: number, value: bigint | number): void {
  if (typeof value === "bigint") d.set(slotOf(encoding), value);
  else if (value >= 0 && value <= Number.MAX_SAFE_INTEGER && Number.isInteger(value))
    d.setNumber(slotOf(encoding), value);
  else d.set(slotOf(encoding), BigInt(value < 0 ? value >>> 0 : value));
}

/** What a memoized check read (slots and their values) and what it answered. */
export interface CheckMemo<T> {
  slots: Int32Array;
  lo: Uint32Array;
  hi: Uint32Array;
  result: T;
}

/**
 * Runs `check`, a pure function of the VMCS fields it reads through get/get32 (and of nothing
 * else), or returns its last verdict when every field it read last time still holds the value it
 * had then: a deterministic function that reads the same values takes the same path, reads the
 * same fields and answers the same. Exact whoever wrote the fields (VMWRITE or the processor).
 * `key` names the check (the same key must always mean the same function).
 *
 * With the guest state live in the interpreter, the guest-state fields the last exit saved are
 * not checked again for what the guest itself did to them (the processor may keep a current VMCS's
 * guest state to itself across an exit and the next entry, as long as what the host changed is
 * checked), while a field VMWRITE wrote since the last entry always runs the checks that read it,
 * with every field they read synced: what the host changed is checked as the SDM says.
 */
/** traces by nesting depth of memoCheck (reused: a trace is copied out before its depth runs again) */
const TRACES: number[][] = [];
let traceDepth = 0;
/** SEEN[slot] === mark: the slot was seen in the current pass (deduplicating a trace) */
const SEEN = new Uint32Array(FIELDS.length);
let mark = 0;
function nextMark(): number {
  if (mark === 0xffffffff) {
    SEEN.fill(0);
    mark = 0;
  }
  return ++mark;
}

/**
 * `all`: every VM entry runs every check again on the whole guest state, the guest's own changes
 * included (nothing memoized). For fuzzing and tests: an interpreter bug that leaves a state no
 * CPU could be in then fails the entry (a guest-caused VM-entry failure) instead of going unseen.
 */
export const entryChecks = { all: false };

export function memoCheck<T>(v: VmcsData, key: object, check: (v: VmcsData) => T): T {
  const memo = v.memos.get(key) as CheckMemo<T> | undefined;
  if (memo !== undefined && !entryChecks.all) {
    const { slots, lo, hi } = memo;
    const vlo = v.lo;
    const vhi = v.hi;
    const written = v.written;
    // with the guest state live, what the last exit saved is the guest's own doing (synced or not)
    const trusted = v.live !== null ? v.saved : NO_SLOTS;
    let same = true;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i]!;
      // a field VMWRITE wrote is checked again whatever its value
      if (written[s] === 1) {
        same = false;
        break;
      }
      if (trusted[s] === 1) continue;
      if (vlo[s] !== lo[i] || vhi[s] !== hi[i]) {
        same = false;
        break;
      }
    }
    if (same) return memo.result;
  }
  const outer = v.trace;
  let trace = TRACES[traceDepth];
  if (trace === undefined) {
    trace = [];
    TRACES[traceDepth] = trace;
  }
  trace.length = 0;
  traceDepth++;
  v.trace = trace;
  let result: T;
  try {
    result = check(v);
  } finally {
    v.trace = outer;
    traceDepth--;
  }
  if (outer !== null) for (let i = 0; i < trace.length; i++) outer.push(trace[i]!);
  // the distinct slots read, in order; the memo's arrays are reused when their count is the same
  // (most checks read the same fields every time): a check run again allocates nothing
  const m1 = nextMark();
  let n = 0;
  for (let i = 0; i < trace.length; i++) {
    const s = trace[i]!;
    if (SEEN[s] !== m1) {
      SEEN[s] = m1;
      n++;
    }
  }
  const out =
    memo !== undefined && memo.slots.length === n
      ? memo
      : { slots: new Int32Array(n), lo: new Uint32Array(n), hi: new Uint32Array(n), result };
  const m2 = nextMark();
  let k = 0;
  for (let i = 0; i < trace.length; i++) {
    const s = trace[i]!;
    if (SEEN[s] === m2) continue;
    SEEN[s] = m2;
    out.slots[k] = s;
    out.lo[k] = v.lo[s]!;
    out.hi[k] = v.hi[s]!;
    k++;
  }
  out.result = result;
  if (out !== memo) v.memos.set(key, out);
  return result;
}
