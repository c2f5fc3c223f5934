// Argument checks of the koffi binding, the same the addon makes in C: only known KVM requests,
// pointer arguments at least as large as the kernel will read or write, integers where the request
// takes a value. They are what keeps a wrong argument from becoming memory corruption.

import type { IoctlArg } from "./binding-api.js";
import {
  ioctlHasPointer,
  ioctlName,
  ioctlSize,
  KVM_GET_CPUID2,
  KVM_GET_DIRTY_LOG,
  KVM_GET_EMULATED_CPUID,
  KVM_GET_MSR_FEATURE_INDEX_LIST,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_MSRS,
  KVM_GET_SUPPORTED_CPUID,
  KVM_SET_CPUID2,
  KVM_SET_GSI_ROUTING,
  KVM_SET_MSRS,
  KVM_SET_SIGNAL_MASK,
  KVM_SET_USER_MEMORY_REGION,
} from "./ioctls.js";

export function bytesOf(v: unknown): Uint8Array | undefined {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) {
    if (!(v.buffer instanceof ArrayBuffer))
      throw new TypeError("views of a SharedArrayBuffer are not supported");
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  return undefined;
}

export function checkInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v === "bigint") {
    if (v < BigInt(min) || v > BigInt(max)) throw new RangeError(`${name} is out of range`);
    return Number(v);
  }
  if (typeof v !== "number" || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer`);
  if (v < min || v > max) throw new RangeError(`${name} is out of range`);
  return v;
}

function variableSize(request: number, arg: Uint8Array): number {
  if (arg.length < 4) return 0;
  const n = new DataView(arg.buffer, arg.byteOffset, 4).getUint32(0, true);
  switch (request) {
    case KVM_GET_SUPPORTED_CPUID:
    case KVM_GET_EMULATED_CPUID:
    case KVM_SET_CPUID2:
    case KVM_GET_CPUID2:
      return 8 + n * 40;
    case KVM_GET_MSR_INDEX_LIST:
    case KVM_GET_MSR_FEATURE_INDEX_LIST:
      return 4 + n * 4;
    case KVM_GET_MSRS:
    case KVM_SET_MSRS:
      return 8 + n * 16;
    case KVM_SET_SIGNAL_MASK:
      return 4 + n;
    case KVM_SET_GSI_ROUTING:
      return 8 + n * 48;
    default:
      return 0;
  }
}

export type CheckedArg = { kind: "int"; value: number } | { kind: "ptr"; bytes: Uint8Array };

/** Validates an ioctl call; returns the request's name and the argument as the kernel will see it. */
export function checkIoctl(request: unknown, arg: IoctlArg | undefined): { name: string; arg: CheckedArg } {
  const req = checkInt(request, "request", 0, 0xffffffff);
  const name = ioctlName(req);
  if (name === undefined) {
    throw new RangeError(`ioctl request 0x${req.toString(16)} is not a KVM ioctl this binding knows`);
  }
  if (req === KVM_SET_USER_MEMORY_REGION || req === KVM_GET_DIRTY_LOG) {
    throw new TypeError(`${name} carries a raw pointer: use setUserMemoryRegion/getDirtyLog`);
  }
  if (!ioctlHasPointer(req)) {
    return {
      name,
      arg: { kind: "int", value: arg === undefined ? 0 : checkInt(arg, "arg", 0, Number.MAX_SAFE_INTEGER) },
    };
  }
  const bytes = bytesOf(arg);
  if (!bytes) throw new TypeError(`${name} needs an ArrayBuffer, TypedArray or DataView argument`);
  const size = ioctlSize(req);
  if (bytes.length < size) throw new RangeError(`${name} needs at least ${size} bytes, got ${bytes.length}`);
  const need = variableSize(req, bytes);
  if (need > bytes.length) {
    throw new RangeError(`${name} header asks for ${need} bytes, the buffer has ${bytes.length}`);
  }
  return { name, arg: { kind: "ptr", bytes } };
}
