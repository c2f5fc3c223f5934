// The snapshot file: a fixed preamble (magic, format version), a JSON header naming the sections
// with their lengths and checksums, then the sections' bytes in that order. Every sum is checked
// before the bytes are used (a file's RAM as it is read into a machine made for the restore, which
// is closed if they do not match: file.ts), so a truncated or corrupt file is a SnapshotError
// naming the part at fault, never a machine half restored.
//
//   0   8 bytes  "NVMMSNAP"
//   8   u32 LE   format version (FORMAT_VERSION; READABLE_VERSIONS are read)
//   12  u32 LE   header length H
//   16  H bytes  header JSON: { nodevmm, backend, createdAt, sections: [{ name, length, sha256 }] }
//                (version 2: a section may have crc32, 8 hex digits, instead of sha256: RAM does;
//                version 3: also base: { id, file }, the snapshot it is incremental on)
//   16+H 32 bytes SHA-256 of the header JSON
//   ...          the sections, back to back
//
// Version 2 (current) keeps RAM as "memory-map" and raw "memory" sections, the latter last so a
// restore reads it straight into place (memory.ts); version 1 had one deflated "memory" section
// (memory-v1.ts). Version 3 is version 2 whose RAM sections hold only the pages written since its
// base (incremental snapshots, chain.ts); full snapshots are still written as version 2. The
// container is the same in all three. A file's id is the SHA-256 of its header.

import { createHash } from "node:crypto";
import { crc32, crc32Hex } from "./crc32.js";
import { SnapshotError, type SnapshotSection } from "./errors.js";
import { fromJson, toJson } from "./json.js";

export const MAGIC = "NVMMSNAP";
/** the version of a full snapshot (what vm.snapshot(path) writes) */
export const FORMAT_VERSION = 2;
/**
 * An incremental snapshot's version: version 2 with `base` in the header. Its own number, so that a
 * nodevmm that knows no bases refuses it instead of restoring its few pages as all of RAM.
 */
export const INCREMENTAL_VERSION = 3;
/** versions this nodevmm restores */
export const READABLE_VERSIONS: readonly number[] = [1, 2, 3];

/** The snapshot an incremental one applies on top of (header field `base`, version 3). */
export interface SnapshotBase {
  /** the base file's id: the SHA-256 of its header (hex), which covers every section's checksum */
  id: string;
  /** where the base was when this one was written, relative to this file's folder */
  file: string;
}
export const PREAMBLE = 16;
export const SUM = 32;

export interface SnapshotHeader {
  /** nodevmm version that wrote the file */
  nodevmm: string;
  /** backend the machine ran on when saved ("kvm" | "soft") */
  backend: string;
  createdAt: string;
  /** incremental snapshots (version 3): the snapshot whose RAM this one's pages go on top of */
  base?: SnapshotBase;
  sections: { name: string; length: number; sha256?: string; crc32?: string }[];
}

export interface Container {
  /** the file's format version (one of READABLE_VERSIONS) */
  version: number;
  header: SnapshotHeader;
  /** the file's id: its header's SHA-256, hex (an incremental snapshot names its base by it) */
  id: string;
  sections: Map<string, Uint8Array>;
}

/** A section's bytes: one array, or pieces written back to back (RAM runs, without a copy). */
export type SectionBytes = Uint8Array | readonly Uint8Array[];

/** how a section is checked: SHA-256, or (version 2, for RAM) zlib's CRC-32 (crc32.ts says why) */
export type SumKind = "sha256" | "crc32";

/** a section to write: its name, bytes, and checksum (SHA-256 unless said) */
export type SectionEntry = readonly [name: string, bytes: SectionBytes, sum?: SumKind];

const pieces = (s: SectionBytes): readonly Uint8Array[] => (s instanceof Uint8Array ? [s] : s);

const sha256 = (b: Uint8Array): Buffer => createHash("sha256").update(b).digest();

/** a running checksum of either kind; hex() as the header writes it */
export function newSum(kind: SumKind): { update(b: Uint8Array): void; hex(): string } {
  if (kind === "sha256") {
    const h = createHash("sha256");
    return { update: (b) => h.update(b), hex: () => h.digest("hex") };
  }
  let value = 0;
  return {
    update: (b) => {
      value = crc32(b, value);
    },
    hex: () => crc32Hex(value),
  };
}

function sumOf(kind: SumKind, parts: readonly Uint8Array[]): string {
  const sum = newSum(kind);
  for (const p of parts) sum.update(p);
  return sum.hex();
}

/** The file as the pieces to write in order: preamble, header and its sum, then the sections'. */
export function encodeContainerPieces(
  meta: Omit<SnapshotHeader, "sections">,
  sections: readonly SectionEntry[],
): Uint8Array[] {
  const header: SnapshotHeader = {
    ...meta,
    sections: sections.map(([name, bytes, kind = "sha256"]) => {
      const parts = pieces(bytes);
      return { name, length: parts.reduce((n, p) => n + p.length, 0), [kind]: sumOf(kind, parts) };
    }),
  };
  const headerBytes = Buffer.from(toJson(header), "utf8");
  const pre = Buffer.alloc(PREAMBLE);
  pre.write(MAGIC, 0, "latin1");
  pre.writeUInt32LE(meta.base ? INCREMENTAL_VERSION : FORMAT_VERSION, 8);
  pre.writeUInt32LE(headerBytes.length, 12);
  return [pre, headerBytes, sha256(headerBytes), ...sections.flatMap(([, b]) => pieces(b))];
}

export function encodeContainer(
  meta: Omit<SnapshotHeader, "sections">,
  sections: readonly SectionEntry[],
): Buffer {
  return Buffer.concat(encodeContainerPieces(meta, sections));
}

