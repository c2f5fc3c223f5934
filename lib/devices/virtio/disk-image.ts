// A disk image file as virtio-blk reads and writes it: synchronous positioned I/O (the device runs in
// the exit loop, between guest instructions) and fsync for flushes. Other stores (memory, tests that
// record calls) implement the same interface.

import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from "node:fs";
import { DeviceConfigError } from "../errors.js";
import { DeviceOptionReader } from "../options.js";

/**
 * The storage behind a {@link VirtioBlk}: openDiskImage() gives one over a file; implement it for other
 * stores. Calls are synchronous (the device runs between guest exits); errors become IOERR for the guest.
 */
export interface BlockImage {
  /** bytes; the device shows floor(size / 512) sectors */
  readonly size: number;
  /** Whether writes are refused (the device then offers VIRTIO_BLK_F_RO). */
  readonly readonly: boolean;
  /** fills `into` from byte `position`; throws on an I/O error */
  read(into: Uint8Array, position: number): void;
  /** Writes `from` at byte `position`; throws on an I/O error. */
  write(from: Uint8Array, position: number): void;
  /** makes every completed write durable (fsync) */
  flush(): void;
  /** Releases the image (closes the file). */
  close(): void;
}

const OPEN_ERRORS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "is a directory",
  EROFS: "the file system is read-only (use readonly)",
  ELOOP: "too many symbolic links",
  EMFILE: "too many open files",
};

/** Opens a raw disk image (a regular file); read-write unless `readonly`. */
export function openDiskImage(path: string, opts?: { readonly?: boolean }): BlockImage {
  if (typeof path !== "string" || path === "") {
    throw new DeviceConfigError("virtio-blk", "path", "a disk image path is required");
  }
  const ro = new DeviceOptionReader("virtio-blk", opts).boolean("readonly", false);
  let fd: number;
  try {
    fd = openSync(path, ro ? "r" : "r+");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    throw new DeviceConfigError(
      "virtio-blk",
      "path",
      `${path}: ${OPEN_ERRORS[code] ?? `cannot open (${code})`}`,
    );
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new DeviceConfigError("virtio-blk", "path", `${path}: not a regular file`);
  }
  return new FileImage(fd, st.size, ro);
}

class FileImage implements BlockImage {
  #fd: number | undefined;

  constructor(
    fd: number,
    readonly size: number,
    readonly readonly: boolean,
  ) {
    this.#fd = fd;
  }

  #open(): number {
    if (this.#fd === undefined) throw new Error("the disk image is closed");
    return this.#fd;
  }

  read(into: Uint8Array, position: number): void {
    const fd = this.#open();
    let done = 0;
    while (done < into.length) {
      const n = readSync(fd, into, done, into.length - done, position + done);
      if (n === 0) throw new Error(`the image ends at ${position + done}, before ${position + into.length}`);
      done += n;
    }
  }

  write(from: Uint8Array, position: number): void {
    const fd = this.#open();
    let done = 0;
    while (done < from.length) done += writeSync(fd, from, done, from.length - done, position + done);
  }

  flush(): void {
    fsyncSync(this.#open());
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}
