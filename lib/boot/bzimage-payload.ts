// The compressed vmlinux inside a bzImage. Since boot protocol 2.08 the setup header records where it
// sits: payload_offset (from the start of the protected-mode kernel) and payload_length. The format
// is told by its magic, as the kernel's own scripts/extract-vmlinux does. Every format but gzip has
// the decompressed size appended as 4 bytes (LE) after the stream (arch/x86/boot/compressed/Makefile,
// *_with_size); for gzip those 4 bytes are the stream's own ISIZE field. mkpiggy reads them either way.

import type { LinuxSetupHeader } from "./linux-header.js";

/** The compression of a bzImage's payload (the kernel build's CONFIG_KERNEL_* choice). */
export type PayloadFormat = "gzip" | "xz" | "zstd" | "lzma" | "bzip2" | "lz4" | "lzo";

/** Magic numbers at the start of each compressor's output (the kernel's extract-vmlinux list). */
export const PAYLOAD_MAGICS: readonly { format: PayloadFormat; bytes: readonly number[] }[] = [
  { format: "gzip", bytes: [0x1f, 0x8b] },
  { format: "xz", bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { format: "zstd", bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  // lzma_alone: properties byte 0x5d (lc=3 lp=0 pb=2), then a dictionary size whose low bytes are 0
  { format: "lzma", bytes: [0x5d, 0x00, 0x00] },
  { format: "bzip2", bytes: [0x42, 0x5a, 0x68] },
  // the legacy LZ4 frame the kernel writes (lz4 -l)
  { format: "lz4", bytes: [0x02, 0x21, 0x4c, 0x18] },
  { format: "lzo", bytes: [0x89, 0x4c, 0x5a, 0x4f] },
];

/** The compression format of `data`, by its magic, or undefined. */
export function payloadFormat(data: Uint8Array): PayloadFormat | undefined {
  return PAYLOAD_MAGICS.find((m) => m.bytes.every((b, i) => data[i] === b))?.format;
}

export interface BzImagePayload {
  format: PayloadFormat;
  /** the whole payload, as payload_length counts it (the appended size included) */
  data: Uint8Array;
  /** the compressed stream alone: `data` less the appended size for formats that have one */
  stream: Uint8Array;
  /** file offset of the payload */
  fileOffset: number;
  /** the decompressed size the kernel recorded (its last 4 bytes), modulo 2^32 */
  decompressedSize: number;
}

export type PayloadLookup = { ok: true; payload: BzImagePayload } | { ok: false; reason: string };

const PAYLOAD_OFFSET = 0x248;
const PAYLOAD_LENGTH = 0x24c;
const SIZE_TRAILER = 4;

/** Finds the compressed kernel; a bzImage without a usable one gives the reason, not an error. */
export function findBzImagePayload(image: Uint8Array, h: LinuxSetupHeader): PayloadLookup {
  if (h.version < 0x0208) {
    return { ok: false, reason: "boot protocol older than 2.08 does not say where the payload is" };
  }
  if (h.headerEnd < PAYLOAD_LENGTH + 4) {
    return { ok: false, reason: "the setup header ends before payload_length" };
  }
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const offset = dv.getUint32(PAYLOAD_OFFSET, true);
  const length = dv.getUint32(PAYLOAD_LENGTH, true);
  if (length === 0) return { ok: false, reason: "payload_length is 0: no compressed kernel recorded" };
  const start = h.setupSize + offset;
  if (start + length > image.length) {
    return {
      ok: false,
      reason: `the payload [0x${start.toString(16)}, 0x${(start + length).toString(16)}) runs past the end of the file`,
    };
  }
  const data = image.subarray(start, start + length);
  const format = payloadFormat(data);
  if (!format) {
    const head = Array.from(data.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(" ");
    return { ok: false, reason: `the payload's compression is not one this loader knows (starts ${head})` };
  }
  if (length <= SIZE_TRAILER) return { ok: false, reason: `the ${format} payload is only ${length} bytes` };
  const decompressedSize = dv.getUint32(start + length - SIZE_TRAILER, true);
  const stream = format === "gzip" ? data : data.subarray(0, length - SIZE_TRAILER);
  return { ok: true, payload: { format, data, stream, fileOffset: start, decompressedSize } };
}
