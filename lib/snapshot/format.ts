// The snapshot file: a fixed preamble (magic, format version), a JSON header naming the sections
// with their lengths and SHA-256 sums, then the sections' bytes in that order. Everything is checked
// before anything is used, so a truncated or corrupt file is a SnapshotError naming the part at
// fault, never a machine half restored.
//
//   0   8 bytes  "NVMMSNAP"
//   8   u32 LE   format version (FORMAT_VERSION)
//   12  u32 LE   header length H
//   16  H bytes  header JSON: { nodevmm, backend, createdAt, sections: [{ name, length, sha256 }] }
//   16+H 32 bytes SHA-256 of the header JSON
//   ...          the sections, back to back

import { createHash } from "node:crypto";
import { SnapshotError, type SnapshotSection } from "./errors.js";
import { fromJson, toJson } from "./json.js";

export const MAGIC = "NVMMSNAP";
export const FORMAT_VERSION = 1;
const PREAMBLE = 16;
const SUM = 32;

export interface SnapshotHeader {
  /** nodevmm version that wrote the file */
  nodevmm: string;
  /** backend the machine ran on when saved ("kvm" | "soft") */
  backend: string;
  createdAt: string;
  sections: { name: string; length: number; sha256: string }[];
}

export interface Container {
  header: SnapshotHeader;
  sections: Map<string, Uint8Array>;
}

const sha256 = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();

export function encodeContainer(
  meta: Omit<SnapshotHeader, "sections">,
  sections: readonly [string, Uint8Array][],
): Buffer {
  const header: SnapshotHeader = {
    ...meta,
    sections: sections.map(([name, bytes]) => ({
      name,
      length: bytes.length,
      sha256: sha256(bytes).toString("hex"),
    })),
  };
  const headerBytes = Buffer.from(toJson(header), "utf8");
  const pre = Buffer.alloc(PREAMBLE);
  pre.write(MAGIC, 0, "latin1");
  pre.writeUInt32LE(FORMAT_VERSION, 8);
  pre.writeUInt32LE(headerBytes.length, 12);
  return Buffer.concat([pre, headerBytes, sha256(headerBytes), ...sections.map(([, b]) => b)]);
}

export function decodeContainer(file: Uint8Array): Container {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (buf.length < PREAMBLE) {
    throw new SnapshotError("file", `truncated: ${buf.length} bytes, the preamble alone is ${PREAMBLE}`);
  }
  const magic = buf.toString("latin1", 0, 8);
  if (magic !== MAGIC) {
    throw new SnapshotError(
      "file",
      `not a nodevmm snapshot (magic ${JSON.stringify(magic)}, want "${MAGIC}")`,
    );
  }
  const version = buf.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    throw new SnapshotError(
      "header",
      `format version ${version}; this nodevmm reads version ${FORMAT_VERSION}`,
    );
  }
  const headerLength = buf.readUInt32LE(12);
  const headerEnd = PREAMBLE + headerLength;
  if (buf.length < headerEnd + SUM) {
    throw new SnapshotError(
      "header",
      `truncated: the file ends before the ${headerLength}-byte header and its checksum`,
    );
  }
  const headerBytes = buf.subarray(PREAMBLE, headerEnd);
  if (!sha256(headerBytes).equals(buf.subarray(headerEnd, headerEnd + SUM))) {
    throw new SnapshotError("header", "checksum mismatch: the header is corrupt");
  }
  let header: SnapshotHeader;
  try {
    header = fromJson(headerBytes.toString("utf8")) as SnapshotHeader;
  } catch (e) {
    throw new SnapshotError("header", `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!header || !Array.isArray(header.sections) || typeof header.backend !== "string") {
    throw new SnapshotError("header", "missing the section table or the backend name");
  }
  const sections = new Map<string, Uint8Array>();
  let at = headerEnd + SUM;
  for (const s of header.sections) {
    const name = String(s?.name) as SnapshotSection;
    if (!Number.isSafeInteger(s?.length) || s.length < 0) {
      throw new SnapshotError("header", `section ${name} has no valid length`);
    }
    if (at + s.length > buf.length) {
      throw new SnapshotError(
        name,
        `truncated: the section needs ${s.length} bytes at offset ${at}, the file has ${buf.length - at}`,
      );
    }
    const bytes = buf.subarray(at, at + s.length);
    if (sha256(bytes).toString("hex") !== s.sha256) {
      throw new SnapshotError(name, "checksum mismatch: the section is corrupt");
    }
    sections.set(name, bytes);
    at += s.length;
  }
  if (at !== buf.length) {
    throw new SnapshotError("file", `${buf.length - at} bytes after the last section`);
  }
  return { header, sections };
}

/** A JSON section, or a SnapshotError naming it when it is missing or unreadable. */
export function jsonSection(c: Container, name: SnapshotSection): unknown {
  const bytes = c.sections.get(name);
  if (!bytes) throw new SnapshotError(name, "section missing");
  try {
    return fromJson(Buffer.from(bytes).toString("utf8"));
  } catch (e) {
    throw new SnapshotError(name, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

export const jsonBytes = (value: unknown): Uint8Array => Buffer.from(toJson(value), "utf8");
