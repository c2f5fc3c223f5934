// The coalesced MMIO/PIO ring (KVM_REGISTER_COALESCED_MMIO): writes to registered zones do not exit;
// KVM appends them to a ring in the vCPU mapping (at the page KVM_CHECK_EXTENSION(COALESCED_MMIO)
// names) and the VMM takes them out later. lib/kvm hands them to the loop as the port/MMIO write
// exits they stand for, in guest order, before the exit that ended the entry (vcpu.ts), so what
// devices see is what they would have seen exit by exit.
//
// struct kvm_coalesced_mmio_ring { u32 first, last; struct kvm_coalesced_mmio entries[]; }
// struct kvm_coalesced_mmio { u64 phys_addr; u32 len; u32 pio; u8 data[8]; }   (24 bytes)

import { KVM_EXIT } from "./constants.js";
import type { KvmIoExit, KvmMmioExit, KvmRawExit } from "./exits.js";

const PAGE = 4096;
const HEADER = 8;
const ENTRY = 24;
/** KVM_COALESCED_MMIO_MAX: the entries one page holds */
export const COALESCED_RING_ENTRIES = Math.floor((PAGE - HEADER) / ENTRY);

const IO_RAW: KvmRawExit = Object.freeze({ backend: "kvm" as const, code: KVM_EXIT.IO });
const MMIO_RAW: KvmRawExit = Object.freeze({ backend: "kvm" as const, code: KVM_EXIT.MMIO });

/**
 * The coalesced MMIO/PIO ring of one vCPU (KVM_REGISTER_COALESCED_MMIO): KvmVcpu drains it into the port and
 * MMIO write exits the writes stand for, in guest order.
 */
export class CoalescedRing {
  readonly #dv: DataView;
  readonly #buffer: ArrayBuffer;
  readonly #base: number;

  /** `pageOffset`: what KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) answered */
  constructor(vcpuMapping: ArrayBuffer, pageOffset: number) {
    const base = pageOffset * PAGE;
    if (!Number.isInteger(pageOffset) || pageOffset < 1 || base + PAGE > vcpuMapping.byteLength) {
      throw new RangeError(
        `the coalesced ring at page ${pageOffset} is outside the vCPU mapping (${vcpuMapping.byteLength} bytes)`,
      );
    }
    this.#buffer = vcpuMapping;
    this.#base = base;
    this.#dv = new DataView(vcpuMapping, base, PAGE);
  }

  /** Whether KVM has appended writes not taken yet. */
  get pending(): boolean {
    return this.#dv.getUint32(0, true) !== this.#dv.getUint32(4, true);
  }

  /**
   * The oldest write, as the exit it stands for (data: a view of the ring slot, valid until the
   * next KVM_RUN), and frees its slot; undefined when the ring is empty.
   */
  shift(): KvmIoExit | KvmMmioExit | undefined {
    const dv = this.#dv;
    const first = dv.getUint32(0, true);
    if (first === dv.getUint32(4, true)) return undefined;
    if (first >= COALESCED_RING_ENTRIES)
      throw new RangeError(`coalesced ring index ${first} is out of range`);
    const at = HEADER + first * ENTRY;
    const address = Number(dv.getBigUint64(at, true));
    const length = Math.min(dv.getUint32(at + 8, true), 8);
    const pio = dv.getUint32(at + 12, true) !== 0;
    const data = new Uint8Array(this.#buffer, this.#base + at + 16, length);
    // the slot is KVM's again only at the next entry, after the loop has handled this write
    dv.setUint32(0, (first + 1) % COALESCED_RING_ENTRIES, true);
    if (pio) {
      const size = length === 2 || length === 4 ? length : 1;
      return { kind: "io", direction: "out", port: address & 0xffff, size, count: 1, data, raw: IO_RAW };
    }
    return { kind: "mmio", address, length, write: true, data, raw: MMIO_RAW };
  }
}
