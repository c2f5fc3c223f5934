// virtio-blk (device ID 2) over a disk image: one request queue; read, write, flush (fsync), get-id,
// discard and write-zeroes (both write zeroes: the guest reads zeroes after either). Each notify
// completes every available request in ring order, synchronously. Writes are durable once a FLUSH
// completes; when the driver did not negotiate VIRTIO_BLK_F_FLUSH every write is flushed before it
// completes (the spec's write-through case). A read-only drive offers VIRTIO_BLK_F_RO and answers
// writes with IOERR, writing nothing.

import { basename } from "node:path";
import { describeValue } from "../../types/describe-value.js";
import { DeviceConfigError } from "../errors.js";
import { DeviceOptionReader } from "../options.js";
import { gather, scatter, slices } from "./buffers.js";
import { type BlockImage, openDiskImage } from "./disk-image.js";
import { dataView } from "./guest-ram.js";
import { featureBit, VirtioMmioDevice, type VirtioMmioOptions } from "./mmio-transport.js";
import { type DescriptorChain, type Virtqueue, VirtqueueError } from "./queue.js";

export const VIRTIO_ID_BLOCK = 2;

export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

export const VIRTIO_BLK_ID_BYTES = 20;
export const BLK_SECTOR = 512;
const HEADER = 16;
const SEGMENT = 16;
const WRITE_ZEROES_UNMAP = 1;

/** size_max: the largest single data buffer (descriptor) the driver may use */
export const BLK_SIZE_MAX = 1 << 20;
/** per discard / write-zeroes segment, and segments per request: bounds the zeroes one request writes */
export const BLK_MAX_DISCARD_SECTORS = 8192;
export const BLK_MAX_DISCARD_SEGMENTS = 8;
const ZEROES = new Uint8Array(1 << 20);

/** Options of {@link VirtioBlk}: the transport's (base, irq, memory) plus the disk. */
export interface VirtioBlkOptions extends VirtioMmioOptions {
  /** the disk image file (raw); or give `image` */
  path?: string;
  /** an already open image (tests, other stores); the device closes it on close() */
  image?: BlockImage;
  /** offer VIRTIO_BLK_F_RO; writes then fail with IOERR. Default false (true when `image` is readonly) */
  readonly?: boolean;
  /** the ID string VIRTIO_BLK_T_GET_ID returns (ASCII, at most 20 bytes); default: the file's name */
  serial?: string;
  /** QueueNumMax; default 256 */
  queueSize?: number;
}

/**
 * virtio-blk (device ID 2) over a raw disk image: read, write, flush (fsync), get-id, discard and
 * write-zeroes, completed synchronously at each notify. A read-only drive answers writes with IOERR.
 */
export class VirtioBlk extends VirtioMmioDevice {
  /** Whether the drive is read-only (VIRTIO_BLK_F_RO offered). */
  readonly readonly: boolean;
  /** capacity in 512-byte sectors */
  readonly sectors: number;
  /** The ID string VIRTIO_BLK_T_GET_ID returns. */
  readonly serial: string;
  readonly #image: BlockImage;
  readonly #config: Uint8Array;
  readonly #segMax: number;
  readonly #id: Uint8Array;

