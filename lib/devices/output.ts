// Where a device's output bytes go: a callback, anything with write() (a Node Writable such as
// process.stdout, no import needed), or a file opened lazily on first byte.

import { closeSync, openSync, writeSync } from "node:fs";

export type ByteOutput =
  | ((bytes: Uint8Array) => void)
  | { write(chunk: Uint8Array): unknown }
  | { path: string; append?: boolean };

export interface ByteSink {
  write(bytes: Uint8Array): void;
  close(): void;
}

export function byteSink(out: ByteOutput | undefined): ByteSink {
  if (out === undefined) return { write() {}, close() {} };
  if (typeof out === "function") return { write: (b) => out(b), close() {} };
  if ("write" in out) return { write: (b) => void out.write(b), close() {} };
  const { path, append = false } = out;
  let fd: number | undefined;
  return {
    write(bytes) {
      fd ??= openSync(path, append ? "a" : "w");
      writeSync(fd, bytes);
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
