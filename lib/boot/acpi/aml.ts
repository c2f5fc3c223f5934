// A tiny AML encoder (ACPI 6.x section 20, "ACPI Machine Language Specification"): the few
// constructs a minimal DSDT needs - names, integers, strings, packages and scopes - so the DSDT is
// written as what it means, not as opaque hex. Each function returns the encoded bytes.

import { BootSetupError } from "../errors.js";

export const AML = {
  ZeroOp: 0x00,
  OneOp: 0x01,
  NameOp: 0x08,
  BytePrefix: 0x0a,
  WordPrefix: 0x0b,
  DWordPrefix: 0x0c,
  StringPrefix: 0x0d,
  QWordPrefix: 0x0e,
  ScopeOp: 0x10,
  BufferOp: 0x11,
  PackageOp: 0x12,
  ExtOpPrefix: 0x5b,
  DeviceOp: 0x82,
  DualNamePrefix: 0x2e,
  MultiNamePrefix: 0x2f,
  RootChar: 0x5c,
  ParentPrefixChar: 0x5e,
  OnesOp: 0xff,
} as const;

export type Aml = Uint8Array;

function concat(parts: readonly (Uint8Array | readonly number[])[]): Aml {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * PkgLength for a body of `bodyLength` bytes: the encoded length counts its own bytes. One byte holds
 * up to 63; otherwise bits 7:6 of the lead byte say how many bytes follow, its bits 3:0 are the low
 * nibble and each following byte the next 8 bits.
 */
export function pkgLength(bodyLength: number): number[] {
  for (let follow = 0; follow <= 3; follow++) {
    const total = bodyLength + 1 + follow;
    if (follow === 0 && total <= 0x3f) return [total];
    if (follow > 0 && total < 2 ** (4 + 8 * follow)) {
      const out = [(follow << 6) | (total & 0x0f)];
      for (let i = 0; i < follow; i++) out.push(Math.floor(total / 2 ** (4 + 8 * i)) & 0xff);
      return out;
    }
  }
  throw new BootSetupError(`AML package body of ${bodyLength} bytes is beyond PkgLength's 2^28`);
}

/** A NameSeg: 4 characters, the first A-Z or _, the rest A-Z, 0-9 or _; short names are padded with _. */
export function nameSeg(seg: string): number[] {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) {
    throw new BootSetupError(
      `"${seg}" is not an AML name segment (1-4 of A-Z, 0-9, _; not starting with a digit)`,
    );
  }
  const s = seg.padEnd(4, "_");
  return [...s].map((c) => c.charCodeAt(0));
}

/** A NameString: `\` for the root and `^` for each parent level, then segments joined by dots. */
export function nameString(path: string): Aml {
  const m = /^(\\|\^*)(.*)$/.exec(path)!;
  const prefix = [...m[1]!].map((c) => (c === "\\" ? AML.RootChar : AML.ParentPrefixChar));
  const segs = m[2] === "" ? [] : m[2]!.split(".");
  const body = segs.flatMap(nameSeg);
  if (segs.length === 0) return Uint8Array.from([...prefix, AML.ZeroOp]); // NullName
  if (segs.length === 1) return Uint8Array.from([...prefix, ...body]);
  if (segs.length === 2) return Uint8Array.from([...prefix, AML.DualNamePrefix, ...body]);
  if (segs.length > 255) throw new BootSetupError(`AML name "${path}" has more than 255 segments`);
  return Uint8Array.from([...prefix, AML.MultiNamePrefix, segs.length, ...body]);
}

/** An integer in the shortest form: ZeroOp, OneOp, or Byte/Word/DWord/QWord constant. */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new BootSetupError(`AML integer ${v} is outside 0..2^64-1`);
  }
  if (v === 0n) return Uint8Array.of(AML.ZeroOp);
  if (v === 1n) return Uint8Array.of(AML.OneOp);
  const sized = (prefix: number, bytes: number) => {
    const out = new Uint8Array(1 + bytes);
    out[0] = prefix;
    for (let i = 0; i < bytes; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
    return out;
  };
  if (v <= 0xffn) return sized(AML.BytePrefix, 1);
  if (v <= 0xffffn) return sized(AML.WordPrefix, 2);
  if (v <= 0xffff_ffffn) return sized(AML.DWordPrefix, 4);
  return sized(AML.QWordPrefix, 8);
}

/** A String constant: ASCII 0x01-0x7F, NUL-terminated. */
export function string(s: string): Aml {
  if ([...s].some((c) => c.charCodeAt(0) < 1 || c.charCodeAt(0) > 0x7f))
    throw new BootSetupError(`AML string "${s}" is not ASCII without NUL`);
  return concat([[AML.StringPrefix], [...s].map((c) => c.charCodeAt(0)), [0]]);
}

/** What a package element or a Name may hold. */
export type AmlData = number | bigint | string | Aml;

function data(d: AmlData): Aml {
  if (typeof d === "number" || typeof d === "bigint") return integer(d);
  if (typeof d === "string") return string(d);
  return d;
}

/** Package(){...}: PackageOp, PkgLength, NumElements, the elements. */
export function pkg(elements: readonly AmlData[]): Aml {
  if (elements.length > 255) throw new BootSetupError("an AML Package holds at most 255 elements");
  const body = concat([[elements.length], ...elements.map(data)]);
  return concat([[AML.PackageOp], pkgLength(body.length), body]);
}

/** Name(path, value). */
export function name(path: string, value: AmlData): Aml {
  return concat([[AML.NameOp], nameString(path), data(value)]);
}

/** Scope(path){terms}. */
export function scope(path: string, terms: readonly Aml[]): Aml {
  const body = concat([nameString(path), ...terms]);
  return concat([[AML.ScopeOp], pkgLength(body.length), body]);
}

/** Terms one after another (a table's TermList). */
export function terms(list: readonly Aml[]): Aml {
  return concat(list);
}

/** Buffer(){bytes}: BufferOp, PkgLength, BufferSize, the bytes. */
export function buffer(bytes: Uint8Array | readonly number[]): Aml {
  const body = concat([integer(bytes.length), bytes]);
  return concat([[AML.BufferOp], pkgLength(body.length), body]);
}

/** Device(path){terms}. */
export function device(path: string, terms: readonly Aml[]): Aml {
  const body = concat([nameString(path), ...terms]);
  return concat([[AML.ExtOpPrefix, AML.DeviceOp], pkgLength(body.length), body]);
}

/**
 * The resource descriptors of a ResourceTemplate (ACPI 6.x 6.4), closed by the End Tag (checksum
 * 0: "treat as correct"), as the Buffer a _CRS names.
 */
export function resourceTemplate(descriptors: readonly (readonly number[])[]): Aml {
  return buffer(concat([...descriptors, [0x79, 0x00]]));
}

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** Memory32Fixed(ReadWrite or ReadOnly, base, length): large item 0x86 (6.4.3.4). */
export function memory32Fixed(base: number, length: number, writable = true): number[] {
  return [0x86, 9, 0, writable ? 1 : 0, ...le32(base), ...le32(length)];
}

/**
 * Interrupt(ResourceConsumer, Level or Edge, ActiveHigh or ActiveLow, Exclusive){gsi}: the
 * Extended Interrupt Descriptor, large item 0x89 (6.4.3.6), with one interrupt.
 */
export function extendedInterrupt(gsi: number, opts: { edge: boolean; activeLow: boolean }): number[] {
  const flags = 1 | (opts.edge ? 2 : 0) | (opts.activeLow ? 4 : 0);
  return [0x89, 6, 0, flags, 1, ...le32(gsi)];
}
