// The --stats table, laid out like `perf kvm stat report`: per exit kind, samples, their share,
// the share of handling time, and min/max/average handling time.

/** One row of formatStatsTable(): an exit kind and its counts and times (an ExitKindStats fits). */
export interface StatsRow {
  /** The exit kind, as the row's label. */
  kind: string;
  /** How many exits, and host handling time in nanoseconds (total, shortest, longest). */
  stats: { count: number; totalNs: number; minNs: number; maxNs: number };
}

const us = (ns: number): string => (ns / 1000).toFixed(2);

/**
 * A table laid out like `perf kvm stat report`: per exit kind the samples, their share, the share of handling
 * time and min/max/average time in microseconds. `extra` adds guest time, unhandled accesses and per-vCPU
 * exit counts.
 */
export function formatStatsTable(
  rows: readonly StatsRow[],
  extra: { guestNs?: number; unhandled?: number; byVcpu?: readonly number[] } = {},
): string {
  const totalCount = rows.reduce((a, r) => a + r.stats.count, 0);
  const totalNs = rows.reduce((a, r) => a + r.stats.totalNs, 0);
  const header = ["Exit kind", "Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time"];
  const body = rows.map((r) => [
    r.kind,
    String(r.stats.count),
    `${((100 * r.stats.count) / (totalCount || 1)).toFixed(2)}%`,
    `${((100 * r.stats.totalNs) / (totalNs || 1)).toFixed(2)}%`,
    `${us(r.stats.count ? r.stats.minNs : 0)}us`,
    `${us(r.stats.maxNs)}us`,
    `${us(r.stats.count ? r.stats.totalNs / r.stats.count : 0)}us`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [line(header), ...body.map(line)];
  out.push(`Total Samples:${totalCount}, Total handling time:${us(totalNs)}us`);
  if (extra.guestNs !== undefined) out.push(`Time in guest (backend run): ${us(extra.guestNs)}us`);
  if (extra.unhandled !== undefined) out.push(`Unregistered accesses: ${extra.unhandled}`);
  // with several vCPUs, whose exits they were
  if (extra.byVcpu && extra.byVcpu.length > 1) {
    out.push(`Exits per vCPU: ${Array.from(extra.byVcpu, (n, i) => `cpu${i} ${n ?? 0}`).join(", ")}`);
  }
  return `${out.join("\n")}\n`;
}
