// Where a device's output bytes go: a callback, anything with write() (a Node Writable such as
// process.stdout, no import needed), or a file opened lazily on first byte.

import { closeSync, openSync, writeSync } from "node:fs";
import { describeValue } from "../types/describe-value.js";

/**
 * Where a device's output bytes go: a function called with each chunk, anything with `write(chunk)`
 * (a Node Writable such as `process.stdout`), or `{ path, append? }`, a file opened on the first
 * byte.
 */
export type ByteOutput =
  | ((bytes: Uint8Array) => void)
  | { write(chunk: Uint8Array): unknown }
  | { path: string; append?: boolean };

export interface ByteSink {
  write(bytes: Uint8Array): void;
  close(): void;
}

/** What is wrong with a value given as a ByteOutput, or undefined when it is one. */
export function byteOutputProblem(out: unknown): string | undefined {
  if (typeof out === "function") return undefined;
  const expected = "a function, an object with write(), or { path, append? }";
  if (typeof out !== "object" || out === null) return `must be ${expected}, got ${describeValue(out)}`;
  const o = out as { write?: unknown; path?: unknown; append?: unknown };
  if ("write" in o) {
    return typeof o.write === "function"
      ? undefined
      : `write must be a function, got ${describeValue(o.write)}`;
  }
  if ("path" in o) {
    if (typeof o.path !== "string" || o.path === "") {
      return `path must be a file name, got ${describeValue(o.path)}`;
    }
    if (o.append !== undefined && typeof o.append !== "boolean") {
      return `append must be true or false, got ${describeValue(o.append)}`;
    }
    return undefined;
  }
  return `must be ${expected}, got ${describeValue(out)}`;
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
