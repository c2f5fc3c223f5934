// Runs every benchmark under bench/ (compiled to dist/bench/<name>/run.js), or the ones named.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";

const names = process.argv.slice(2);
const all = existsSync("bench")
  ? readdirSync("bench", { withFileTypes: true }).filter((d) => d.isDirectory())
  : [];
const chosen = names.length ? names : all.map((d) => d.name).filter((n) => existsSync(`bench/${n}/run.ts`));
let failed = 0;
for (const name of chosen) {
  const entry = `dist/bench/${name}/run.js`;
  if (!existsSync(entry)) {
    console.error(`bench ${name}: ${entry} is missing (run npm run build)`);
    failed++;
    continue;
  }
  console.log(`\n== bench/${name} ==`);
  const r = spawnSync(process.execPath, [entry], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
