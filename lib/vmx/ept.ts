// EPT: guest-physical -> host-physical translation through the 4-level paging structures the host
// keeps in host-physical memory (SDM 28.3). The walker reports exactly what an EPT violation or
// misconfiguration exit needs.

import { MAXPHYADDR } from "./capabilities.js";
import type { HostMemory } from "./host-memory.js";

export const EPT_READ = 1;
export const EPT_WRITE = 2;
export const EPT_EXEC = 4;
/** Leaf memory type write-back (bits 5:3 = 6). */
export const EPT_MT_WB = 6 << 3;
export const EPT_LARGE = 1 << 7;

/** EPTP: memory type UC/WB, 4-level walk, no A/D flags, reserved bits clear, address in range. */
export function validEptp(eptp: bigint): boolean {
  const mt = Number(eptp & 7n);
  if (mt !== 0 && mt !== 6) return false;
  if (Number((eptp >> 3n) & 7n) !== 3) return false;
  if (eptp & 0xfc0n) return false; // bit 6 (A/D) unsupported, 11:7 reserved
  return eptp >> BigInt(MAXPHYADDR) === 0n;
}

export const EPT_OK = 0;
export const EPT_VIOLATION = 1;
export const EPT_MISCONFIG = 2;

export interface EptWalk {
  status: typeof EPT_OK | typeof EPT_VIOLATION | typeof EPT_MISCONFIG;
  /** AND of R/W/X over the entries walked (bits 2:0), 0 when an entry was not present */
  permissions: number;
  /** host-physical address of the translated byte (status EPT_OK) */
  hpa: number;
}

const HI_RESERVED = ((1 << (52 - 32)) - 1) & ~((1 << (MAXPHYADDR - 32)) - 1);
const TWO32 = 2 ** 32;

/**
 * Walks the EPT for gpa. `need` is the permission bit the access requires. A violation is reported
 * for a missing entry or insufficient permissions; a misconfiguration for a malformed entry
 * (write without read, reserved bits, bad memory type), which takes precedence as on hardware.
 */
export function eptWalk(mem: HostMemory, eptp: bigint, gpa: number, need: number): EptWalk {
  let table = Number(eptp & 0x7ffffff000n);
  let perms = 7;
  for (let level = 4; level >= 1; level--) {
    const shift = 12 + 9 * (level - 1);
    const index = Math.floor(gpa / 2 ** shift) % 512;
    const at = table + index * 8;
    if (!mem.isBacked(at, 8)) return { status: EPT_MISCONFIG, permissions: 0, hpa: 0 };
    const lo = mem.readU32(at);
    const hi = mem.readU32(at + 4);
    const rwx = lo & 7;
    if (rwx === 0) return { status: EPT_VIOLATION, permissions: 0, hpa: 0 };
    if ((rwx & EPT_WRITE && !(rwx & EPT_READ)) || hi & HI_RESERVED) {
      return { status: EPT_MISCONFIG, permissions: 0, hpa: 0 };
    }
    const large = (lo & EPT_LARGE) !== 0;
    const leaf = level === 1 || (large && (level === 2 || level === 3));
    if (!leaf && (level === 4 || !large) && lo & 0xf8)
      return { status: EPT_MISCONFIG, permissions: 0, hpa: 0 };
    if (level === 4 && large) return { status: EPT_MISCONFIG, permissions: 0, hpa: 0 };
    perms &= rwx;
    const addr = (hi & ((1 << (MAXPHYADDR - 32)) - 1)) * TWO32 + ((lo & 0xfffff000) >>> 0);
    if (leaf) {
      const mt = (lo >>> 3) & 7;
      if (mt === 2 || mt === 3 || mt === 7) return { status: EPT_MISCONFIG, permissions: 0, hpa: 0 };
      const pageSize = 2 ** shift;
      // reserved bits between 12 and the page size in a large-page entry
      if (level > 1 && (lo & (pageSize - 1) & 0xfffff000) !== 0) {
        return { status: EPT_MISCONFIG, permissions: 0, hpa: 0 };
      }
      const hpa = addr + (gpa % pageSize);
      if ((perms & need) !== need) return { status: EPT_VIOLATION, permissions: perms, hpa: 0 };
      return { status: EPT_OK, permissions: perms, hpa };
    }
    table = addr;
  }
  return { status: EPT_VIOLATION, permissions: 0, hpa: 0 };
}
