// virtio-console (device ID 3) with its single port 0 (no MULTIPORT): the guest's transmitq goes to
// a ByteOutput, and host input given to receive() waits in a small buffer until the guest posts
// receiveq buffers. Linux names it hvc0. EMERG_WRITE is offered: a byte written to config offset 8
// goes straight to the output (early or emergency output without queues).

import { DeviceOptionReader } from "../options.js";
import { type ByteOutput, type ByteSink, byteSink } from "../output.js";
import { gather, scatter } from "./buffers.js";
import {
  featureBit,
  VirtioMmioDevice,
  type VirtioMmioOptions,
  type VirtioMmioSnapshot,
} from "./mmio-transport.js";
import { type Virtqueue, VirtqueueError } from "./queue.js";

export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2;
export const CONSOLE_RECEIVEQ = 0;
export const CONSOLE_TRANSMITQ = 1;
const EMERG_WR = 8;

/** Options of {@link VirtioConsole}: the transport's (base, irq, memory) plus the console's. */
export interface VirtioConsoleOptions extends VirtioMmioOptions {
  /** where the guest's output goes; default: discard */
  output?: ByteOutput;
  /** called when input space frees up after receive() refused bytes (resume host input) */
  onInputSpace?: () => void;
  /** bytes of host input held until the guest takes them; default 4096 */
  inputBuffer?: number;
  /** QueueNumMax of both queues; default 256 */
  queueSize?: number;
}

/** {@link VirtioConsole}'s saved state: the transport's plus pending host input. */
export interface VirtioConsoleSnapshot extends VirtioMmioSnapshot {
  /** host input the guest has not taken */
  input: number[];
}

/**
 * virtio-console (device ID 3) with a single port (Linux's hvc0): the guest's output goes to `output`; host
 * input given to receive() waits until the guest posts receive buffers.
 */
export class VirtioConsole extends VirtioMmioDevice {
  readonly #sink: ByteSink;
  readonly #onInputSpace: (() => void) | undefined;
  readonly #pending: Uint8Array;
  readonly #config = new Uint8Array(12);
  #pendingLength = 0;
  #refused = false;
  /** bytes the guest wrote (transmitq and emergency writes) */
  bytesWritten = 0;

  constructor(opts: VirtioConsoleOptions) {
    const o = new DeviceOptionReader<VirtioConsoleOptions>("virtio-console", opts);
    const queueSize = o.integer("queueSize", 256, 1, 2 ** 15);
    const size = o.integer("inputBuffer", 4096, 1, 1 << 24);
    const onInputSpace = o.callback<() => void>("onInputSpace");
    const output = o.output("output");
    super(
      {
        kind: "virtio-console",
        deviceId: VIRTIO_ID_CONSOLE,
        features: featureBit(VIRTIO_CONSOLE_F_EMERG_WRITE),
        queueSizes: [queueSize, queueSize],
      },
      opts,
    );
    this.#pending = new Uint8Array(size);
    this.#onInputSpace = onInputSpace;
    this.#sink = byteSink(output);
  }

  /**
   * Host input for the guest. Returns how many bytes were taken (all unless the input buffer is
   * full); offer the rest again after onInputSpace fires.
   */
  receive(bytes: Uint8Array | readonly number[]): number {
    const n = Math.min(bytes.length, this.#pending.length - this.#pendingLength);
    for (let i = 0; i < n; i++) this.#pending[this.#pendingLength + i] = bytes[i]! & 0xff;
    this.#pendingLength += n;
    if (n < bytes.length) this.#refused = true;
    this.service(CONSOLE_RECEIVEQ);
    return n;
  }

  /** bytes receive() can take now */
  get inputSpace(): number {
    return this.#pending.length - this.#pendingLength;
  }

  /** host input the guest has not taken yet */
  get inputPending(): number {
    return this.#pendingLength;
  }

  /** {@inheritDoc VirtioMmioDevice.configSpace} */
  protected configSpace(): Uint8Array {
    return this.#config;
  }

  /** {@inheritDoc VirtioMmioDevice.writeConfig} */
  protected override writeConfig(offset: number, _size: number, value: number): void {
    if (offset !== EMERG_WR) return;
    this.bytesWritten++;
    this.#sink.write(Uint8Array.of(value & 0xff));
  }

  /** {@inheritDoc VirtioMmioDevice.handleQueue} */
  protected handleQueue(index: number, queue: Virtqueue): void {
    if (index === CONSOLE_TRANSMITQ) this.#transmit(queue);
    else if (index === CONSOLE_RECEIVEQ) this.#fill(queue);
  }

  #transmit(queue: Virtqueue): void {
    for (let c = queue.pop(); c; c = queue.pop()) {
      if (c.writableBytes > 0) {
        throw new VirtqueueError(`transmitq chain ${c.head} has ${c.writableBytes} device-writable bytes`);
      }
      // a copy: the sink may keep the bytes (a stream's write) after the guest reuses the buffer
      const bytes = gather(c.readable, 0, c.readableBytes);
      this.bytesWritten += bytes.length;
      if (bytes.length > 0) this.#sink.write(bytes);
      queue.push(c.head, 0);
    }
  }

  #fill(queue: Virtqueue): void {
    const before = this.#pendingLength;
    while (this.#pendingLength > 0) {
      const c = queue.pop();
      if (!c) break;
      if (c.readableBytes > 0) {
        throw new VirtqueueError(`receiveq chain ${c.head} has ${c.readableBytes} device-readable bytes`);
      }
      const n = scatter(c.writable, 0, this.#pending.subarray(0, this.#pendingLength));
      this.#pending.copyWithin(0, n, this.#pendingLength);
      this.#pendingLength -= n;
      queue.push(c.head, n);
    }
    if (this.#pendingLength < before && this.#refused) {
      this.#refused = false;
      this.#onInputSpace?.();
    }
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  override snapshot(): VirtioConsoleSnapshot {
    return { ...super.snapshot(), input: [...this.#pending.subarray(0, this.#pendingLength)] };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  override restore(s: VirtioConsoleSnapshot): void {
    const input = (s.input ?? []).slice(0, this.#pending.length);
    this.#pending.set(input.map((b) => b & 0xff));
    this.#pendingLength = input.length;
    super.restore(s);
  }

  /** Closes the output when the device opened it (a file path); streams you passed stay open. */
  close(): void {
    this.#sink.close();
  }
}
