// Examples run from dist/examples/ after the build, and their images stay in examples/images/.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export function imagePath(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, "examples", "images", name);
    if (existsSync(candidate)) return candidate;
    const here = join(dir, "images", name);
    if (existsSync(here)) return here;
    dir = dirname(dir);
  }
  throw new Error(`example image ${name} not found (run from a checkout of nodevmm)`);
}
