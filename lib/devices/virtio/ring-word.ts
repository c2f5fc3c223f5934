// A 16-bit ring index or flags word that the driver (a vCPU, possibly running at this very moment:
// ioeventfd notifications, vCPU threads) and the device both touch. Plain typed-array accesses
// carry no ordering: the JIT may keep, merge or reorder them around other loads and stores. Atomics
// are sequentially consistent, which is what the virtio ring protocol asks of the device: reads of
// avail.idx before the entries it covers (virtio_rmb), used entries before used.idx (virtio_wmb),
// and a full barrier between publishing used.idx / avail_event and reading the other side's event
// index or idx (virtio_mb; on x86 Atomics.store is an XCHG, the one x86 store that orders later loads).
//
// Guest RAM on KVM is an mmap'd ArrayBuffer, not a SharedArrayBuffer: Atomics.load/store accept
// integer arrays over either. Ring words are little-endian and 2-byte aligned in guest-physical
// terms; a view whose host offset is odd, or a big-endian host, falls back to DataView accesses
// (correct for a guest that is not running concurrently, the only case where they can occur: KVM
// maps RAM page-aligned on little-endian x86).

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class RingWord {
  readonly #words: Uint16Array | undefined;
  readonly #view: DataView;
  readonly #offset: number;

  /** The word at `offset` bytes into `view`. */
  constructor(view: DataView, offset: number) {
    this.#view = view;
    this.#offset = offset;
    const at = view.byteOffset + offset;
    this.#words = LITTLE_ENDIAN && at % 2 === 0 ? new Uint16Array(view.buffer, at, 1) : undefined;
  }

  load(): number {
    const w = this.#words;
    return w ? Atomics.load(w, 0) : this.#view.getUint16(this.#offset, true);
  }

  store(value: number): void {
    const w = this.#words;
    if (w) Atomics.store(w, 0, value);
    else this.#view.setUint16(this.#offset, value, true);
  }
}
