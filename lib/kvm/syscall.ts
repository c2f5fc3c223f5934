// Turns a binding's system error into a KvmError (same fields, an instanceof-able class).

import type { IoctlArg, KvmBinding } from "./binding.js";
import { KvmError } from "./errors.js";

export function asKvmError(e: unknown): unknown {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === "string" && !(e instanceof KvmError)) {
    const x = e as Error & { code: string; errno?: number; syscall?: string; request?: string };
    const err = new KvmError(x.message, x.code, x.errno ?? 0, x.syscall ?? "ioctl", x.request);
    err.stack = x.stack;
    return err;
  }
  return e;
}

export function ioctl(binding: KvmBinding, fd: number, request: number, arg?: IoctlArg): number {
  try {
    return binding.ioctl(fd, request, arg);
  } catch (e) {
    throw asKvmError(e);
  }
}

export function sys<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw asKvmError(e);
  }
}
