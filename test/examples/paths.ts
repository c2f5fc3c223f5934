import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const IMAGES = join(root, "examples", "images");
export const GUESTS = join(root, "examples", "guests");

export interface ManifestEntry {
  name: string;
  file: string;
  format: "flat" | "elf" | "multiboot";
  load?: { address: number; mode: "real" | "protected" | "long" };
  memoryMiB: number;
  cmdline?: string;
  expected: string;
  stop: "hlt" | "debug-exit";
  debugExitValue?: number;
  /** nodevmm run --plugin modules the guest needs */
  plugins?: string[];
}

export const manifest: ManifestEntry[] = JSON.parse(
  readFileSync(join(IMAGES, "manifest.json"), "utf8"),
).images;

export function image(entry: ManifestEntry): Uint8Array {
  return new Uint8Array(readFileSync(join(IMAGES, entry.file)));
}

export function expected(entry: ManifestEntry): string {
  return readFileSync(join(IMAGES, entry.expected), "utf8");
}
