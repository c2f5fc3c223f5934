// Text helpers shared by the host side: quoting for the guest's shell scripts, and picking vitest's
// summary out of its output.

/** Quotes one word for a POSIX shell (dash, busybox sh): single quotes, with ' written as '\''. */
export function shQuote(word) {
  const s = String(word);
  if (s.includes("\0"))
    throw new TypeError(`cannot pass a NUL byte to the guest shell: ${JSON.stringify(s)}`);
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ESC is the point
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007]*\u0007/g;

export function stripAnsi(text) {
  return text.replace(ANSI, "");
}

/** vitest's closing block ("Test Files", "Tests", "Errors", "Start at", "Duration"), ANSI stripped. */
export function vitestSummary(output) {
  const lines = stripAnsi(output).replaceAll("\r", "").split("\n");
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/^\s*Test Files\s/.test(lines[i])) {
      start = i;
      break;
    }
  }
  if (start < 0) return [];
  const out = [];
  for (let i = start; i < lines.length; i++) {
    const l = lines[i];
    if (/^\s*(Test Files|Tests|Errors|Type Errors|Snapshots|Start at|Duration)\s/.test(l)) out.push(l.trim());
    else if (l.trim() !== "") break;
  }
  return out;
}

/**
 * The test counts of a vitest summary (vitestSummary's lines): executed = passed + failed, and
 * skipped (vitest's "skipped" and "todo"), and test files that failed as a whole (a file that does
 * not load runs none of its tests). Undefined when there is no "Tests" line.
 */
export function testCounts(summary) {
  const line = summary.find((l) => /^Tests\s/.test(l));
  if (!line) return undefined;
  const n = (word) => {
    const m = line.match(new RegExp(`(\\d+) ${word}`));
    return m ? Number(m[1]) : 0;
  };
  const total = line.match(/\((\d+)\)\s*$/);
  const passed = n("passed");
  const failed = n("failed");
  const files = summary.find((l) => /^Test Files\s/.test(l))?.match(/(\d+) failed/);
  return {
    filesFailed: files ? Number(files[1]) : 0,
    executed: passed + failed,
    passed,
    failed,
    skipped: n("skipped") + n("todo"),
    total: total ? Number(total[1]) : passed + failed + n("skipped") + n("todo"),
  };
}

/** The closing line of the lane: "N tests executed (P passed, F failed), S skipped, where". */
export function countsLine(counts, where) {
  const files = counts.filesFailed > 0 ? `, ${counts.filesFailed} test files failed` : "";
  return `${counts.executed} tests executed (${counts.passed} passed, ${counts.failed} failed), ${counts.skipped} skipped${files}, ${where}`;
}

/**
 * Stage markers the guest's /init prints on the console: "@@nkvm:stage:<name>" and
 * "@@nkvm:fail:<message>". Returns them in order of appearance.
 */
export function parseMarkers(consoleText) {
  const out = [];
  for (const m of consoleText.matchAll(/@@nkvm:(stage|fail):([^\r\n]*)/g))
    out.push({ kind: m[1], value: m[2] });
  return out;
}
