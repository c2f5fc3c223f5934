// Host-side decompression of a bzImage's payload, so the loader can enter the kernel's vmlinux
// directly instead of running the kernel's decompressor in the guest (tens of seconds for an XZ
// kernel on the software backend). Nothing here may fail a boot: every way it cannot decompress
// (no decompressor for the format in this Node, a corrupt stream, a size that disagrees with the
// kernel's record) comes back as a reason, and the loader falls back to the in-guest decompressor.
//
// In-process first: gzip with node:zlib, zstd with zlib.zstdDecompressSync where this Node has it
// (22.15 and later), xz with @napi-rs/lzma when the user installed it (loaded on first use; not a
// dependency: its releases with xz BCJ filters need Node 22.20+, and we support Node 20). Then the
// host's own tool on PATH (xz, zstd, bzip2, lz4, lzop), as scripts/extract-vmlinux does.

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import * as zlib from "node:zlib";
import type { BzImagePayload, PayloadFormat } from "./bzimage-payload.js";

/** Where a decompressor comes from: this process (node:zlib, `@napi-rs/lzma`) or a program on PATH. */
export type DecompressorKind = "native" | "tool";

/** Which decompressors may undo a bzImage's payload on the host. */
export interface DecompressOptions {
  /** which kinds to try, in order; default ["native", "tool"] */
  use?: readonly DecompressorKind[];
}

export type DecompressOutcome =
  | { ok: true; data: Uint8Array; via: string; ms: number }
  | { ok: false; reason: string };

/** Larger than any kernel; a payload claiming more is not one. */
export const MAX_DECOMPRESSED = 1024 * 1024 * 1024;

type Attempt = { data: Uint8Array } | { unavailable: string } | { failed: string };

interface Decompressor {
  kind: DecompressorKind;
  name: string;
  run(stream: Uint8Array): Attempt;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

function inProcess(name: string, fn: () => ((b: Uint8Array) => Uint8Array) | string): Decompressor {
  return {
    kind: "native",
    name,
    run(stream) {
      const f = fn();
      if (typeof f === "string") return { unavailable: f };
      try {
        const out = f(stream);
        // a plain Uint8Array whatever the decompressor returns (Buffer, for zlib)
        return { data: new Uint8Array(out.buffer, out.byteOffset, out.byteLength) };
      } catch (e) {
        return { failed: `${name}: ${message(e)}` };
      }
    },
  };
}

function tool(program: string, args: readonly string[]): Decompressor {
  const name = `${program} ${args.join(" ")}`;
  return {
    kind: "tool",
    name: program,
    run(stream) {
      const r = spawnSync(program, args, { input: stream, maxBuffer: MAX_DECOMPRESSED });
      if (r.error) {
        const code = (r.error as NodeJS.ErrnoException).code;
        return code === "ENOENT"
          ? { unavailable: `${program} is not installed` }
          : { failed: `${name}: ${r.error.message}` };
      }
      if (r.status !== 0) {
        const err = r.stderr.toString().trim().split("\n")[0] ?? "";
        return { failed: `${name} exited ${String(r.status ?? r.signal)}${err ? `: ${err}` : ""}` };
      }
      return { data: new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.byteLength) };
    },
  };
}

interface NapiLzma {
  xz: { decompressSync(input: Uint8Array): Uint8Array };
}
let napiLzma: NapiLzma | string | undefined;

/** @napi-rs/lzma, loaded once; a string says why it cannot be had. */
function loadNapiLzma(): NapiLzma | string {
  if (napiLzma === undefined) {
    try {
      napiLzma = createRequire(import.meta.url)("@napi-rs/lzma") as NapiLzma;
    } catch (e) {
      napiLzma = `@napi-rs/lzma cannot be loaded (${message(e).split("\n")[0]})`;
    }
  }
  return napiLzma;
}

const zstdSync = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array, o?: object) => Buffer })
  .zstdDecompressSync;

const DECOMPRESSORS: Record<PayloadFormat, readonly Decompressor[]> = {
  gzip: [
    inProcess("node:zlib", () => (b) => zlib.gunzipSync(b, { maxOutputLength: MAX_DECOMPRESSED })),
    tool("gzip", ["-dc"]),
  ],
  zstd: [
    inProcess("node:zlib", () =>
      zstdSync ? (b) => zstdSync(b) : `node ${process.versions.node} has no zlib.zstdDecompressSync`,
    ),
    tool("zstd", ["-dc"]),
  ],
  xz: [
    inProcess("@napi-rs/lzma", () => {
      const m = loadNapiLzma();
      return typeof m === "string" ? m : (b) => m.xz.decompressSync(b);
    }),
    tool("xz", ["-dc", "--single-stream"]),
  ],
  lzma: [tool("xz", ["-dc", "--format=lzma"])],
  bzip2: [tool("bzip2", ["-dc"])],
  lz4: [tool("lz4", ["-dc"])],
  lzo: [tool("lzop", ["-dc"])],
};

/** The formats and the decompressors this build knows for each (names only, for messages and docs). */
export function decompressorsFor(format: PayloadFormat): string[] {
  return DECOMPRESSORS[format].map((d) => `${d.kind}:${d.name}`);
}

/**
 * Decompresses a bzImage payload with the first decompressor that works, and checks the output's
 * size against the one the kernel recorded after the stream.
 */
export function decompressPayload(payload: BzImagePayload, opts: DecompressOptions = {}): DecompressOutcome {
  const use = opts.use ?? ["native", "tool"];
  const why: string[] = [];
  for (const d of DECOMPRESSORS[payload.format].filter((x) => use.includes(x.kind))) {
    const t0 = performance.now();
    const r = d.run(payload.stream);
    if ("unavailable" in r) {
      why.push(r.unavailable);
      continue;
    }
    if ("failed" in r)
      return { ok: false, reason: `the ${payload.format} payload does not decompress: ${r.failed}` };
    if (r.data.length % 2 ** 32 !== payload.decompressedSize) {
      return {
        ok: false,
        reason: `the ${payload.format} payload decompressed to ${r.data.length} bytes, but the kernel recorded ${payload.decompressedSize}`,
      };
    }
    return { ok: true, data: r.data, via: d.name, ms: performance.now() - t0 };
  }
  return {
    ok: false,
    reason: `no decompressor for ${payload.format} on this host${why.length ? ` (${why.join("; ")})` : ""}`,
  };
}
