// CRC-32 (IEEE 802.3, zlib's) of guest RAM in a snapshot: SHA-256 costs 13 ms on 20 MiB where
// zlib's CRC-32 costs 5, and a restore has 100 ms for everything. It guards against what damages
// files (bit flips, torn or cut writes: cut ones fail the length check first), not against
// someone who forges a snapshot, which a SHA-256 in the same file would not stop either.
// node:zlib has crc32() from Node 20.15 and 22.2; older Nodes get the table-driven one below.

import * as zlib from "node:zlib";

type Crc32 = (data: Uint8Array, value?: number) => number;

let table: Uint32Array | undefined;

/** the same function in JavaScript, one byte at a time */
export function crc32Js(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~value;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const native = (zlib as { crc32?: Crc32 }).crc32;

/** CRC-32 of `data`, continuing from `value` (the CRC of what came before) */
export const crc32: Crc32 = native ? (data, value = 0) => native(data, value) : crc32Js;

/** as the header writes it: 8 hex digits */
export const crc32Hex = (value: number): string => value.toString(16).padStart(8, "0");
