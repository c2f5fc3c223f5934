// Tells a statically linked ELF from a dynamic one: the initramfs has no libc, so a dynamically linked
// busybox (Debian's "busybox" package instead of "busybox-static") would die as PID 1 with no message.

const PT_INTERP = 3;

/**
 * @param {Buffer} buf the start of the file (at least the ELF header and program headers)
 * @returns {"static" | "dynamic" | "not-elf"}
 */
export function elfLinkage(buf) {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) return "not-elf";
  const is64 = buf[4] === 2;
  const le = buf[5] === 1;
  const u16 = (o) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const phoff = is64 ? Number(le ? buf.readBigUInt64LE(32) : buf.readBigUInt64BE(32)) : u32(28);
  const phentsize = u16(is64 ? 54 : 42);
  const phnum = u16(is64 ? 56 : 44);
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (o + 4 > buf.length) return "not-elf";
    if (u32(o) === PT_INTERP) return "dynamic";
  }
  return "static";
}
