#!/usr/bin/env node
import("../dist/lib/cli/main.js").then((m) => m.main(process.argv.slice(2)));
