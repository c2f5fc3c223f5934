// virtio-rng (device ID 4, "entropy device"): one request queue of device-writable buffers, each
// filled with random bytes from the host (crypto.randomFillSync unless a source is given).

import { randomFillSync } from "node:crypto";
import { DeviceOptionReader } from "../options.js";
import { VirtioMmioDevice, type VirtioMmioOptions } from "./mmio-transport.js";
import { type Virtqueue, VirtqueueError } from "./queue.js";

export const VIRTIO_ID_ENTROPY = 4;
/** bytes one request gets at most; the driver asks again for more */
export const RNG_MAX_REQUEST = 64 * 1024;

/** Options of {@link VirtioRng}: the transport's (base, irq, memory) plus the entropy source. */
export interface VirtioRngOptions extends VirtioMmioOptions {
  /** fills a buffer with random bytes; default crypto.randomFillSync */
  source?: (into: Uint8Array) => void;
  /** QueueNumMax; default 256 */
  queueSize?: number;
}

/** virtio-rng (device ID 4): fills each buffer the guest posts with random bytes from the host. */
export class VirtioRng extends VirtioMmioDevice {
  readonly #source: (into: Uint8Array) => void;
  /** random bytes handed to the guest so far */
  bytesProvided = 0;

  constructor(opts: VirtioRngOptions) {
    const o = new DeviceOptionReader<VirtioRngOptions>("virtio-rng", opts);
    const queueSize = o.integer("queueSize", 256, 1, 2 ** 15);
    const source = o.callback<(into: Uint8Array) => void>("source");
    super({ kind: "virtio-rng", deviceId: VIRTIO_ID_ENTROPY, features: 0n, queueSizes: [queueSize] }, opts);
    this.#source = source ?? ((b) => void randomFillSync(b));
  }

  /** {@inheritDoc VirtioMmioDevice.configSpace} */
  protected configSpace(): Uint8Array {
    return EMPTY;
  }

  /** {@inheritDoc VirtioMmioDevice.handleQueue} */
  protected handleQueue(_index: number, queue: Virtqueue): void {
    for (let c = queue.pop(); c; c = queue.pop()) {
      if (c.readableBytes > 0) {
        throw new VirtqueueError(`request ${c.head} has ${c.readableBytes} device-readable bytes`);
      }
      let left = RNG_MAX_REQUEST;
      let written = 0;
      for (const b of c.writable) {
        if (left === 0) break;
        const part = b.subarray(0, Math.min(b.length, left));
        this.#source(part);
        written += part.length;
        left -= part.length;
      }
      this.bytesProvided += written;
      queue.push(c.head, written);
    }
  }
}

const EMPTY = new Uint8Array(0);
