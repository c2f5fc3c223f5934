export type CpioEntry =
  | { type: "dir"; path: string; mode?: number }
  | { type: "file"; path: string; data: Buffer | string; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "char"; path: string; major: number; minor: number; mode?: number };

export interface ParsedCpioEntry {
  path: string;
  mode: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Buffer;
}

export function buildCpio(entries: readonly CpioEntry[]): Buffer;
export function parseCpio(buf: Buffer): ParsedCpioEntry[];
