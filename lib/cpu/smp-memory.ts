// Guest memory shared by several interpreters, each in its own thread (SDM Vol. 3A ch. 9
// "Multiple-processor management"). The state the vCPUs share is a handful of SharedArrayBuffers
// (structured-clonable: the backend posts the same object to every worker); each interpreter
// attaches to it with Interpreter.attachSharedMemory(state, vcpu).
//
// Single-copy atomicity (SDM 9.1.1): a naturally aligned 2-, 4- or 8-byte access is one access.
// JavaScript promises that for integer typed-array elements (ECMAScript "IsNoTearConfiguration"),
// not for DataView accesses. So in this mode the TLB's views are AtomicViews: element accesses of
// a Uint16Array / Int32Array over the same buffer where the access is aligned, bytes otherwise.
// 8 bytes go through a Float64Array element (one 64-bit move on 64-bit hosts; V8 copies doubles
// of typed arrays bit for bit, NaN payloads and signalling NaNs included: test/cpu/smp-atomics
// proves every NaN form survives in every tier) copied through a scratch aliased by an Int32Array.
// Assumes a little-endian host (checked when the state is created).

/** indexes of `SharedMemoryState.words` (Int32Array) */
export const enum SmpWord {
  /** bumped after every write to a page some vCPU has code on (code-coherence.ts) */
  CodeGen = 0,
  /** bumped when a page turns into a code page in the shared map (code-coherence.ts) */
  MapEpoch = 1,
  /** 0 free, 1 held: split locks and CMPXCHG16B (smp-atomic.ts) */
  SplitLock = 2,
  /** MFENCE does an atomic add here (a full barrier) */
  Fence = 3,
}
const WORDS = 16;
/** an ack slot of a vCPU that never attached */
export const ACK_NONE = 0x7fffffff;

/** What the vCPUs share. Only SharedArrayBuffers and numbers: structured-clonable. */
export interface SharedMemoryState {
  /** Int32Array of SmpWord */
  readonly words: SharedArrayBuffer;
  /** a byte per 4 KiB guest-physical page below `pages`: some vCPU has decoded code from it */
  readonly codeMap: SharedArrayBuffer;
  /** Int32Array, one slot per vCPU: the MapEpoch up to which it dropped plain write entries */
  readonly acks: SharedArrayBuffer;
  readonly pages: number;
  readonly vcpus: number;
}

/** Creates the shared state for `vcpus` interpreters over `guestPhysBytes` of guest-physical space. */
export function createSharedMemoryState(guestPhysBytes: number, vcpus: number): SharedMemoryState {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new RangeError("shared guest memory needs a little-endian host");
  }
  if (!Number.isSafeInteger(guestPhysBytes) || guestPhysBytes < 0 || guestPhysBytes > 2 ** 52) {
    throw new RangeError(`guest-physical size ${guestPhysBytes} is not a byte count`);
  }
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 4096)
    throw new RangeError(`vcpus ${vcpus} out of range`);
  const pages = Math.ceil(guestPhysBytes / 4096);
  const acks = new SharedArrayBuffer(4 * vcpus);
  new Int32Array(acks).fill(ACK_NONE);
  return {
    words: new SharedArrayBuffer(4 * WORDS),
    codeMap: new SharedArrayBuffer(pages),
    acks,
    pages,
    vcpus,
  };
}

/** One interpreter's handle on the shared state (views made once, plus what it has seen). */
export class SmpLink {
  readonly words: Int32Array;
  readonly codeMap: Uint8Array;
  readonly acks: Int32Array;
  readonly pages: number;
  /** CodeGen this vCPU last re-checked its blocks at */
  seenGen: number;
  /** MapEpoch up to which this vCPU dropped plain write entries of code pages */
  seenEpoch: number;
  /** MapEpoch of the last page this vCPU itself marked; confirmed when every ack reaches it */
  markEpoch = 0;
  markConfirmed = true;
  /** outside run(): its ack slot holds ACK_NONE (code-coherence.ts parkCodeMap) */
  parked = true;

  constructor(
    state: SharedMemoryState,
    readonly vcpu: number,
  ) {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= state.vcpus) {
      throw new RangeError(`vCPU index ${vcpu} outside 0..${state.vcpus - 1}`);
    }
    this.words = new Int32Array(state.words);
    this.codeMap = new Uint8Array(state.codeMap);
    this.acks = new Int32Array(state.acks);
    this.pages = state.pages;
    this.seenGen = Atomics.load(this.words, SmpWord.CodeGen);
    this.seenEpoch = -1;
  }
  /** the page is marked as code in the shared map (pages past the map count as marked) */
  isCode(gpaPage: number): boolean {
    const n = gpaPage / 4096;
    return n >= this.pages || this.codeMap[n] !== 0;
  }
}

/**
 * The DataView subset that guest-memory accesses use (the interpreter's paths and compiled
 * blocks), single-copy atomic where the access is naturally aligned; ld64/st64 for 8 bytes
 * (lo returned, high half in vh). For windows that start 8-byte aligned in their buffer (HostMemory
 * windows start 4 KiB aligned); others get an UnalignedView, which only promises byte atomicity.
 */
export class AtomicView {
  readonly u8: Uint8Array;
  protected readonly dv: DataView;
  private readonly u16: Uint16Array;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  vh = 0;

