// The `nodevmm/examples` subpath: the small guests the package ships (examples/images/, described by
// its manifest.json), so a user can boot one from their own project without knowing where npm put
// the package. The images and their expected output are files of the package, found from this
// module's own location (dist/lib/examples/ when installed, lib/examples/ in a checkout under test).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidArgumentError } from "../vmm/errors.js";

/** How a shipped example guest ends: `cli; hlt`, or a write to the isa-debug-exit port. */
export type ExampleStop = "hlt" | "debug-exit";

/** One example guest shipped with the package. */
export interface ExampleImage {
  /** Its name, as {@link exampleImage} takes it (e.g. "real-hello"). */
  readonly name: string;
  /** Absolute path of the image file. */
  readonly path: string;
  /**
   * What to pass to `vm.load(bytes, loadOptions)`: the image format and, for flat images, the load
   * address and CPU mode; for multiboot guests that read arguments, the command line.
   */
  readonly loadOptions: {
    readonly format: "flat" | "elf" | "multiboot";
    readonly address?: number;
    readonly mode?: "real" | "protected" | "long";
    readonly cmdline?: string;
  };
  /** Guest RAM it is meant to run with, in MiB. */
  readonly memoryMiB: number;
  /** How it ends: "hlt", or "debug-exit" with {@link ExampleImage.debugExitValue}. */
  readonly stop: ExampleStop;
  /** The value a "debug-exit" guest writes to port 0xF4 on success. */
  readonly debugExitValue?: number;
  /**
   * Host code the guest needs besides the PC devices, in words (e.g. a device at an I/O port that the
   * repository's examples/plugins implement); absent when `addPcDevices` is all it needs.
   */
  readonly needs?: string;
  /** The image's bytes (read from the package on each call). */
  read(): Uint8Array;
  /** The exact serial output (COM1) of a successful run. */
  expectedOutput(): string;
}

interface ManifestEntry {
  name: string;
  file: string;
  format: "flat" | "elf" | "multiboot";
  load?: { address?: number; mode?: "real" | "protected" | "long" };
  memoryMiB: number;
  cmdline?: string;
  expected: string;
  stop: ExampleStop;
  debugExitValue?: number;
  device?: string;
  hypercall?: string;
}

function imagesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "examples", "images", "manifest.json");
    if (existsSync(candidate)) return dirname(candidate);
    dir = dirname(dir);
  }
  throw new Error("nodevmm/examples: examples/images/manifest.json is missing from the package");
}

let cache: readonly ExampleImage[] | undefined;

function load(): readonly ExampleImage[] {
  if (cache) return cache;
  const dir = imagesDir();
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as {
    images: ManifestEntry[];
  };
  cache = Object.freeze(
    manifest.images.map((e): ExampleImage => {
      const path = join(dir, e.file);
      const needs = e.device ?? (e.hypercall ? `a hypercall handler (${e.hypercall})` : undefined);
      return Object.freeze({
        name: e.name,
        path,
        loadOptions: Object.freeze({
          format: e.format,
          ...(e.load?.address !== undefined ? { address: e.load.address } : {}),
          ...(e.load?.mode !== undefined ? { mode: e.load.mode } : {}),
          ...(e.cmdline !== undefined ? { cmdline: e.cmdline } : {}),
        }),
        memoryMiB: e.memoryMiB,
        stop: e.stop,
        ...(e.debugExitValue !== undefined ? { debugExitValue: e.debugExitValue } : {}),
        ...(needs !== undefined ? { needs } : {}),
        read: () => new Uint8Array(readFileSync(path)),
        expectedOutput: () => readFileSync(join(dir, e.expected), "utf8"),
      });
    }),
  );
  return cache;
}

/** Every example guest the package ships, in the manifest's order. */
export function exampleImages(): readonly ExampleImage[] {
  return load();
}

/**
 * The example guest called `name` (see {@link exampleImages} for the list).
 * @throws InvalidArgumentError when there is no such example
 */
export function exampleImage(name: string): ExampleImage {
  const found = typeof name === "string" ? load().find((e) => e.name === name) : undefined;
  if (found) return found;
  const names = load()
    .map((e) => e.name)
    .join(", ");
  throw new InvalidArgumentError(
    `name: no example image ${JSON.stringify(name)} (there are: ${names})`,
    "name",
  );
}
