export function elfLinkage(buf: Buffer): "static" | "dynamic" | "not-elf";
