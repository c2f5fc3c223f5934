// Parsers for command-line values; each throws CliUsageError with the option's name and the
// accepted forms, which the CLI prints and exits with status 2.

import { VmmError } from "../types/errors.js";

/** A command-line argument the command cannot use; the message names the option. Status 2. */
export class CliUsageError extends VmmError {
  override name = "CliUsageError";
  override readonly code: string = "ERR_VMM_CLI_USAGE";
}

const UNITS: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024 };

/** "64M", "1G", "65536K", "128" (MiB) -> whole MiB. */
export function parseMemory(text: string): number {
  const m = /^(\d+)\s*([KMG])?(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new CliUsageError(`--mem: "${text}" is not a size like 64M, 1G or 65536K`);
  const mib = Number(m[1]) * UNITS[(m[2] ?? "M").toUpperCase()]!;
  if (!Number.isInteger(mib) || mib < 1) {
    throw new CliUsageError(`--mem: "${text}" is not a whole number of MiB (at least 1M)`);
  }
  return mib;
}

/** "0x7c00", "31744", "0x10_0000" -> a non-negative safe integer. */
export function parseAddress(text: string, option = "--address"): number {
  const t = text.trim().replaceAll("_", "");
  const v = /^0x[0-9a-f]+$/i.test(t)
    ? Number.parseInt(t.slice(2), 16)
    : /^\d+$/.test(t)
      ? Number(t)
      : Number.NaN;
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new CliUsageError(`${option}: "${text}" is not an address (decimal or 0x-prefixed hex)`);
  }
  return v;
}

export function parseCount(text: string, option: string): number {
  const v = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(v)) {
    throw new CliUsageError(`${option}: "${text}" is not a non-negative integer`);
  }
  return v;
}

export function parseSeconds(text: string, option: string): number {
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v) || v < 0) {
    throw new CliUsageError(`${option}: "${text}" is not a number of seconds`);
  }
  return v;
}

/** QEMU's -s port, for --gdb-wait without --gdb */
export const DEFAULT_GDB_PORT = 1234;

/** "[HOST:]PORT" (host default 127.0.0.1; "[::1]:1234" for IPv6) -> where the gdb stub listens. */
export function parseGdbAddress(text: string, option = "--gdb"): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new CliUsageError(`${option}: "${text}" is not [HOST:]PORT (e.g. 1234 or 0.0.0.0:1234)`);
  }
  const host = m[1] ? m[1].replace(/^\[|\]$/g, "") : "127.0.0.1";
  return { host: host || "127.0.0.1", port };
}

export interface DriveSpec {
  path: string;
  readonly: boolean;
  serial?: string;
}

/** QEMU's -drive spelling, the part we take: "file=PATH[,readonly[=on|off]][,serial=ID]" (",," is a comma). */
export function parseDrive(text: string, option = "--drive"): DriveSpec {
  const parts = text.split(/(?<!,),(?!,)/).map((p) => p.replaceAll(",,", ","));
  let path: string | undefined;
  let readonly = false;
  let serial: string | undefined;
  for (const part of parts) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? undefined : part.slice(eq + 1);
    if (key === "file" && value) path = value;
    else if (key === "readonly" && (value === undefined || value === "on" || value === "off"))
      readonly = value !== "off";
    else if (key === "serial" && value !== undefined) serial = value;
    else {
      throw new CliUsageError(
        `${option}: "${part}" is not one of file=PATH, readonly[=on|off], serial=ID (in "${text}")`,
      );
    }
  }
  if (path === undefined)
    throw new CliUsageError(`${option}: "${text}" names no file= (file=PATH[,readonly])`);
  return { path, readonly, ...(serial !== undefined ? { serial } : {}) };
}

export type Sink = { kind: "stdio" } | { kind: "file"; path: string } | { kind: "none" };

/** "stdio" | "file:PATH" | "none". */
export function parseSink(text: string, option: string): Sink {
  if (text === "stdio") return { kind: "stdio" };
  if (text === "none") return { kind: "none" };
  if (text.startsWith("file:") && text.length > 5) return { kind: "file", path: text.slice(5) };
  throw new CliUsageError(`${option}: "${text}" is not one of stdio, file:PATH, none`);
}
