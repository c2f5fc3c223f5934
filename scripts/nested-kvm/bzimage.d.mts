export function bzImagePayload(buf: Buffer): { kind: "gzip" | "xz" | "zstd" | "unknown"; payload: Buffer };
export function hasPvhEntry(buf: Buffer): boolean;