/** The id of the file encodeContainerPieces() gave the pieces of: its header's SHA-256, hex. */
export const idOfPieces = (pieces: readonly Uint8Array[]): string => Buffer.from(pieces[2]!).toString("hex");

/** Checks the preamble; returns the version and the header's length. */
export function readPreamble(buf: Buffer, fileLength: number): { version: number; headerLength: number } {
  if (fileLength < PREAMBLE) {
    throw new SnapshotError("file", `truncated: ${fileLength} bytes, the preamble alone is ${PREAMBLE}`);
  }
  const magic = buf.toString("latin1", 0, 8);
  if (magic !== MAGIC) {
    throw new SnapshotError(
      "file",
      `not a nodevmm snapshot (magic ${JSON.stringify(magic)}, want "${MAGIC}")`,
    );
  }
  const version = buf.readUInt32LE(8);
  if (!READABLE_VERSIONS.includes(version)) {
    throw new SnapshotError(
      "header",
      `format version ${version}; this nodevmm reads versions ${READABLE_VERSIONS.slice(0, -1).join(", ")} and ${READABLE_VERSIONS.at(-1)}`,
    );
  }
  const headerLength = buf.readUInt32LE(12);
  if (fileLength < PREAMBLE + headerLength + SUM) {
    throw new SnapshotError(
      "header",
      `truncated: the file ends before the ${headerLength}-byte header and its checksum`,
    );
  }
  return { version, headerLength };
}

/** Checks and parses the header (`bytes`: the header JSON followed by its sum). */
export function readHeader(bytes: Buffer, version: number): SnapshotHeader {
  const json = bytes.subarray(0, bytes.length - SUM);
  if (!sha256(json).equals(bytes.subarray(bytes.length - SUM))) {
    throw new SnapshotError("header", "checksum mismatch: the header is corrupt");
  }
  let header: SnapshotHeader;
  try {
    header = fromJson(json.toString("utf8")) as SnapshotHeader;
  } catch (e) {
    throw new SnapshotError("header", `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!header || !Array.isArray(header.sections) || typeof header.backend !== "string") {
    throw new SnapshotError("header", "missing the section table or the backend name");
  }
  const base = header.base as Partial<SnapshotBase> | undefined;
  if (version === INCREMENTAL_VERSION) {
    if (
      !base ||
      typeof base.id !== "string" ||
      !/^[0-9a-f]{64}$/.test(base.id) ||
      typeof base.file !== "string"
    ) {
      throw new SnapshotError("header", "an incremental snapshot without a valid base (id and file)");
    }
  } else if (base !== undefined) {
    throw new SnapshotError(
      "header",
      `format version ${version} names a base: only version ${INCREMENTAL_VERSION} may`,
    );
  }
  return header;
}

export interface SectionPlace {
  name: SnapshotSection;
  offset: number;
  length: number;
  sum: SumKind;
  /** the checksum the header gives, hex */
  expect: string;
}

/**
 * Where each section lies in a file of `fileLength` bytes whose sections start at `start`: a
 * section that does not fit is a truncated one (named), bytes after the last are refused.
 */
export function placeSections(
  header: SnapshotHeader,
  version: number,
  start: number,
  fileLength: number,
): SectionPlace[] {
  const out: SectionPlace[] = [];
  let at = start;
  for (const s of header.sections) {
    const name = String(s?.name) as SnapshotSection;
    if (!Number.isSafeInteger(s?.length) || s.length < 0) {
      throw new SnapshotError("header", `section ${name} has no valid length`);
    }
    const sum: SumKind | undefined =
      typeof s.sha256 === "string"
        ? "sha256"
        : version >= 2 && typeof s.crc32 === "string"
          ? "crc32"
          : undefined;
    if (!sum) throw new SnapshotError("header", `section ${name} has no checksum`);
    if (at + s.length > fileLength) {
      throw new SnapshotError(
        name,
        `truncated: the section needs ${s.length} bytes at offset ${at}, the file has ${fileLength - at}`,
      );
    }
    out.push({ name, offset: at, length: s.length, sum, expect: String(s[sum]).toLowerCase() });
    at += s.length;
  }
  if (at !== fileLength) {
    throw new SnapshotError("file", `${fileLength - at} bytes after the last section`);
  }
  return out;
}

export function checkSum(place: SectionPlace, bytes: Uint8Array): void {
  if (sumOf(place.sum, [bytes]) !== place.expect) sumMismatch(place);
}

export function sumMismatch(place: SectionPlace): never {
  throw new SnapshotError(place.name, "checksum mismatch: the section is corrupt");
}

export function decodeContainer(file: Uint8Array): Container {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const { version, headerLength } = readPreamble(buf, buf.length);
  const headerEnd = PREAMBLE + headerLength;
  const header = readHeader(buf.subarray(PREAMBLE, headerEnd + SUM), version);
  const id = buf.subarray(headerEnd, headerEnd + SUM).toString("hex");
  const sections = new Map<string, Uint8Array>();
  for (const place of placeSections(header, version, headerEnd + SUM, buf.length)) {
    const bytes = buf.subarray(place.offset, place.offset + place.length);
    checkSum(place, bytes);
    sections.set(place.name, bytes);
  }
  return { version, header, id, sections };
}

/** A JSON section, or a SnapshotError naming it when it is missing or unreadable. */
export function jsonSection(c: Container, name: SnapshotSection): unknown {
  const bytes = c.sections.get(name);
  if (!bytes) throw new SnapshotError(name, "section missing");
  try {
    return fromJson(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (e) {
    throw new SnapshotError(name, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

export const jsonBytes = (value: unknown): Uint8Array => Buffer.from(toJson(value), "utf8");
