// Framing of the GDB remote serial protocol: `$payload#cs` with a modulo-256 checksum, the '}'
// escape (byte ^ 0x20) for '#', '$', '}' and '*', '+'/'-' acknowledgements, and the out-of-band
// 0x03 byte gdb sends to interrupt a running target. Our replies are never run-length encoded.

const DOLLAR = 0x24;
const HASH = 0x23;
const ESCAPE = 0x7d;
const STAR = 0x2a;
const PLUS = 0x2b;
const MINUS = 0x2d;
export const INTERRUPT = 0x03;

/** Sum of the bytes modulo 256, as two lowercase hex digits. */
export function checksum(payload: Uint8Array): string {
  let sum = 0;
  for (const b of payload) sum = (sum + b) & 0xff;
  return sum.toString(16).padStart(2, "0");
}

/** Escapes the bytes the protocol reserves; used for binary payloads (qXfer data, X packets). */
export function escapeBinary(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (const b of data) {
    if (b === HASH || b === DOLLAR || b === ESCAPE || b === STAR) out.push(ESCAPE, b ^ 0x20);
    else out.push(b);
  }
  return Uint8Array.from(out);
}

/** Undoes escapeBinary (gdb escapes the binary data of X packets). */
export function unescapeBinary(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length);
  let n = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === ESCAPE && i + 1 < data.length) out[n++] = data[++i]! ^ 0x20;
    else out[n++] = b;
  }
  return out.subarray(0, n);
}

/** `$payload#cs`, the payload escaped where it holds reserved bytes. */
export function framePacket(payload: Uint8Array | string): Uint8Array {
  const raw = typeof payload === "string" ? Buffer.from(payload, "latin1") : payload;
  const body = escapeBinary(raw);
  const cs = Buffer.from(`#${checksum(body)}`, "latin1");
  const out = new Uint8Array(body.length + 4);
  out[0] = DOLLAR;
  out.set(body, 1);
  out.set(cs, body.length + 1);
  return out;
}

/** What the byte stream from gdb carries, in order. */
export type Incoming =
  | { kind: "packet"; payload: Uint8Array }
  /** a packet whose checksum did not match (answered with '-' when acks are on) */
  | { kind: "bad-checksum" }
  | { kind: "ack" }
  | { kind: "nack" }
  | { kind: "interrupt" };

/**
 * Splits the byte stream into packets, acks and interrupts. Bytes outside a packet other than
 * '+', '-' and 0x03 are line noise and dropped, as gdbserver does. The payload keeps its escapes:
 * only X packets carry binary data, and only they are unescaped (after the command is known).
 */
export class PacketReader {
  #inPacket = false;
  #body: number[] = [];
  #checksum: number[] | undefined;

  push(chunk: Uint8Array): Incoming[] {
    const out: Incoming[] = [];
    for (const b of chunk) {
      if (this.#checksum) {
        this.#checksum.push(b);
        if (this.#checksum.length === 2) {
          const got = Number.parseInt(String.fromCharCode(...this.#checksum), 16);
          const payload = Uint8Array.from(this.#body);
          out.push(
            got === Number.parseInt(checksum(payload), 16)
              ? { kind: "packet", payload }
              : { kind: "bad-checksum" },
          );
          this.#checksum = undefined;
          this.#inPacket = false;
          this.#body = [];
        }
      } else if (this.#inPacket) {
        if (b === HASH) this.#checksum = [];
        else if (b === DOLLAR)
          this.#body = []; // a new start: the partial packet was lost
        else this.#body.push(b);
      } else if (b === DOLLAR) {
        this.#inPacket = true;
        this.#body = [];
      } else if (b === PLUS) out.push({ kind: "ack" });
      else if (b === MINUS) out.push({ kind: "nack" });
      else if (b === INTERRUPT) out.push({ kind: "interrupt" });
    }
    return out;
  }
}
