// Bundles entry.js (npm's thrift and the code generated into gen-js/) into one script for browsers, with a
// header naming every bundled package with its version and licence, and their licence texts beside it.
// Usage: node build.js OUTPUT.js   (scripts/gen-js runs it after `thrift --gen js:node` and `npm ci`)
"use strict";
const esbuild = require("esbuild");
const fs = require("fs");
const path = require("path");

const output = path.resolve(process.argv[2] || "thrift-handshake.js");
const compiler = process.env.THRIFT_COMPILER_VERSION || "unknown";

const result = esbuild.buildSync({
  entryPoints: [path.join(__dirname, "entry.js")],
  bundle: true,
  format: "iife",
  globalName: "ThriftHandshake",
  platform: "browser",
  target: "es2018",
  inject: [path.join(__dirname, "shims.js")],
  legalComments: "none",
  metafile: true,
  write: false,
  logLevel: "error",
});

// The packages whose files went into the bundle, from esbuild's list of inputs.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (match && !packages.has(match[1])) {
    const folder = path.join(__dirname, "node_modules", match[1]);
    packages.set(match[1], { folder, ...JSON.parse(fs.readFileSync(path.join(folder, "package.json"), "utf8")) });
  }
}
const names = [...packages.keys()].sort();
const header = [
  "/* The admin page's Thrift client, made by scripts/gen-js: do not edit.",
  ` * Generated code: Thrift compiler ${compiler}, --gen js:node, from idl/handshake.thrift and idl/session.thrift.`,
  " * Bundled packages (npm; their licence texts are in thrift-handshake.js.LICENSES.txt):",
  ...names.map((name) => ` *   ${name} ${packages.get(name).version} (${packages.get(name).license})`),
  " */",
  "",
].join("\n");
// written beside, then renamed: a server reading the old file meanwhile never serves half of the new one
const write = (file, text) => { fs.writeFileSync(file + ".part", text); fs.renameSync(file + ".part", file); };
fs.mkdirSync(path.dirname(output), { recursive: true });
write(output, header + result.outputFiles[0].text);

const licences = names.map((name) => {
  const info = packages.get(name);
  const file = fs.readdirSync(info.folder).find((entry) => /^(licen[cs]e|copying)(\.|$)/i.test(entry));
  const text = file ? fs.readFileSync(path.join(info.folder, file), "utf8").trim() : `${info.license} (no licence file in the package)`;
  return `${name} ${info.version} (${info.license})\n${"=".repeat(72)}\n${text}\n`;
});
write(output + ".LICENSES.txt", licences.join("\n"));
console.error(`[web/build.js] ${output}: ${names.length} packages, ${fs.statSync(output).size} bytes`);
