// Argument checks for the public API: each names the argument as the signature does and throws an
// InvalidArgumentError, so a wrong call fails where it is made (not later, inside a handler or a
// run) and never with an engine TypeError. Messages describe values with describeValue(), which
// cannot throw: String(x) and template literals do throw for objects without a prototype.

import { describeValue } from "../types/describe-value.js";
import { InvalidArgumentError } from "./errors.js";

export { describeValue };

function fail(argument: string, expected: string, value: unknown): never {
  throw new InvalidArgumentError(`${argument} must be ${expected}, got ${describeValue(value)}`, argument);
}

/**
 * An options object: undefined gives `{}` (the defaults), anything but a plain object (null, a
 * number, an array) is refused.
 */
export function optionsArg<T extends object>(argument: string, value: T | undefined | null): T {
  if (value === undefined) return {} as T;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(argument, "an object (or left out)", value);
  }
  return value;
}

/** A required object (a device, a record of registers). */
export function objectArg<T extends object>(argument: string, value: unknown): T {
  if (typeof value !== "object" || value === null) fail(argument, "an object", value);
  return value as T;
}

export function functionArg<F extends (...args: never[]) => unknown>(argument: string, value: unknown): F {
  if (typeof value !== "function") fail(argument, "a function", value);
  return value as F;
}

/** An integer in [min, max] (safe integers only). */
export function integerArg(argument: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(argument, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** A non-negative number (a limit; Infinity allowed). */
export function limitArg(argument: string, value: unknown): number {
  if (typeof value !== "number" || !(value >= 0)) fail(argument, "a non-negative number", value);
  return value;
}

/** An address or guest-virtual address given as a number or a bigint, returned as a bigint. */
export function addressArg(argument: string, value: unknown, bits = 64): bigint {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === "bigint" && value >= 0n && value < 1n << BigInt(bits)) return value;
  return fail(argument, `a non-negative integer (number or bigint) below 2^${bits}`, value);
}

export function booleanArg(argument: string, value: unknown): boolean {
  if (typeof value !== "boolean") fail(argument, "a boolean", value);
  return value;
}

export function stringArg(argument: string, value: unknown): string {
  if (typeof value !== "string") fail(argument, "a string", value);
  return value;
}

/** One of a few strings. */
export function oneOfArg<T extends string>(argument: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    fail(argument, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`, value);
  }
  return value as T;
}

/** Image bytes: a Uint8Array (a Buffer is one). */
export function bytesArg(argument: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(argument, "a Uint8Array (or Buffer)", value);
  return value;
}

/** An optional field of an options object: undefined stays undefined, anything else is checked. */
export function optional<T>(
  value: unknown,
  argument: string,
  check: (argument: string, value: unknown) => T,
): T | undefined {
  return value === undefined ? undefined : check(argument, value);
}
