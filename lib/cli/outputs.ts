// The files a run writes (--serial file:PATH, --debugcon file:PATH, --trace-file PATH) are opened
// before the machine starts: a path that cannot be written is a usage error (status 2) in one line,
// not a guest crash when the first byte comes. Two options naming the same file share one descriptor.

import { closeSync, openSync, writeSync } from "node:fs";
import { resolve } from "node:path";
import { CliUsageError } from "./parse.js";

const OPEN_ERRORS: Record<string, string> = {
  ENOENT: "no such directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "is a directory",
  EROFS: "read-only file system",
  ENOTDIR: "a part of the path is not a directory",
  ENOSPC: "no space left on the device",
};

export class OutputFiles {
  readonly #fds = new Map<string, number>();

  /** Opens (truncates) `path` for writing; throws CliUsageError naming `option` when it cannot. */
  open(path: string, option: string): { write(chunk: Uint8Array): void } {
    const key = resolve(path);
    let fd = this.#fds.get(key);
    if (fd === undefined) {
      try {
        fd = openSync(path, "w");
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? "";
        throw new CliUsageError(`${option}: cannot write ${path}: ${OPEN_ERRORS[code] ?? code}`);
      }
      this.#fds.set(key, fd);
    }
    const out = fd;
    return {
      write(chunk: Uint8Array) {
        let done = 0;
        while (done < chunk.length) done += writeSync(out, chunk, done, chunk.length - done);
      },
    };
  }

  closeAll(): void {
    for (const fd of this.#fds.values()) {
      try {
        closeSync(fd);
      } catch {
        // already closed: nothing left to flush
      }
    }
    this.#fds.clear();
  }
}
