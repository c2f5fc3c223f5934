// Incremental snapshots come in chains: a full snapshot, then files that each hold only the pages
// written since the one before (their base). A file names its base by the base's id (the SHA-256
// of its header, which covers every section's checksum) and by where it was, relative to the file;
// a restore follows those names, or takes the chain as a list, and refuses any file that is not the
// base its successor was made on. Every file is opened and checked as usual (header, sections,
// RAM's CRC as it is read), so a corrupt link anywhere is a SnapshotError naming that file.

import { dirname, resolve } from "node:path";
import { SnapshotError } from "./errors.js";
import type { Container } from "./format.js";

/** files deeper than this are taken for a loop of bases (which ids would make impossible anyway) */
const MAX_CHAIN = 10_000;

/** One file of a chain: where it is and what was read of it. */
export interface ChainLink<T> {
  path: string;
  file: T;
}

const short = (id: string): string => id.slice(0, 16);

/** the error of opening `path` as the base of `of`, naming both */
function baseError(path: string, of: string, e: unknown): SnapshotError {
  const why = e instanceof SnapshotError ? e.message : e instanceof Error ? e.message : String(e);
  return new SnapshotError("base", `${path} (the base of ${of}): ${why}`);
}

function checkBase(
  link: ChainLink<{ container: Container }>,
  next: ChainLink<{ container: Container }>,
): void {
  const want = next.file.container.header.base;
  if (!want) {
    throw new SnapshotError(
      "base",
      `${next.path} is a full snapshot, not an incremental one on ${link.path}`,
    );
  }
  const have = link.file.container.id;
  if (have !== want.id) {
    throw new SnapshotError(
      "base",
      `${link.path} is not the base of ${next.path}: its id is ${short(have)}..., ${next.path} was saved on ${short(want.id)}...`,
    );
  }
}

/**
 * The chain that ends in `top` (oldest first: the full snapshot, then each incremental one), each
 * file read by `load`. `top` a path: the bases are found where the files name them; a list: those
 * files, in that order. A base that is missing, unreadable or another snapshot is a
 * SnapshotError("base") naming it; `close` releases what `load` opened when the walk fails.
 */
export function walkChain<T extends { container: Container }>(
  top: string | readonly string[],
  load: (path: string) => T,
  close: (file: T) => void = () => {},
): ChainLink<T>[] {
  const links: ChainLink<T>[] = [];
  try {
    if (typeof top !== "string") {
      if (top.length === 0) throw new SnapshotError("file", "an empty list of snapshot files");
      top.forEach((path, i) => {
        const link = { path, file: i === 0 ? load(path) : loadBase(path, top[i - 1]!, load) };
        links.push(link);
        const base = link.file.container.header.base;
        if (i === 0 && base) {
          throw new SnapshotError(
            "base",
            `${path} is incremental (on ${short(base.id)}...): the list starts with a full snapshot`,
          );
        }
        if (i > 0) checkBase(links[i - 1]!, link);
      });
      return links;
    }
    links.push({ path: top, file: load(top) });
    const seen = new Set([links[0]!.file.container.id]);
    for (;;) {
      const newest = links[0]!;
      const base = newest.file.container.header.base;
      if (!base) return links;
      if (links.length >= MAX_CHAIN || seen.has(base.id)) {
        throw new SnapshotError("base", `${newest.path}: its chain of bases loops or is too long`);
      }
      const path = resolve(dirname(newest.path), base.file);
      const link = { path, file: loadBase(path, newest.path, load) };
      links.unshift(link);
      checkBase(link, newest);
      seen.add(base.id);
    }
  } catch (e) {
    for (const l of links) close(l.file);
    throw e;
  }
}

function loadBase<T>(path: string, of: string, load: (path: string) => T): T {
  try {
    return load(path);
  } catch (e) {
    throw baseError(path, of, e);
  }
}
