// JSON that keeps BigInts (registers, MSRs): written as {"$big":"hex"} and read back as bigint.

const TAG = "$big";

export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? { [TAG]: v.toString(16) } : v));
}

export function fromJson(text: string): unknown {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      const hex = (v as Record<string, unknown>)[TAG];
      if (keys.length === 1 && typeof hex === "string" && /^-?[0-9a-f]+$/.test(hex)) {
        return hex.startsWith("-") ? -BigInt(`0x${hex.slice(1)}`) : BigInt(`0x${hex}`);
      }
    }
    return v;
  });
}
