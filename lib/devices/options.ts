// Reads a device's options object and checks every field before the device uses it, so a wrong
// option is a DeviceConfigError naming it (`uart16550: output: ...`) when the device is made, never
// an engine TypeError then or later, when the guest first touches the device. Messages describe
// values with describeValue(): String(x) throws for objects without a prototype.

import { describeValue } from "../types/describe-value.js";
import { DeviceConfigError } from "./errors.js";
import { type ByteOutput, byteOutputProblem } from "./output.js";

/** Makes the error for a wrong option: a device with its own DeviceConfigError subclass passes one. */
export type DeviceErrorFactory = (device: string, option: string, message: string) => DeviceConfigError;

const configError: DeviceErrorFactory = (device, option, message) =>
  new DeviceConfigError(device, option, message);

export class DeviceOptionReader<T extends object> {
  readonly #fields: Readonly<Record<string, unknown>>;

  constructor(
    readonly device: string,
    options: T | undefined | null,
    /** how option names are prefixed in messages (`modem.` for a nested object) */
    readonly prefix = "",
    readonly makeError: DeviceErrorFactory = configError,
  ) {
    if (
      options !== undefined &&
      (typeof options !== "object" || options === null || Array.isArray(options))
    ) {
      const what = prefix ? prefix.slice(0, -1) : "options";
      throw makeError(device, what, `must be an object (or left out), got ${describeValue(options)}`);
    }
    this.#fields = (options ?? {}) as Readonly<Record<string, unknown>>;
  }

  /** the field as given, or `fallback` when left out (only undefined is: null is a wrong value) */
  get(key: keyof T & string, fallback: unknown): unknown {
    const v = this.#fields[key];
    return v === undefined ? fallback : v;
  }

  /** the field as given (undefined when left out) */
  raw(key: keyof T & string): unknown {
    return this.#fields[key];
  }

  fail(key: string, problem: string): never {
    throw this.makeError(this.device, this.prefix + key, problem);
  }

  #wrong(key: string, expected: string, value: unknown): never {
    return this.fail(key, `must be ${expected}, got ${describeValue(value)}`);
  }

  /** an I/O port such that `length` ports from it fit below 0x10000 */
  port(key: keyof T & string, fallback: number, length = 1): number {
    const v = this.get(key, fallback);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v + length > 0x10000) {
      this.fail(key, `port ${describeValue(v)} is not in 0..0x${(0x10000 - length).toString(16)}`);
    }
    return v;
  }

  /** an interrupt line (ISA IRQ or GSI) up to `max` */
  irq(key: keyof T & string, fallback: number, max = 255): number {
    const v = this.get(key, fallback);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
      this.fail(key, `${describeValue(v)} is not an interrupt line 0-${max}`);
    }
    return v;
  }

  /** an integer in [min, max] (safe integers only) */
  integer(key: keyof T & string, fallback: number, min: number, max: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
      this.#wrong(key, `an integer from ${min} to ${max}`, v);
    }
    return v;
  }

  /** a finite number above 0 (a frequency, a rate) */
  positive(key: keyof T & string, fallback: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) this.#wrong(key, "a positive number", v);
    return v;
  }

  /** a 4 KiB-aligned 32-bit physical address: where an MMIO register page (an APIC's) can sit */
  page(key: keyof T & string, fallback: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xfffff000 || v % 0x1000 !== 0) {
      const shown =
        typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? `0x${v.toString(16)}` : describeValue(v);
      this.fail(key, `${shown} is not a 4 KiB-aligned 32-bit address`);
    }
    return v;
  }

  boolean(key: keyof T & string, fallback: boolean): boolean {
    const v = this.get(key, fallback);
    if (typeof v !== "boolean") this.#wrong(key, "true or false", v);
    return v;
  }

  /** a callback, or undefined when left out */
  callback<F extends (...args: never[]) => unknown>(key: keyof T & string): F | undefined {
    const v = this.#fields[key];
    if (v !== undefined && typeof v !== "function") this.#wrong(key, "a function (or left out)", v);
    return v as F | undefined;
  }

  /** a string, or `fallback` when left out */
  string(key: keyof T & string, fallback: string): string;
  string(key: keyof T & string): string | undefined;
  string(key: keyof T & string, fallback?: string): string | undefined {
    const v = this.get(key, fallback);
    if (v !== undefined && typeof v !== "string") this.#wrong(key, "a string", v);
    return v;
  }

  /** one of a few strings */
  oneOf<S extends string>(key: keyof T & string, allowed: readonly S[], fallback: S): S {
    const v = this.get(key, fallback);
    if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
      this.#wrong(key, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`, v);
    }
    return v as S;
  }

  /** bytes (a Uint8Array or Buffer), or undefined when left out */
  bytes(key: keyof T & string): Uint8Array | undefined {
    const v = this.#fields[key];
    if (v !== undefined && !(v instanceof Uint8Array)) this.#wrong(key, "a Uint8Array", v);
    return v as Uint8Array | undefined;
  }

  /** where output bytes go (see ByteOutput), or undefined when left out */
  output(key: keyof T & string): ByteOutput | undefined {
    const v = this.#fields[key];
    if (v === undefined) return undefined;
    const problem = byteOutputProblem(v);
    if (problem) this.fail(key, problem);
    return v as ByteOutput;
  }

  /** a nested options object, read the same way; undefined when left out */
  nested<N extends object>(key: keyof T & string): DeviceOptionReader<N> | undefined {
    const v = this.#fields[key];
    if (v === undefined) return undefined;
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.#wrong(key, "an object", v);
    return new DeviceOptionReader<N>(this.device, v as N, `${this.prefix}${key}.`, this.makeError);
  }
}
