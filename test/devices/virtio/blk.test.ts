// virtio-blk against a real disk image file (and a recording image where the order of writes and
// flushes matters): reads, writes, flushes, GET_ID, discard and write-zeroes, read-only drives,
// requests past the end, several requests per notify, and the config space Linux reads.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DeviceConfigError } from "../../../lib/devices/errors.js";
import {
  BLK_MAX_DISCARD_SECTORS,
  BLK_SIZE_MAX,
  type BlockImage,
  featureBit,
  VirtioMmioReg as R,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_F_VERSION_1,
  VirtioBlk,
  type VirtioBlkOptions,
} from "../../../lib/devices/virtio/index.js";
import { type Buf, type DriverQueue, FakeRam, TestDriver } from "./driver.js";

const dir = mkdtempSync(join(tmpdir(), "nodevmm-virtio-blk-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

const SECTORS = 64;

/** a disk image whose sector n is filled with byte (n + 1) */
function image(sectors = SECTORS, extra = 0): string {
  const p = join(dir, `disk${files++}.img`);
  const b = new Uint8Array(sectors * 512 + extra);
  for (let s = 0; s < sectors; s++) b.fill(s + 1, s * 512, s * 512 + 512);
  writeFileSync(p, b);
  return p;
}

function header(type: number, sector = 0): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(8, sector % 2 ** 32, true);
  v.setUint32(12, Math.floor(sector / 2 ** 32), true);
  return h;
}

class Blk {
  readonly mem = new FakeRam(4 << 20);
  readonly dev: VirtioBlk;
  readonly drv: TestDriver;
  readonly q: DriverQueue;

  constructor(opts: Partial<VirtioBlkOptions>, features?: bigint) {
    this.dev = new VirtioBlk({ base: 0xd0000000, irq: 5, memory: this.mem.ram, ...opts } as VirtioBlkOptions);
    this.drv = new TestDriver(this.dev, this.mem);
    const all = features ?? this.drv.deviceFeatures;
    this.q = this.drv.start(1, 16, all)[0]!;
  }

  /** queues a request (without notifying); returns where its data and status live */
  submit(type: number, sector: number, data: { out?: Uint8Array; inLen?: number } = {}) {
    const h = this.mem.put(header(type, sector));
    const bufs: Buf[] = [{ addr: h, len: 16 }];
    if (data.out) bufs.push({ addr: this.mem.put(data.out), len: data.out.length });
    const inAt = data.inLen ? this.mem.alloc(data.inLen) : 0;
    if (data.inLen) bufs.push({ addr: inAt, len: data.inLen, write: true });
    const status = this.mem.alloc(1);
    this.mem.bytes[status] = 0xff;
    bufs.push({ addr: status, len: 1, write: true });
    const head = this.q.add(bufs);
    return {
      head,
      status: () => this.mem.bytes[status],
      data: () => this.mem.get(inAt, data.inLen ?? 0),
    };
  }

  /** submits one request, notifies, and returns its status, data and used length */
  run(type: number, sector: number, data: { out?: Uint8Array; inLen?: number } = {}) {
    const r = this.submit(type, sector, data);
    this.drv.notify(0);
    const used = this.q.takeUsed();
    expect(used.map((u) => u.id)).toEqual([r.head]);
    return { status: r.status(), data: r.data(), len: used[0]!.len };
  }
}

describe("virtio-blk", () => {
  it("offers SIZE_MAX, SEG_MAX, FLUSH, DISCARD and WRITE_ZEROES, and reports capacity in its config", () => {
    const b = new Blk({ path: image() });
    const f = b.drv.deviceFeatures;
    for (const n of [VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_FLUSH]) {
      expect(f & featureBit(n)).not.toBe(0n);
    }
    expect(f & featureBit(VIRTIO_BLK_F_DISCARD)).not.toBe(0n);
    expect(f & featureBit(VIRTIO_BLK_F_WRITE_ZEROES)).not.toBe(0n);
    expect(f & featureBit(VIRTIO_BLK_F_RO)).toBe(0n);
    expect(b.drv.r(R.DeviceID)).toBe(2);
    expect(b.drv.r(R.Config)).toBe(SECTORS); // capacity low
    expect(b.drv.r(R.Config + 4)).toBe(0); // capacity high
    expect(b.drv.r(R.Config, 1)).toBe(SECTORS); // byte access to config space works too
    expect(b.drv.r(R.Config + 8)).toBe(BLK_SIZE_MAX);
    expect(b.drv.r(R.Config + 12)).toBe(254); // seg_max: queue size 256 - header - status
    expect(b.drv.r(R.Config + 36)).toBe(BLK_MAX_DISCARD_SECTORS);
    b.dev.close();
  });

  it("capacity counts whole sectors only", () => {
    const b = new Blk({ path: image(10, 100) });
    expect(b.dev.sectors).toBe(10);
    b.dev.close();
  });

  it("reads sectors into guest memory", () => {
    const b = new Blk({ path: image() });
    const r = b.run(VIRTIO_BLK_T_IN, 3, { inLen: 1024 });
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect(r.len).toBe(1025);
    expect(r.data.subarray(0, 512).every((x) => x === 4)).toBe(true);
    expect(r.data.subarray(512).every((x) => x === 5)).toBe(true);
    b.dev.close();
  });

  it("writes sectors to the file", () => {
    const path = image();
    const b = new Blk({ path });
    const data = new Uint8Array(1024).map((_, i) => (i * 7) & 0xff);
    const r = b.run(VIRTIO_BLK_T_OUT, 10, { out: data });
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect(r.len).toBe(1);
    b.dev.close();
    const file = readFileSync(path);
    expect([...file.subarray(10 * 512, 12 * 512)]).toEqual([...data]);
    expect(file[9 * 512]).toBe(10);
    expect(file[12 * 512]).toBe(13);
  });

  it("handles any framing: header, data and status split across descriptors anywhere", () => {
    const path = image();
    const b = new Blk({ path });
    // a write whose header and first data bytes share a descriptor, data split 100/412
    const data = new Uint8Array(512).fill(0xab);
    const req = new Uint8Array(16 + 512);
    req.set(header(VIRTIO_BLK_T_OUT, 5));
    req.set(data, 16);
    const at = b.mem.put(req);
    const st = b.mem.alloc(1);
    b.q.add([
      { addr: at, len: 10 },
      { addr: at + 10, len: 106 },
      { addr: at + 116, len: 412 },
      { addr: st, len: 1, write: true },
    ]);
    // a read whose data and status share the last descriptor
    const hd = b.mem.put(header(VIRTIO_BLK_T_IN, 5));
    const inBuf = b.mem.alloc(513);
    b.q.add([
      { addr: hd, len: 16 },
      { addr: inBuf, len: 300, write: true },
      { addr: inBuf + 300, len: 213, write: true },
    ]);
    b.drv.notify(0);
    expect(b.q.takeUsed().map((u) => u.len)).toEqual([1, 513]);
    expect(b.mem.bytes[st]).toBe(VIRTIO_BLK_S_OK);
    expect(b.mem.bytes[inBuf + 512]).toBe(VIRTIO_BLK_S_OK);
    expect(b.mem.get(inBuf, 512).every((x) => x === 0xab)).toBe(true);
    b.dev.close();
    expect(
      readFileSync(path)
        .subarray(5 * 512, 6 * 512)
        .every((x) => x === 0xab),
    ).toBe(true);
  });

  it("completes every available request on one notify, in order, with one interrupt", () => {
    const b = new Blk({ path: image() });
    const reqs = [0, 1, 2, 3, 4].map((s) => b.submit(VIRTIO_BLK_T_IN, s * 2, { inLen: 512 }));
    b.drv.notify(0);
    expect(b.q.takeUsed().map((u) => u.id)).toEqual(reqs.map((r) => r.head));
    reqs.forEach((r, i) => {
      expect(r.status()).toBe(VIRTIO_BLK_S_OK);
      expect(r.data()[0]).toBe(i * 2 + 1);
    });
    expect(b.drv.irq.rises).toBe(1);
    b.dev.close();
  });

  it("requests past the capacity, or not whole sectors, fail with IOERR and touch nothing", () => {
    const path = image();
    const b = new Blk({ path });
    expect(b.run(VIRTIO_BLK_T_IN, SECTORS, { inLen: 512 }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_IN, SECTORS - 1, { inLen: 1024 }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_IN, 2 ** 53, { inLen: 512 }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_IN, 0, { inLen: 100 }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_OUT, SECTORS, { out: new Uint8Array(512) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_OUT, 0, { out: new Uint8Array(511) }).status).toBe(VIRTIO_BLK_S_IOERR);
    // the last sector is fine
    expect(b.run(VIRTIO_BLK_T_IN, SECTORS - 1, { inLen: 512 }).data[0]).toBe(SECTORS);
    expect(b.dev.broken).toBeUndefined();
    b.dev.close();
    expect(readFileSync(path)).toEqual(readFileSync(image()));
  });

  it("GET_ID returns the serial, NUL-padded to 20 bytes", () => {
    const b = new Blk({ path: image(), serial: "disk-7" });
    const r = b.run(VIRTIO_BLK_T_GET_ID, 0, { inLen: 20 });
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect(r.len).toBe(21);
    expect(Buffer.from(r.data).toString("latin1")).toBe(`disk-7${"\0".repeat(14)}`);
    b.dev.close();
    const d = new Blk({ path: join(dir, "named.img"), image: memImage(4) });
    expect(Buffer.from(d.run(VIRTIO_BLK_T_GET_ID, 0, { inLen: 20 }).data).toString("latin1")).toMatch(
      /^named\.img\0/,
    );
  });

  it("discard and write-zeroes leave zeroes; unknown flags are UNSUPP, too many sectors IOERR", () => {
    const path = image();
    const b = new Blk({ path });
    const seg = (sector: number, n: number, flags = 0) => {
      const s = new Uint8Array(16);
      const v = new DataView(s.buffer);
      v.setUint32(0, sector, true);
      v.setUint32(8, n, true);
      v.setUint32(12, flags, true);
      return s;
    };
    const two = new Uint8Array(32);
    two.set(seg(2, 2));
    two.set(seg(8, 1), 16);
    expect(b.run(VIRTIO_BLK_T_DISCARD, 0, { out: two }).status).toBe(VIRTIO_BLK_S_OK);
    expect(b.run(VIRTIO_BLK_T_WRITE_ZEROES, 0, { out: seg(20, 3, 1) }).status).toBe(VIRTIO_BLK_S_OK);
    expect(b.run(VIRTIO_BLK_T_DISCARD, 0, { out: seg(30, 1, 1) }).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(b.run(VIRTIO_BLK_T_WRITE_ZEROES, 0, { out: seg(30, 1, 2) }).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(b.run(VIRTIO_BLK_T_DISCARD, 0, { out: seg(0, BLK_MAX_DISCARD_SECTORS + 1) }).status).toBe(
      VIRTIO_BLK_S_IOERR,
    );
    expect(b.run(VIRTIO_BLK_T_DISCARD, 0, { out: seg(SECTORS - 1, 2) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_DISCARD, 0).status).toBe(VIRTIO_BLK_S_IOERR); // no segment
    // reads see the zeroes
    expect(b.run(VIRTIO_BLK_T_IN, 2, { inLen: 1024 }).data.every((x) => x === 0)).toBe(true);
    b.dev.close();
    const file = readFileSync(path);
    const zeroed = new Set([2, 3, 8, 20, 21, 22]);
    for (let s = 0; s < SECTORS; s++) expect(file[s * 512 + 17]).toBe(zeroed.has(s) ? 0 : s + 1);
  });

  it("unknown request types are UNSUPP", () => {
    const b = new Blk({ path: image() });
    expect(b.run(10, 0, { inLen: 8 }).status).toBe(VIRTIO_BLK_S_UNSUPP); // GET_LIFETIME
    expect(b.run(0x7fff, 0).status).toBe(VIRTIO_BLK_S_UNSUPP);
    b.dev.close();
  });

  it("a read-only drive offers RO, reads, and fails writes and zeroing without touching the file", () => {
    const path = image();
    const before = readFileSync(path);
    const b = new Blk({ path, readonly: true });
    const f = b.drv.deviceFeatures;
    expect(f & featureBit(VIRTIO_BLK_F_RO)).not.toBe(0n);
    expect(f & featureBit(VIRTIO_BLK_F_DISCARD)).toBe(0n);
    expect(b.run(VIRTIO_BLK_T_IN, 1, { inLen: 512 }).data[0]).toBe(2);
    expect(b.run(VIRTIO_BLK_T_OUT, 1, { out: new Uint8Array(512) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_DISCARD, 0, { out: new Uint8Array(16) }).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(b.run(VIRTIO_BLK_T_FLUSH, 0).status).toBe(VIRTIO_BLK_S_OK);
    b.dev.close();
    expect(readFileSync(path)).toEqual(before);
  });

  it("a flush syncs the image before it completes; without FLUSH negotiated every write is synced", () => {
    const log: string[] = [];
    const img = memImage(8, log);
    const b = new Blk({ image: img });
    b.run(VIRTIO_BLK_T_OUT, 1, { out: new Uint8Array(512).fill(9) });
    expect(log).toEqual(["write 512@512"]);
    const f = b.submit(VIRTIO_BLK_T_FLUSH, 0);
    b.drv.notify(0);
    expect(log).toEqual(["write 512@512", "flush"]);
    expect(f.status()).toBe(VIRTIO_BLK_S_OK);
    log.length = 0;
    // a driver that does not know FLUSH: writes are stable when they complete
    const wt = new Blk({ image: memImage(8, log) }, featureBit(VIRTIO_F_VERSION_1));
    wt.run(VIRTIO_BLK_T_OUT, 0, { out: new Uint8Array(512) });
    expect(log).toEqual(["write 512@0", "flush"]);
  });

  it("I/O errors from the image come back as IOERR", () => {
    const img = memImage(8);
    img.fail = true;
    const b = new Blk({ image: img });
    expect(b.run(VIRTIO_BLK_T_IN, 0, { inLen: 512 }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_OUT, 0, { out: new Uint8Array(512) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.run(VIRTIO_BLK_T_FLUSH, 0).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(b.dev.broken).toBeUndefined();
  });

  it("a missing or unusable file is a DeviceConfigError naming it", () => {
    const mem = new FakeRam();
    const base = { base: 0xd0000000, irq: 5, memory: mem.ram };
    expect(() => new VirtioBlk({ ...base, path: join(dir, "nope.img") })).toThrow(/nope\.img: no such file/);
    expect(() => new VirtioBlk({ ...base, path: dir })).toThrow(DeviceConfigError);
    expect(() => new VirtioBlk({ ...base, path: "" })).toThrow(/path/);
    expect(() => new VirtioBlk({ ...base, path: image(), serial: "x".repeat(21) })).toThrow(/serial/);
  });
});

/** an in-memory image that logs writes and flushes */
function memImage(sectors: number, log: string[] = []): BlockImage & { fail: boolean } {
  const bytes = new Uint8Array(sectors * 512);
  const img = {
    size: bytes.length,
    readonly: false,
    fail: false,
    read(into: Uint8Array, pos: number) {
      if (img.fail) throw new Error("EIO");
      into.set(bytes.subarray(pos, pos + into.length));
    },
    write(from: Uint8Array, pos: number) {
      if (img.fail) throw new Error("EIO");
      log.push(`write ${from.length}@${pos}`);
      bytes.set(from, pos);
    },
    flush() {
      if (img.fail) throw new Error("EIO");
      log.push("flush");
    },
    close() {},
  };
  return img;
}
