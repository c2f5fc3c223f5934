// Snapshot files on disk. A save writes the container's pieces through one small buffer (RAM's
// come straight from the machine: no copy of all of it is made). A restore from a path reads the preamble, header and the small sections
// first and checks them; RAM, the last section of a version-2 file, stays in the file until the
// machine made for it is ready, then goes through one small buffer into place, its checksum
// computed on the way and compared at the end (a mismatch is a SnapshotError("memory") and the
// restore closes the machine). RAM is so copied once instead of three times (file buffer, inflated
// buffer, guest RAM): the first touch of each fresh page of RAM is most of what a restore costs.

import { closeSync, fstatSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { SnapshotError } from "./errors.js";
import {
  type Container,
  checkSum,
  decodeContainer,
  newSum,
  PREAMBLE,
  placeSections,
  readHeader,
  readPreamble,
  type SectionPlace,
  SUM,
  sumMismatch,
} from "./format.js";
import type { MemoryInFile } from "./memory.js";

/**
 * Files are written and read through a buffer of this size. Going through it is cheaper than
 * handing guest RAM to the kernel: the kernel's first access to each page of RAM costs about as
 * much as a page fault on some hosts (12 us a page on this project's VMs, 50 ms for 20 MiB),
 * while the buffer's pages are touched once, and copying costs 2 ms for 20 MiB.
 */
const IO_CHUNK = 256 * 1024;

const codeOf = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? String(e);

/** Writes the pieces back to back to `path` (created or truncated); returns the bytes written. */
export function writeSnapshotFile(path: string, pieces: readonly Uint8Array[]): number {
  let fd: number;
  try {
    fd = openSync(path, "w");
  } catch (e) {
    throw new SnapshotError("file", `cannot write ${path}: ${codeOf(e)}`);
  }
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const buf = Buffer.allocUnsafeSlow(Math.min(IO_CHUNK, total));
  let used = 0;
  // at the file's own position: a pipe (--save /dev/stdout) has no offsets to write at
  const flush = () => {
    for (let at = 0; at < used; ) at += writeSync(fd, buf, at, used - at, null);
    used = 0;
  };
  try {
    for (const p of pieces) {
      for (let at = 0; at < p.length; ) {
        const n = Math.min(buf.length - used, p.length - at);
        buf.set(p.subarray(at, at + n), used);
        used += n;
        at += n;
        if (used === buf.length) flush();
      }
    }
    flush();
  } catch (e) {
    throw new SnapshotError("file", `cannot write ${path}: ${codeOf(e)}`);
  } finally {
    closeSync(fd);
  }
  return total;
}

/** reads exactly `length` bytes at `position` into `into` (from 0); short: a truncated section */
function readExactly(fd: number, into: Uint8Array, length: number, position: number, part: string): void {
  for (let got = 0; got < length; ) {
    const n = readSync(fd, into, got, length - got, position + got);
    if (n === 0) {
      throw new SnapshotError(
        part === "memory" ? "memory" : "file",
        `truncated: ${part} ends ${length - got} bytes early (the file shrank while it was read)`,
      );
    }
    got += n;
  }
}

/** A snapshot file's checked container; RAM (version 2) is left in the file as `memory`. */
export interface OpenedFile {
  container: Container;
  /** the "memory" section, still in the file: its length and a reader that checks its sum */
  memory?: { length: number; source: MemoryInFile };
  /** releases the file (the memory source fails after this) */
  close(): void;
}

export function openSnapshotFile(path: string): OpenedFile {
  let fd: number;
  let size: number;
  let regular: boolean;
  try {
    fd = openSync(path, "r");
    const st = fstatSync(fd);
    size = st.size;
    regular = st.isFile();
  } catch (e) {
    throw new SnapshotError("file", `cannot read ${path}: ${codeOf(e)}`);
  }
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  try {
    // a pipe (a process substitution, say) has no size to check nor offsets to read at: whole
    if (!regular) {
      const container = decodeContainer(readFileSync(fd));
      close();
      return { container, close };
    }
    const pre = Buffer.alloc(PREAMBLE);
    readExactly(fd, pre, Math.min(PREAMBLE, size), 0, "the preamble");
    const { version, headerLength } = readPreamble(pre, size);
    const headBytes = Buffer.allocUnsafe(headerLength + SUM);
    readExactly(fd, headBytes, headBytes.length, PREAMBLE, "the header");
    const header = readHeader(headBytes, version);
    const id = headBytes.subarray(headerLength).toString("hex");
    const start = PREAMBLE + headerLength + SUM;
    const places = placeSections(header, version, start, size);
    const last = places[places.length - 1];
    // version 1 deflated RAM, and a file whose RAM is not last (not one nodevmm wrote): all at once
    const streamed = version >= 2 && last?.name === "memory" ? last : undefined;
    const end = streamed ? streamed.offset : size;
    const body = Buffer.allocUnsafe(end - start);
    readExactly(fd, body, body.length, start, "the sections");
    const sections = new Map<string, Uint8Array>();
    for (const place of places) {
      if (place === streamed) continue;
      const bytes = body.subarray(place.offset - start, place.offset - start + place.length);
      checkSum(place, bytes);
      sections.set(place.name, bytes);
    }
    const container: Container = { version, header, id, sections };
    if (!streamed) {
      close();
      return { container, close };
    }
    const checkOpen = () => {
      if (!open) throw new SnapshotError("file", `${path} was closed: read the snapshot again`);
    };
    const source: MemoryInFile = {
      checkOpen,
      readInto: (place) => {
        checkOpen();
        streamSection(fd, streamed, place);
      },
    };
    return { container, memory: { length: streamed.length, source }, close };
  } catch (e) {
    close();
    throw e instanceof SnapshotError ? e : new SnapshotError("file", `cannot read ${path}: ${codeOf(e)}`);
  }
}

/** hands the section's bytes to `place` chunk by chunk, then compares their checksum with the header's */
function streamSection(fd: number, section: SectionPlace, place: (chunk: Uint8Array) => void): void {
  const sum = newSum(section.sum);
  const buf = Buffer.allocUnsafeSlow(Math.min(IO_CHUNK, section.length));
  for (let done = 0; done < section.length; ) {
    const n = Math.min(buf.length, section.length - done);
    readExactly(fd, buf, n, section.offset + done, section.name);
    const chunk = buf.subarray(0, n);
    sum.update(chunk);
    place(chunk);
    done += n;
  }
  if (sum.hex() !== section.expect) sumMismatch(section);
}
