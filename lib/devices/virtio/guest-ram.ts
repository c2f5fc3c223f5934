// Guest RAM as virtio devices reach it: views into the guest's own bytes (zero-copy; on KVM the
// mmap'd memory, on the soft backend the RAM its EPT maps), checked against RAM's bounds. The machine
// adapts its GuestMemory to this (lib/vmm/virtio.ts); tests hand in an ArrayBuffer.

/** Guest RAM as virtio devices reach it: zero-copy views checked against RAM's bounds. */
export interface GuestRam {
  /**
   * A view of [gpa, gpa+length) when the whole range is RAM, else undefined (MMIO, a hole, past the
   * end). Writes through the view reach the guest.
   */
  view(gpa: number, length: number): Uint8Array | undefined;
  /**
   * Optional: the device has written [gpa, gpa+length) through views (called as a chain it could
   * write into is used), so that vCPUs drop code they decoded from there.
   */
  wrote?(gpa: number, length: number): void;
  /**
   * Optional: the device wrote [gpa, gpa+length) of its used ring, through the view it keeps from
   * the queue's set-up (at each used entry, and avail_event as it takes a chain): a host write
   * like the others for the vCPUs' cached code.
   */
  ringWritten?(gpa: number, length: number): void;
}

/** Guest RAM made of one byte array at guest-physical `base` (tests, simple embedders). */
export function flatGuestRam(bytes: Uint8Array, base = 0): GuestRam {
  return {
    view(gpa, length) {
      const off = gpa - base;
      if (!Number.isSafeInteger(off) || !Number.isSafeInteger(length)) return undefined;
      if (off < 0 || length < 0 || off + length > bytes.length) return undefined;
      return bytes.subarray(off, off + length);
    },
  };
}

/** a DataView over exactly the bytes of `v` */
export function dataView(v: Uint8Array): DataView {
  return new DataView(v.buffer, v.byteOffset, v.byteLength);
}
