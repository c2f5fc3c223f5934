#!/usr/bin/env node
// The compiled CLI lives in dist/ (npm run build / npx tsc -p tsconfig.json).
import("../dist/lib/cli/main.js").then(
  (m) => m.main(process.argv.slice(2)),
  (e) => {
    console.error(
      `nodevmm: cannot load dist/lib/cli/main.js (${e.message}); run \`npx tsc -p tsconfig.json\` first`,
    );
    process.exitCode = 1;
  },
);