  constructor(opts: VirtioBlkOptions) {
    // every option is checked before the transport is set up or the file opened
    const o = new DeviceOptionReader<VirtioBlkOptions>("virtio-blk", opts);
    const path = o.string("path");
    const image = o.raw("image") as Partial<BlockImage> | null | undefined;
    if (image !== undefined) {
      const methods = ["read", "write", "flush", "close"] as const;
      if (
        typeof image !== "object" ||
        image === null ||
        typeof image.size !== "number" ||
        !Number.isSafeInteger(image.size) ||
        image.size < 0 ||
        methods.some((m) => typeof image[m] !== "function")
      ) {
        o.fail(
          "image",
          `must be a BlockImage (size, read, write, flush, close), got ${describeValue(image)}`,
        );
      }
    }
    const readonly = o.boolean("readonly", false) || image?.readonly === true;
    const queueSize = o.integer("queueSize", 256, 1, 2 ** 15);
    let features =
      featureBit(VIRTIO_BLK_F_SIZE_MAX) | featureBit(VIRTIO_BLK_F_SEG_MAX) | featureBit(VIRTIO_BLK_F_FLUSH);
    features |= readonly
      ? featureBit(VIRTIO_BLK_F_RO)
      : featureBit(VIRTIO_BLK_F_DISCARD) | featureBit(VIRTIO_BLK_F_WRITE_ZEROES);
    super({ kind: "virtio-blk", deviceId: VIRTIO_ID_BLOCK, features, queueSizes: [queueSize] }, opts);
    const serial = o.string("serial") ?? defaultSerial(path);
    if (!/^[\x20-\x7e]*$/.test(serial) || serial.length > VIRTIO_BLK_ID_BYTES) {
      throw new DeviceConfigError(
        "virtio-blk",
        "serial",
        `${JSON.stringify(serial)} is not at most 20 printable ASCII characters`,
      );
    }
    // opened last: nothing after this throws, so the file is never left open by a failed constructor
    this.#image = (image as BlockImage | undefined) ?? openDiskImage(path as string, { readonly });
    this.readonly = readonly;
    this.sectors = Math.floor(this.#image.size / BLK_SECTOR);
    // seg_max leaves room for the header and status descriptors in a direct chain
    this.#segMax = Math.max(1, queueSize - 2);
    this.serial = serial;
    this.#id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    for (let i = 0; i < serial.length; i++) this.#id[i] = serial.charCodeAt(i);
    this.#config = this.#buildConfig();
  }

  #buildConfig(): Uint8Array {
    const cfg = new Uint8Array(60);
    const v = dataView(cfg);
    v.setBigUint64(0, BigInt(this.sectors), true); // capacity
    v.setUint32(8, BLK_SIZE_MAX, true); // size_max
    v.setUint32(12, this.#segMax, true); // seg_max
    v.setUint32(36, BLK_MAX_DISCARD_SECTORS, true); // max_discard_sectors
    v.setUint32(40, BLK_MAX_DISCARD_SEGMENTS, true); // max_discard_seg
    v.setUint32(44, 1, true); // discard_sector_alignment
    v.setUint32(48, BLK_MAX_DISCARD_SECTORS, true); // max_write_zeroes_sectors
    v.setUint32(52, BLK_MAX_DISCARD_SEGMENTS, true); // max_write_zeroes_seg
    cfg[56] = 0; // write_zeroes_may_unmap: zeroes are written, never deallocated
    return cfg;
  }

  /** {@inheritDoc VirtioMmioDevice.configSpace} */
  protected configSpace(): Uint8Array {
    return this.#config;
  }

  /** {@inheritDoc VirtioMmioDevice.queueLimits} */
  protected override queueLimits(): { maxChainBytes: number; maxDescriptorBytes: number } {
    return { maxChainBytes: (this.#segMax + 2) * BLK_SIZE_MAX, maxDescriptorBytes: BLK_SIZE_MAX };
  }

  /** {@inheritDoc VirtioMmioDevice.handleQueue} */
  protected handleQueue(_index: number, queue: Virtqueue): void {
    for (let chain = queue.pop(); chain; chain = queue.pop()) queue.push(chain.head, this.#request(chain));
  }

  /** Closes the disk image. Call it when the machine is done with the device. */
  close(): void {
    this.#image.close();
  }

  /** Serves one request; returns the bytes written into its writable buffers (data + status). */
  #request(c: DescriptorChain): number {
    if (c.readableBytes < HEADER) {
      throw new VirtqueueError(
        `request ${c.head}: ${c.readableBytes} device-readable bytes, less than the 16-byte header`,
      );
    }
    if (c.writableBytes < 1) throw new VirtqueueError(`request ${c.head}: no device-writable status byte`);
    const hdr = dataView(gather(c.readable, 0, HEADER));
    const type = hdr.getUint32(0, true);
    const sector = hdr.getUint32(8, true) + hdr.getUint32(12, true) * 2 ** 32;
    const dataIn = c.writableBytes - 1; // writable bytes before the status byte
    const dataOut = c.readableBytes - HEADER; // readable bytes after the header
    const done = (status: number, written = 0): number => {
      scatter(c.writable, dataIn, Uint8Array.of(status));
      return written + 1;
    };
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        if (dataOut > 0)
          throw new VirtqueueError(`read request ${c.head} has ${dataOut} device-readable data bytes`);
        if (!this.#inRange(sector, dataIn)) return done(VIRTIO_BLK_S_IOERR);
        let pos = sector * BLK_SECTOR;
        try {
          for (const v of slices(c.writable, 0, dataIn)) {
            this.#image.read(v, pos);
            pos += v.length;
          }
        } catch {
          return done(VIRTIO_BLK_S_IOERR);
        }
        return done(VIRTIO_BLK_S_OK, dataIn);
      }
      case VIRTIO_BLK_T_OUT: {
        if (dataIn > 0)
          throw new VirtqueueError(`write request ${c.head} has ${dataIn} device-writable data bytes`);
        if (this.readonly || !this.#inRange(sector, dataOut)) return done(VIRTIO_BLK_S_IOERR);
        let pos = sector * BLK_SECTOR;
        try {
          for (const v of slices(c.readable, HEADER, dataOut)) {
            this.#image.write(v, pos);
            pos += v.length;
          }
          this.#writeThrough();
        } catch {
          return done(VIRTIO_BLK_S_IOERR);
        }
        return done(VIRTIO_BLK_S_OK);
      }
      case VIRTIO_BLK_T_FLUSH:
        try {
          this.#image.flush();
        } catch {
          return done(VIRTIO_BLK_S_IOERR);
        }
        return done(VIRTIO_BLK_S_OK);
      case VIRTIO_BLK_T_GET_ID: {
        const n = scatter(c.writable, 0, this.#id.subarray(0, Math.min(VIRTIO_BLK_ID_BYTES, dataIn)));
        return done(VIRTIO_BLK_S_OK, n);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        if (this.readonly) return done(VIRTIO_BLK_S_UNSUPP);
        return done(this.#zeroes(type, gather(c.readable, HEADER, dataOut)));
      default:
        return done(VIRTIO_BLK_S_UNSUPP);
    }
  }

  /** whole sectors, inside the disk */
  #inRange(sector: number, bytes: number): boolean {
    if (bytes % BLK_SECTOR !== 0) return false;
    return sector <= this.sectors && bytes / BLK_SECTOR <= this.sectors - sector;
  }

  /** durability without FLUSH negotiated: the write is stable when it completes */
  #writeThrough(): void {
    if (!this.negotiated(VIRTIO_BLK_F_FLUSH)) this.#image.flush();
  }

  #zeroes(type: number, segs: Uint8Array): number {
    if (
      segs.length === 0 ||
      segs.length % SEGMENT !== 0 ||
      segs.length / SEGMENT > BLK_MAX_DISCARD_SEGMENTS
    ) {
      return VIRTIO_BLK_S_IOERR;
    }
    const v = dataView(segs);
    const ranges: [number, number][] = [];
    for (let off = 0; off < segs.length; off += SEGMENT) {
      const sector = v.getUint32(off, true) + v.getUint32(off + 4, true) * 2 ** 32;
      const count = v.getUint32(off + 8, true);
      const flags = v.getUint32(off + 12, true);
      // discard has no flags; write-zeroes only unmap (which may be ignored: zeroes are written)
      const known = type === VIRTIO_BLK_T_WRITE_ZEROES ? WRITE_ZEROES_UNMAP : 0;
      if ((flags & ~known) !== 0) return VIRTIO_BLK_S_UNSUPP;
      if (count > BLK_MAX_DISCARD_SECTORS || !this.#inRange(sector, count * BLK_SECTOR))
        return VIRTIO_BLK_S_IOERR;
      ranges.push([sector * BLK_SECTOR, count * BLK_SECTOR]);
    }
    try {
      for (const [start, length] of ranges) {
        for (let done = 0; done < length; done += ZEROES.length) {
          this.#image.write(ZEROES.subarray(0, Math.min(ZEROES.length, length - done)), start + done);
        }
      }
      this.#writeThrough();
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
  }
}

/** the image's file name, as printable ASCII, cut to the 20 bytes GET_ID returns */
function defaultSerial(path: string | undefined): string {
  if (!path) return "nodevmm";
  return basename(path)
    .replace(/[^\x20-\x7e]/g, "_")
    .slice(0, VIRTIO_BLK_ID_BYTES);
}
