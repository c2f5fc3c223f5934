// lib/kvm's TypeScript copy of the KVM ABI against the C compiler's (offsetof/sizeof/request
// numbers from <linux/kvm.h>, exported by the addon).

import { describe, expect, it } from "vitest";
import { addonAbiTable, KVM_IOCTLS, LAYOUTS } from "../../lib/kvm/index.js";

const table = addonAbiTable();
const reason = table ? "" : " (skipped: the addon is not built, so there is no C table to compare with)";

describe.skipIf(!table)(`KVM ABI: TypeScript vs C${reason}`, () => {
  it("every struct the C table describes has the same size and field offsets in LAYOUTS", () => {
    const c = table!.structs;
    expect(Object.keys(c).length).toBeGreaterThan(20);
    for (const [name, s] of Object.entries(c)) {
      const ts = (LAYOUTS as Record<string, { size: number; fields: Record<string, number> }>)[name];
      expect(ts, name).toBeDefined();
      expect({ name, size: ts!.size }).toEqual({ name, size: s.size });
      expect({ name, fields: ts!.fields }).toEqual({ name, fields: s.fields });
    }
  });

  it("every ioctl request number matches the kernel header's", () => {
    expect(KVM_IOCTLS).toEqual(table!.ioctls);
  });
});
