// HCL formatting check with HashiCorp's own formatter (hclwrite.Format, compiled to WebAssembly in the
// @cdktf/hcl-tools npm package), so no terraform binary is needed:
//   node scripts/hcl_format.js <node_modules dir> [--write] FILE...
// Prints every file whose formatting differs and exits 1 (or rewrites them with --write).
// It does not detect syntax errors (hclwrite formats tokens): scripts/check_infra.py parses first.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const [modulesDir, ...rest] = process.argv.slice(2);
  const write = rest.includes("--write");
  const files = rest.filter((arg) => arg !== "--write");
  const { format } = require(path.resolve(modulesDir, "@cdktf", "hcl-tools"));
  const unformatted = [];
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    const formatted = await format(text);
    if (formatted !== text) {
      unformatted.push(file);
      if (write) fs.writeFileSync(file, formatted);
    }
  }
  for (const file of unformatted) console.log(`${write ? "formatted" : "not formatted"}: ${file}`);
  process.exit(unformatted.length && !write ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
