import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { bzImagePayload, hasPvhEntry } from "../../scripts/nested-kvm/bzimage.mjs";
import { bootImage } from "../../scripts/nested-kvm/kernel.mjs";

/** An ELF64 with one PT_NOTE segment holding the given (name, type) notes. */
function elfWithNotes(notes: [string, number][]): Buffer {
  const body: Buffer[] = [];
  for (const [name, type] of notes) {
    const n = Buffer.from(`${name}\0`);
    const h = Buffer.alloc(12);
    h.writeUInt32LE(n.length, 0);
    h.writeUInt32LE(4, 4);
    h.writeUInt32LE(type, 8);
    body.push(h, n, Buffer.alloc((4 - (n.length % 4)) % 4), Buffer.from([0, 0, 0, 1]));
  }
  const noteData = Buffer.concat(body);
  const buf = Buffer.alloc(64 + 56 + noteData.length);
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = 2;
  buf[5] = 1;
  buf.writeBigUInt64LE(64n, 32);
  buf.writeUInt16LE(56, 54);
  buf.writeUInt16LE(1, 56);
  buf.writeUInt32LE(4, 64); // PT_NOTE
  buf.writeBigUInt64LE(120n, 64 + 8); // p_offset
  buf.writeBigUInt64LE(BigInt(noteData.length), 64 + 32); // p_filesz
  noteData.copy(buf, 120);
  return buf;
}

/** A bzImage shell: setup header fields of boot protocol 2.15 around `payload`. */
function bzImage(payload: Buffer, version = 0x20f): Buffer {
  const setupSects = 1;
  const pm = (setupSects + 1) * 512;
  const buf = Buffer.alloc(pm + 16 + payload.length);
  buf[0x1f1] = setupSects;
  buf.write("HdrS", 0x202, "latin1");
  buf.writeUInt16LE(version, 0x206);
  buf.writeUInt32LE(16, 0x248);
  buf.writeUInt32LE(payload.length, 0x24c);
  payload.copy(buf, pm + 16);
  return buf;
}

describe("bzImage payload and PVH note", () => {
  it("finds the compressed payload and its format", () => {
    const gz = gzipSync(Buffer.from("kernel"));
    const r = bzImagePayload(bzImage(gz));
    expect(r.kind).toBe("gzip");
    expect(r.payload.equals(gz)).toBe(true);
    const xz = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 9, 9]);
    expect(bzImagePayload(bzImage(xz)).kind).toBe("xz");
    expect(bzImagePayload(bzImage(Buffer.from("????"))).kind).toBe("unknown");
  });

  it("rejects what is not a bzImage, or too old to say where the payload is", () => {
    expect(() => bzImagePayload(Buffer.alloc(4096))).toThrow(/HdrS/);
    expect(() => bzImagePayload(bzImage(Buffer.from("x"), 0x206))).toThrow(/older than 2.08/);
    const cut = bzImage(gzipSync(Buffer.from("kernel")));
    expect(() => bzImagePayload(cut.subarray(0, cut.length - 4))).toThrow(/past the end/);
  });

  it("recognizes the Xen PHYS32_ENTRY note and nothing else", () => {
    expect(
      hasPvhEntry(
        elfWithNotes([
          ["GNU", 3],
          ["Xen", 18],
        ]),
      ),
    ).toBe(true);
    expect(
      hasPvhEntry(
        elfWithNotes([
          ["Xen", 6],
          ["GNU", 18],
        ]),
      ),
    ).toBe(false);
    expect(
      hasPvhEntry(Buffer.from("not an elf at all, just some bytes here to pass the length check......")),
    ).toBe(false);
  });
});

describe("bootImage", () => {
  let dir = "";
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("unwraps a PVH-capable vmlinux and caches it", () => {
    dir = mkdtempSync(join(tmpdir(), "nkvm-bz-"));
    const elf = elfWithNotes([["Xen", 18]]);
    writeFileSync(join(dir, "vmlinuz"), bzImage(gzipSync(elf)));
    const r = bootImage({ dir, vmlinuz: join(dir, "vmlinuz") });
    expect(r).toEqual({ path: join(dir, "vmlinux"), pvh: true });
    expect(readFileSync(r.path).equals(elf)).toBe(true);
  });

  it("falls back to the bzImage with a reason, and remembers it", () => {
    dir = mkdtempSync(join(tmpdir(), "nkvm-bz-"));
    writeFileSync(join(dir, "vmlinuz"), bzImage(gzipSync(elfWithNotes([["GNU", 3]]))));
    const r = bootImage({ dir, vmlinuz: join(dir, "vmlinuz") });
    expect(r).toEqual({ path: join(dir, "vmlinuz"), pvh: false, why: "the kernel has no PVH entry note" });
    expect(existsSync(join(dir, "vmlinux"))).toBe(false);
    writeFileSync(join(dir, "vmlinuz"), "changed, but the verdict is cached");
    expect(bootImage({ dir, vmlinuz: join(dir, "vmlinuz") }).why).toBe("the kernel has no PVH entry note");
  });
});
