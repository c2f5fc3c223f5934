// Hex encodings the protocol uses: byte strings as pairs of digits, register values as their
// little-endian bytes (x86 target byte order), numbers in packets as big-endian hex digits.

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** Parses pairs of hex digits; undefined when the text is not that. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  return Uint8Array.from(Buffer.from(text, "hex"));
}

/** A register value as `bits / 8` little-endian bytes in hex. */
export function leHex(value: bigint, bits: number): string {
  let v = BigInt.asUintN(bits, value);
  let out = "";
  for (let i = 0; i < bits / 8; i++) {
    out += Number(v & 0xffn)
      .toString(16)
      .padStart(2, "0");
    v >>= 8n;
  }
  return out;
}

/** Little-endian hex bytes back to a value. */
export function parseLeHex(text: string): bigint | undefined {
  const bytes = fromHex(text);
  if (!bytes) return undefined;
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}

/** A plain hex number as packets write addresses and lengths. */
export function parseHexNumber(text: string): bigint | undefined {
  return /^[0-9a-fA-F]+$/.test(text) ? BigInt(`0x${text}`) : undefined;
}
