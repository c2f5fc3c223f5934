// A writer for the cpio "newc" format the Linux kernel unpacks as an initramfs. Written here so the
// lane needs no cpio binary and the archive is byte-for-byte reproducible (fixed inode numbers, mtime 0).

const TYPE_BITS = { dir: 0o040000, file: 0o100000, symlink: 0o120000, char: 0o020000 };

/** Pads `n` up to the next multiple of 4, the newc alignment for headers, names and data. */
function pad4(n) {
  return (4 - (n % 4)) % 4;
}

function hex8(value, field, name) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`cpio: ${field} of "${name}" must be an integer in 0..0xffffffff, got ${value}`);
  }
  return value.toString(16).padStart(8, "0");
}

function header(fields, name) {
  return `070701${[
    fields.ino,
    fields.mode,
    0, // uid: root
    0, // gid: root
    fields.nlink,
    0, // mtime: fixed, for reproducible archives
    fields.size,
    0,
    0,
    fields.rdevMajor,
    fields.rdevMinor,
    Buffer.byteLength(name) + 1,
    0,
  ]
    .map((v, i) => hex8(v, `header field ${i}`, name))
    .join("")}`;
}

/**
 * Builds a newc archive from entries `{ type: "dir"|"file"|"symlink"|"char", path, mode?, data?, target?,
 * major?, minor? }`. Paths are relative to the archive root (no leading "/"); parents must come first.
 * @returns {Buffer}
 */
export function buildCpio(entries) {
  const chunks = [];
  let offset = 0;
  const push = (buf) => {
    chunks.push(buf);
    offset += buf.length;
    const p = pad4(offset);
    if (p) {
      chunks.push(Buffer.alloc(p));
      offset += p;
    }
  };
  const seen = new Set();
  let ino = 1;
  for (const e of [...entries, { type: "trailer", path: "TRAILER!!!" }]) {
    const name = e.path;
    if (typeof name !== "string" || name === "" || name.startsWith("/") || name.includes("\0")) {
      throw new TypeError(`cpio: bad entry path ${JSON.stringify(name)} (relative, non-empty, no NUL)`);
    }
    if (e.type !== "trailer") {
      if (seen.has(name)) throw new Error(`cpio: duplicate entry "${name}"`);
      seen.add(name);
    }
    let data = Buffer.alloc(0);
    let typeBits = 0;
    let perm = 0;
    if (e.type === "dir") {
      typeBits = TYPE_BITS.dir;
      perm = e.mode ?? 0o755;
    } else if (e.type === "file") {
      if (!Buffer.isBuffer(e.data) && typeof e.data !== "string") {
        throw new TypeError(`cpio: file "${name}" needs data (Buffer or string)`);
      }
      data = Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
      typeBits = TYPE_BITS.file;
      perm = e.mode ?? 0o644;
    } else if (e.type === "symlink") {
      if (typeof e.target !== "string" || e.target === "") {
        throw new TypeError(`cpio: symlink "${name}" needs a target`);
      }
      data = Buffer.from(e.target);
      typeBits = TYPE_BITS.symlink;
      perm = 0o777;
    } else if (e.type === "char") {
      typeBits = TYPE_BITS.char;
      perm = e.mode ?? 0o600;
    } else if (e.type !== "trailer") {
      throw new TypeError(`cpio: unknown entry type ${JSON.stringify(e.type)} for "${name}"`);
    }
    const fields = {
      ino: e.type === "trailer" ? 0 : ino++,
      mode: typeBits | perm,
      nlink: e.type === "dir" ? 2 : e.type === "trailer" ? 1 : 1,
      size: data.length,
      rdevMajor: e.type === "char" ? (e.major ?? 0) : 0,
      rdevMinor: e.type === "char" ? (e.minor ?? 0) : 0,
    };
    push(Buffer.from(`${header(fields, name)}${name}\0`, "latin1"));
    if (data.length) push(data);
  }
  return Buffer.concat(chunks);
}

/**
 * Reads a newc archive back into `{ path, mode, size, rdevMajor, rdevMinor, data }` entries (trailer
 * excluded). Used by the tests and to sanity-check what was built.
 */
export function parseCpio(buf) {
  const out = [];
  let off = 0;
  for (;;) {
    if (off + 110 > buf.length) throw new Error(`cpio: truncated header at offset ${off}`);
    const magic = buf.toString("latin1", off, off + 6);
    if (magic !== "070701") throw new Error(`cpio: bad magic ${JSON.stringify(magic)} at offset ${off}`);
    const f = (i) => Number.parseInt(buf.toString("latin1", off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = f(1);
    const size = f(6);
    const namesize = f(11);
    const nameStart = off + 110;
    const name = buf.toString("latin1", nameStart, nameStart + namesize - 1);
    let dataStart = nameStart + namesize;
    dataStart += pad4(dataStart);
    if (name === "TRAILER!!!") return out;
    if (dataStart + size > buf.length) throw new Error(`cpio: truncated data for "${name}"`);
    out.push({
      path: name,
      mode,
      size,
      rdevMajor: f(9),
      rdevMinor: f(10),
      data: buf.subarray(dataStart, dataStart + size),
    });
    off = dataStart + size;
    off += pad4(off);
  }
}
