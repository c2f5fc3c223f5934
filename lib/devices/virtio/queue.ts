// The split virtqueue (virtio 1.2 section 2.7) as a device sees it: the descriptor table, the
// driver's available ring and the device's used ring, all in guest RAM. Chains come out as views of
// guest memory (no copies), checked on the way: head and next indexes inside the table, no loops
// (at most one visit per table entry), every buffer inside RAM, device-readable buffers before
// device-writable ones, indirect tables only when negotiated and never nested, and length limits.
// Anything else is a VirtqueueError, which the transport turns into DEVICE_NEEDS_RESET: the guest
// broke the ring, the host keeps running.

import { describeValue } from "../../types/describe-value.js";
import { VmmError } from "../../types/errors.js";
import { DeviceConfigError } from "../errors.js";
import { DeviceOptionReader } from "../options.js";
import { dataView, type GuestRam } from "./guest-ram.js";
import { RingWord } from "./ring-word.js";

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** the largest split queue the spec allows */
export const VIRTQ_MAX_SIZE = 32768;
const DESC_BYTES = 16;
const TWO32 = 2 ** 32;

/** A malformed ring or descriptor chain (the guest's fault); the message says what and where. */
export class VirtqueueError extends VmmError {
  /** Always "VirtqueueError" (the class name, for people). */
  override name = "VirtqueueError";
  /** Always "ERR_VMM_VIRTQUEUE": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_VIRTQUEUE";
}

/** where the driver put the queue (QueueDesc/QueueDriver/QueueDevice) and its size (QueueNum) */
export interface QueueLayout {
  /** Queue size (QueueNum): entries in each ring. */
  size: number;
  /** Guest-physical address of the descriptor table. */
  desc: number;
  /** Guest-physical address of the driver (available) ring. */
  driver: number;
  /** Guest-physical address of the device (used) ring. */
  device: number;
}

/** How a {@link Virtqueue} reads the ring: negotiated features and the device's limits. */
export interface VirtqueueOptions {
  /** VIRTIO_F_RING_EVENT_IDX negotiated: used_event / avail_event instead of the flags */
  eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated */
  indirect?: boolean;
  /** the most bytes one chain may span (readable + writable); default 2^32 - 1, what a used length holds */
  maxChainBytes?: number;
  /** the most bytes one descriptor may cover (e.g. virtio-blk's size_max); default unlimited */
  maxDescriptorBytes?: number;
}

/** One request: the driver's buffers as views of guest memory, readable ones first. */
export interface DescriptorChain {
  /** The chain's head descriptor index (what goes back in the used ring). */
  head: number;
  /** The device-readable buffers, in order (views of guest memory). */
  readable: Uint8Array[];
  /** The device-writable buffers, in order (views of guest memory). */
  writable: Uint8Array[];
  /** Total bytes of the readable buffers. */
  readableBytes: number;
  /** Total bytes of the writable buffers. */
  writableBytes: number;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * A split virtqueue (virtio 1.2 section 2.7) as a device sees it: takes the driver's descriptor chains as
 * views of guest memory, checked (a malformed ring is a VirtqueueError), and returns them used.
 */
export class Virtqueue {
  /** The queue size (QueueNum), a power of two up to 32768. */
  readonly size: number;
  /** Where the rings are in guest memory. */
  readonly layout: QueueLayout;
  readonly #ram: GuestRam;
  readonly #desc: DataView;
  readonly #avail: DataView;
  readonly #used: DataView;
  /** avail.flags, avail.idx, used_event; used.idx, avail_event: the words both sides race on */
  readonly #availFlags: RingWord;
  readonly #availIdx: RingWord;
  readonly #usedEvent: RingWord;
  readonly #usedIdxWord: RingWord;
  readonly #availEvent: RingWord;
  readonly #eventIdx: boolean;
  readonly #indirect: boolean;
  readonly #maxChainBytes: number;
  readonly #maxDescriptorBytes: number;
  /** with GuestRam.wrote: the device-writable ranges of each chain popped, by head, until it is used */
  readonly #writableRanges: Map<number, number[]> | undefined;
  #lastAvail = 0;
  #usedIdx = 0;
  #signalledUsed = 0;

