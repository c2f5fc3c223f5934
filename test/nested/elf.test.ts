import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { elfLinkage } from "../../scripts/nested-kvm/elf.mjs";

function head(path: string): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(4096);
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0));
  } finally {
    closeSync(fd);
  }
}

/** A minimal ELF64 little-endian header with the given program header types. */
function elf64(types: number[]): Buffer {
  const buf = Buffer.alloc(64 + 56 * types.length);
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = 2;
  buf[5] = 1;
  buf.writeBigUInt64LE(64n, 32);
  buf.writeUInt16LE(56, 54);
  buf.writeUInt16LE(types.length, 56);
  types.forEach((t, i) => {
    buf.writeUInt32LE(t, 64 + 56 * i);
  });
  return buf;
}

describe("ELF linkage", () => {
  it("tells a PT_INTERP binary from one without", () => {
    expect(elfLinkage(elf64([6, 3, 1]))).toBe("dynamic");
    expect(elfLinkage(elf64([1, 1, 4]))).toBe("static");
  });

  it("says not-elf for other files and truncated headers", () => {
    expect(elfLinkage(Buffer.from("#!/bin/sh\n".padEnd(80)))).toBe("not-elf");
    expect(elfLinkage(Buffer.alloc(10))).toBe("not-elf");
    expect(elfLinkage(elf64([1, 3]).subarray(0, 70))).toBe("not-elf");
  });

  it("sees that the host's node is dynamically linked", () => {
    expect(elfLinkage(head(process.execPath))).toBe("dynamic");
  });

  it.skipIf(!existsSync("/bin/busybox"))("sees busybox-static as static", () => {
    expect(elfLinkage(head("/bin/busybox"))).toBe("static");
  });
});
