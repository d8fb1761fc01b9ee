// Copies the files vendor.json names (destination in the repository <- file in node_modules) into place after
// `npm ci`, so a page serves them from our own origin. Run by `make web-assets` and by Cloud Build before packaging.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const files = JSON.parse(readFileSync(join(here, "vendor.json"), "utf8"));
for (const [destination, source] of Object.entries(files)) {
  mkdirSync(dirname(join(root, destination)), { recursive: true });
  copyFileSync(join(here, "node_modules", source), join(root, destination));
}
console.log(`vendored ${Object.keys(files).length} files`);