  /** Checks the layout (size a power of 2, alignment, every area inside RAM); throws VirtqueueError. */
  constructor(ram: GuestRam, layout: QueueLayout, opts?: VirtqueueOptions) {
    // the host's arguments: a wrong type is the caller's DeviceConfigError, a bad layout the guest's
    if (typeof ram !== "object" || ram === null || typeof ram.view !== "function") {
      throw new DeviceConfigError(
        "virtqueue",
        "ram",
        `must be guest RAM ({ view(gpa, length) }), got ${describeValue(ram)}`,
      );
    }
    if (layout === undefined) throw new DeviceConfigError("virtqueue", "layout", "is required");
    const l: DeviceOptionReader<QueueLayout> = new DeviceOptionReader("virtqueue", layout, "layout.");
    // only the type is the host's to get right: values come from the guest's registers (up to 2^64),
    // and a size or an address that does not fit is the guest's VirtqueueError below
    const field = (key: keyof QueueLayout): number => {
      const v = l.raw(key);
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
        l.fail(key, `must be a non-negative integer, got ${describeValue(v)}`);
      }
      return v;
    };
    const size = field("size");
    const desc = field("desc");
    const driver = field("driver");
    const device = field("device");
    const o: DeviceOptionReader<VirtqueueOptions> = new DeviceOptionReader("virtqueue", opts);
    const eventIdx = o.boolean("eventIdx", false);
    const indirect = o.boolean("indirect", false);
    const maxChainBytes = o.integer("maxChainBytes", TWO32 - 1, 0, Number.MAX_SAFE_INTEGER);
    const maxDescriptorBytes = o.get("maxDescriptorBytes", Number.POSITIVE_INFINITY);
    if (typeof maxDescriptorBytes !== "number" || !(maxDescriptorBytes >= 0)) {
      o.fail("maxDescriptorBytes", `must be a non-negative number, got ${describeValue(maxDescriptorBytes)}`);
    }
    if (!Number.isInteger(size) || size < 1 || size > VIRTQ_MAX_SIZE || (size & (size - 1)) !== 0) {
      throw new VirtqueueError(`queue size ${size} is not a power of 2 in 1-${VIRTQ_MAX_SIZE}`);
    }
    if (desc % 16 !== 0) throw new VirtqueueError(`descriptor table ${hex(desc)} is not 16-byte aligned`);
    if (driver % 2 !== 0) throw new VirtqueueError(`available ring ${hex(driver)} is not 2-byte aligned`);
    if (device % 4 !== 0) throw new VirtqueueError(`used ring ${hex(device)} is not 4-byte aligned`);
    this.size = size;
    this.layout = { size, desc, driver, device };
    this.#ram = ram;
    this.#desc = area(ram, "descriptor table", desc, DESC_BYTES * size);
    this.#avail = area(ram, "available ring", driver, 6 + 2 * size);
    this.#used = area(ram, "used ring", device, 6 + 8 * size);
    this.#availFlags = new RingWord(this.#avail, 0);
    this.#availIdx = new RingWord(this.#avail, 2);
    this.#usedEvent = new RingWord(this.#avail, 4 + 2 * size);
    this.#usedIdxWord = new RingWord(this.#used, 2);
    this.#availEvent = new RingWord(this.#used, 4 + 8 * size);
    this.#eventIdx = eventIdx;
    this.#indirect = indirect;
    this.#maxChainBytes = maxChainBytes;
    this.#maxDescriptorBytes = maxDescriptorBytes;
    this.#writableRanges = typeof ram.wrote === "function" ? new Map() : undefined;
  }

  /** the next available-ring index the device will read */
  get lastAvailIdx(): number {
    return this.#lastAvail;
  }

  /** the used ring's idx as the device last wrote it */
  get usedIdx(): number {
    return this.#usedIdx;
  }

  /** the used idx the last interrupt decision covered */
  get signalledUsedIdx(): number {
    return this.#signalledUsed;
  }

  /** Puts back the device's ring positions (snapshots): next available entry, used idx, signalled idx. */
  setIndexes(lastAvail: number, used: number, signalled = used): void {
    this.#lastAvail = lastAvail & 0xffff;
    this.#usedIdx = used & 0xffff;
    this.#signalledUsed = signalled & 0xffff;
  }