  constructor(bytes: Uint8Array) {
    this.u8 = bytes;
    const buf = bytes.buffer;
    const at = bytes.byteOffset;
    this.dv = new DataView(buf, at, bytes.byteLength);
    const ok = at % 8 === 0;
    this.u16 = ok ? new Uint16Array(buf, at, bytes.byteLength >> 1) : new Uint16Array(0);
    this.i32 = ok ? new Int32Array(buf, at, bytes.byteLength >> 2) : new Int32Array(0);
    this.f64 = ok ? new Float64Array(buf, at, bytes.byteLength >> 3) : new Float64Array(0);
  }
  getUint8(p: number): number {
    return this.u8[p];
  }
  getInt8(p: number): number {
    return (this.u8[p] << 24) >> 24;
  }
  getUint16(p: number, _le?: boolean): number {
    return (p & 1) === 0 ? this.u16[p >> 1] : this.dv.getUint16(p, true);
  }
  getInt16(p: number, _le?: boolean): number {
    return (this.getUint16(p) << 16) >> 16;
  }
  getInt32(p: number, _le?: boolean): number {
    return (p & 3) === 0 ? this.i32[p >> 2] : this.dv.getInt32(p, true);
  }
  getUint32(p: number, _le?: boolean): number {
    return this.getInt32(p) >>> 0;
  }
  setUint8(p: number, v: number): void {
    this.u8[p] = v;
  }
  setInt8(p: number, v: number): void {
    this.u8[p] = v;
  }
  setUint16(p: number, v: number, _le?: boolean): void {
    if ((p & 1) === 0) this.u16[p >> 1] = v;
    else this.dv.setUint16(p, v, true);
  }
  setInt16(p: number, v: number, le?: boolean): void {
    this.setUint16(p, v, le);
  }
  setInt32(p: number, v: number, _le?: boolean): void {
    if ((p & 3) === 0) this.i32[p >> 2] = v;
    else this.dv.setInt32(p, v, true);
  }
  setUint32(p: number, v: number, le?: boolean): void {
    this.setInt32(p, v, le);
  }
  /** 8 bytes at p: low half returned (int32), high half in vh */
  ld64(p: number): number {
    if ((p & 7) === 0) {
      SCRATCH_F64[0] = this.f64[p >> 3];
      this.vh = SCRATCH_I32[1];
      return SCRATCH_I32[0];
    }
    this.vh = this.dv.getInt32(p + 4, true);
    return this.dv.getInt32(p, true);
  }
  st64(p: number, lo: number, hi: number): void {
    if ((p & 7) === 0) {
      SCRATCH_I32[0] = lo;
      SCRATCH_I32[1] = hi;
      this.f64[p >> 3] = SCRATCH_F64[0];
      return;
    }
    this.dv.setInt32(p, lo, true);
    this.dv.setInt32(p + 4, hi, true);
  }
}

/** an AtomicView of a window that does not start 8-byte aligned: DataView accesses throughout */
class UnalignedView extends AtomicView {
  override getUint16(p: number): number {
    return this.dv.getUint16(p, true);
  }
  override getInt32(p: number): number {
    return this.dv.getInt32(p, true);
  }
  override setUint16(p: number, v: number): void {
    this.dv.setUint16(p, v, true);
  }
  override setInt32(p: number, v: number): void {
    this.dv.setInt32(p, v, true);
  }
  override ld64(p: number): number {
    this.vh = this.dv.getInt32(p + 4, true);
    return this.dv.getInt32(p, true);
  }
  override st64(p: number, lo: number, hi: number): void {
    this.dv.setInt32(p, lo, true);
    this.dv.setInt32(p + 4, hi, true);
  }
}
const SCRATCH_F64 = new Float64Array(1);
const SCRATCH_I32 = new Int32Array(SCRATCH_F64.buffer);

/** one AtomicView per guest-memory array (TLB fills look it up) */
const atomicViews = new WeakMap<Uint8Array, AtomicView>();
export function atomicViewOf(bytes: Uint8Array): AtomicView {
  let v = atomicViews.get(bytes);
  if (v === undefined) {
    v = bytes.byteOffset % 8 === 0 ? new AtomicView(bytes) : new UnalignedView(bytes);
    atomicViews.set(bytes, v);
  }
  return v;
}

/** Views for compare-and-swap at byte index p of `bytes`, made once per array. */
export class CasViews {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  readonly ok: boolean;
  constructor(bytes: Uint8Array) {
    this.u8 = bytes;
    const at = bytes.byteOffset;
    this.ok = at % 8 === 0;
    const at8 = this.ok ? at : 0;
    this.u16 = new Uint16Array(bytes.buffer, at8, this.ok ? bytes.byteLength >> 1 : 0);
    this.i32 = new Int32Array(bytes.buffer, at8, this.ok ? bytes.byteLength >> 2 : 0);
    this.i64 = new BigInt64Array(bytes.buffer, at8, this.ok ? bytes.byteLength >> 3 : 0);
  }
}
const casViews = new WeakMap<Uint8Array, CasViews>();
export function casViewsOf(bytes: Uint8Array): CasViews {
  let v = casViews.get(bytes);
  if (v === undefined) {
    v = new CasViews(bytes);
    casViews.set(bytes, v);
  }
  return v;
}
