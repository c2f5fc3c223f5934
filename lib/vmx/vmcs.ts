// A VMCS as the logical processor holds it while it is current, and its region in host-physical
// memory. Region layout: bytes 0-3 revision id (bit 31 shadow indicator), 4-7 VMX-abort indicator,
// 8-11 launch state (ours), then one 8-byte slot per field of the table from byte 16. While a VMCS
// is current the processor works on a cached copy (as hardware may); VMCLEAR writes it back.

import { F, FIELDS, type FieldInfo, FieldType, FieldWidth, type ResolvedField } from "./fields.js";
import type { HostMemory } from "./host-memory.js";

const VM_EXIT_CONTROLS = F.VM_EXIT_CONTROLS;

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

  /** slots read while a memoized check runs (see memoCheck); null when not tracing */
  trace: number[] | null = null;
  /** memoized entry checks: the fields each read last time and its verdict */
  readonly memos = new Map<object, CheckMemo<unknown>>();

  get(f: FieldInfo): bigint {
    if (this.trace !== null) this.trace.push(f.slot);
    const hi = this.hi[f.slot]!;
    return hi === 0 ? BigInt(this.lo[f.slot]!) : (BigInt(hi) << 32n) | BigInt(this.lo[f.slot]!);
  }
  /** fast path for fields of at most 32 bits */
  get32(f: FieldInfo): number {
    if (this.trace !== null) this.trace.push(f.slot);
    return this.lo[f.slot]!;
  }
  set(f: FieldInfo, value: bigint): void {
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
    const width = f.width;
    if (width === FieldWidth.W16) this.lo[f.slot] = value & 0xffff;
    else this.lo[f.slot] = value >>> 0;
    this.hi[f.slot] =
      width === FieldWidth.W64 || width === FieldWidth.Natural ? Math.floor(value / 2 ** 32) : 0;
  }

  /** VMREAD semantics for a resolved access. */
  read(r: ResolvedField): bigint {
    return r.high ? BigInt(this.hi[r.info.slot]!) : this.get(r.info);
  }
  /** VMWRITE semantics: the value is truncated to the field's width; a high access sets bits 63:32. */
  write(r: ResolvedField, value: bigint): void {
    if (r.info.type === FieldType.Host || r.info.encoding === VM_EXIT_CONTROLS) this.hostStateChecked = false;
    if (r.high) this.hi[r.info.slot] = Number(value & 0xffffffffn);
    else this.set(r.info, value);
  }

  /** VMREAD as a number: exact when the value is below 2^53 (callers check `readHigh` otherwise) */
  readNumber(r: ResolvedField): number {
    const slot = r.info.slot;
    return r.high ? this.hi[slot]! : this.lo[slot]! + this.hi[slot]! * 2 ** 32;
  }
  /** `write` for a non-negative integer below 2^53, without BigInt arithmetic */
  writeNumber(r: ResolvedField, value: number): void {
    if (r.info.type === FieldType.Host || r.info.encoding === VM_EXIT_CONTROLS) this.hostStateChecked = false;
    if (r.high) this.hi[r.info.slot] = value % 2 ** 32;
    else this.setNumber(r.info, value);
  }

  /** Writes the cached data and launch state into the region (VMCLEAR). */
  flush(mem: HostMemory): void {
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
 */
export function memoCheck<T>(v: VmcsData, key: object, check: (v: VmcsData) => T): T {
  const memo = v.memos.get(key) as CheckMemo<T> | undefined;
  if (memo !== undefined) {
    const { slots, lo, hi } = memo;
    const vlo = v.lo;
    const vhi = v.hi;
    let same = true;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i]!;
      if (vlo[s] !== lo[i] || vhi[s] !== hi[i]) {
        same = false;
        break;
      }
    }
    if (same) return memo.result;
  }
  const outer = v.trace;
  const trace: number[] = [];
  v.trace = trace;
  let result: T;
  try {
    result = check(v);
  } finally {
    v.trace = outer;
  }
  if (outer !== null) for (const s of trace) outer.push(s);
  const unique = [...new Set(trace)];
  const slots = Int32Array.from(unique);
  v.memos.set(key, {
    slots,
    lo: Uint32Array.from(unique, (s) => v.lo[s]!),
    hi: Uint32Array.from(unique, (s) => v.hi[s]!),
    result,
  });
  return result;
}