  /** chains the driver has made available and the device not yet taken */
  pending(): number {
    // the entries (and the descriptors they name) are read after this load, never before it
    const n = (this.#availIdx.load() - this.#lastAvail) & 0xffff;
    if (n > this.size) {
      throw new VirtqueueError(
        `available ring idx is ${n} entries ahead of the device, more than the queue size ${this.size}`,
      );
    }
    return n;
  }

  /** The next available chain, or undefined when the driver has made none available. */
  pop(): DescriptorChain | undefined {
    if (this.pending() === 0) return undefined;
    const head = this.#avail.getUint16(4 + 2 * (this.#lastAvail % this.size), true);
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    // avail_event: "notify me when you make entry lastAvail available", i.e. on every new chain
    // (a full barrier: the next pending() must not read avail.idx before the driver can see this,
    // or a chain the driver adds meanwhile goes unnotified and unseen)
    if (this.#eventIdx) {
      this.#availEvent.store(this.#lastAvail);
      this.#ram.ringWritten?.(this.layout.device + 4 + 8 * this.size, 2);
    }
    return this.#walk(head);
  }

  /** Returns a chain to the driver with the number of bytes written into its writable buffers. */
  push(head: number, written: number): void {
    const ranges = this.#writableRanges?.get(head);
    if (ranges) {
      this.#writableRanges!.delete(head);
      for (let k = 0; k < ranges.length; k += 2) this.#ram.wrote!(ranges[k]!, ranges[k + 1]!);
    }
    const slot = 4 + 8 * (this.#usedIdx % this.size);
    this.#used.setUint32(slot, head, true);
    this.#used.setUint32(slot + 4, written >>> 0, true);
    // the element is in place before idx moves: the driver reads idx first
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
    this.#usedIdxWord.store(this.#usedIdx);
    this.#ram.ringWritten?.(this.layout.device + 2, 2 + 8 * this.size);
  }

  /**
   * Whether the used entries pushed since the last call need an interrupt (the driver's
   * NO_INTERRUPT flag, or used_event with EVENT_IDX); they count as signalled either way.
   */
  takeInterrupt(): boolean {
    const now = this.#usedIdx;
    const old = this.#signalledUsed;
    if (now === old) return false;
    this.#signalledUsed = now;
    if (this.#eventIdx) {
      // read after the used idx store (a full barrier): virtio's mb() before vring_need_event()
      const event = this.#usedEvent.load();
      // vring_need_event(): the driver asked to hear about entry `event`, pushed within (old, now]
      return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    return (this.#availFlags.load() & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  #walk(head: number): DescriptorChain {
    if (head >= this.size) {
      throw new VirtqueueError(`chain head ${head} is outside the descriptor table (size ${this.size})`);
    }
    const chain: DescriptorChain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    let ranges: number[] | undefined;
    if (this.#writableRanges) {
      ranges = [];
      this.#writableRanges.set(head, ranges);
    }
    let table = this.#desc;
    let entries = this.size;
    let where = "descriptor";
    let i = head;
    let visited = 0;
    let nested = false;
    for (;;) {
      if (++visited > entries) {
        throw new VirtqueueError(`chain from head ${head} loops or is longer than its table (${entries})`);
      }
      const off = i * DESC_BYTES;
      const lo = table.getUint32(off, true);
      const hi = table.getUint32(off + 4, true);
      const addr = hi * TWO32 + lo;
      const len = table.getUint32(off + 8, true);
      const flags = table.getUint16(off + 12, true);
      const next = table.getUint16(off + 14, true);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.#indirect) {
          throw new VirtqueueError(`${where} ${i} is INDIRECT but VIRTIO_F_INDIRECT_DESC was not negotiated`);
        }
        if (nested) throw new VirtqueueError(`indirect descriptor ${i} inside an indirect table`);
        if (flags & VIRTQ_DESC_F_NEXT) throw new VirtqueueError(`${where} ${i} is both INDIRECT and NEXT`);
        if (len === 0 || len % DESC_BYTES !== 0) {
          throw new VirtqueueError(
            `indirect table length ${len} at ${where} ${i} is not a non-zero multiple of 16`,
          );
        }
        const v = this.#ram.view(addr, len);
        if (!v) throw new VirtqueueError(`indirect table [${hex(addr)}, +${hex(len)}) is not in RAM`);
        table = dataView(v);
        entries = len / DESC_BYTES;
        where = "indirect descriptor";
        i = 0;
        visited = 0;
        nested = true;
        continue;
      }
      if (len > this.#maxDescriptorBytes) {
        throw new VirtqueueError(
          `${where} ${i} is ${len} bytes, more than the ${this.#maxDescriptorBytes} allowed`,
        );
      }
      const buf = this.#ram.view(addr, len);
      if (!buf) throw new VirtqueueError(`${where} ${i}: buffer [${hex(addr)}, +${hex(len)}) is not in RAM`);
      if (flags & VIRTQ_DESC_F_WRITE) {
        if (ranges) ranges.push(addr, len);
        chain.writable.push(buf);
        chain.writableBytes += len;
      } else {
        if (chain.writable.length > 0) {
          throw new VirtqueueError(`${where} ${i} is device-readable after a device-writable one`);
        }
        chain.readable.push(buf);
        chain.readableBytes += len;
      }
      if (chain.readableBytes + chain.writableBytes > this.#maxChainBytes) {
        throw new VirtqueueError(`chain from head ${head} spans more than ${this.#maxChainBytes} bytes`);
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) return chain;
      if (next >= entries) {
        throw new VirtqueueError(`${where} ${i}: next ${next} is outside its table (${entries} entries)`);
      }
      i = next;
    }
  }
}

function area(ram: GuestRam, what: string, gpa: number, length: number): DataView {
  const v = ram.view(gpa, length);
  if (!v) throw new VirtqueueError(`${what} [${hex(gpa)}, +${hex(length)}) is not in RAM`);
  return dataView(v);
}
