#!/usr/bin/env node
// Node.js client of the KeyValue example: hello first, the store's methods, goodbye last.
//
//   npm ci && npm run build          # installs thrift 0.24.0; generates gen-js/ from ../kvstore.thrift
//   node client.js [HOST] [PORT]     # against: thrift-handshake serve --handler kvstore_handler:KeyValueHandler ...
//
// Wire: TBufferedTransport + strict TBinaryProtocol, as the server speaks. The code in gen-js/ is made by
// `thrift -r --gen js:node,es6` (native Promises: the 0.17 compiler's plain js:node code needs thrift.Q,
// which the 0.24 library no longer has) and is never committed. Prints one line per step; exits 1 on failure.
"use strict";

const path = require("path");
const thrift = require("thrift");

let KeyValue, kvTypes, sessionTypes;
try {
  KeyValue = require(path.join(__dirname, "gen-js", "KeyValue.js"));
  kvTypes = require(path.join(__dirname, "gen-js", "kvstore_types.js"));
  sessionTypes = require(path.join(__dirname, "gen-js", "session_types.js"));
} catch (error) {
  console.error(`no generated code in ${path.join(__dirname, "gen-js")}: run 'npm run build' (${error.message})`);
  process.exit(2);
}

const HOST = process.argv[2] || "127.0.0.1";
const PORT = Number(process.argv[3] || 9090);

// The server reads strict binary messages (with a version header), as every Thrift library writes by default.
function StrictBinaryProtocol(trans) {
  thrift.TBinaryProtocol.call(this, trans, true, true);
}
StrictBinaryProtocol.prototype = Object.create(thrift.TBinaryProtocol.prototype);
StrictBinaryProtocol.prototype.constructor = StrictBinaryProtocol;

const asNumber = (i64) => Number(thrift.toBigInt(i64)); // i64 arrive as node-int64 objects

function connect() {
  return new Promise((resolve, reject) => {
    const connection = thrift.createConnection(HOST, PORT, {
      transport: thrift.TBufferedTransport,
      protocol: StrictBinaryProtocol,
      connect_timeout: 5000,
    });
    connection.once("connect", () => resolve({ connection, client: thrift.createClient(KeyValue, connection) }));
    connection.on("error", reject);
  });
}

async function main() {
  const { connection, client } = await connect();
  try {
    const hello = await client.hello(new sessionTypes.ClientHello({
      client_name: "kvstore-node-example", language: "javascript", min_version: 1, max_version: 2, features: [],
    }));
    console.log(`hello: session ${hello.session_id}, version ${hello.version}`);

    const first = await client.put("node:greeting", "你好", 0);
    const second = await client.put("node:greeting", "hello", 0);
    console.log(`put node:greeting -> version ${asNumber(first.version)}, then ${asNumber(second.version)}`);
    const entry = await client.get("node:greeting");
    console.log(`get node:greeting -> ${JSON.stringify(entry.value)}`);
    const scanned = await client.scan("node:", 0);
    console.log(`scan node: -> ${JSON.stringify(scanned.map((e) => [e.key, asNumber(e.version)]))}`);
    await client.touch("node:greeting", 1000); // oneway: resolves once written
    const versions = await client.versions();
    console.log(`versions -> ${JSON.stringify(Object.fromEntries(
      Object.entries(versions).map(([key, version]) => [key, asNumber(version)])))}`);
    try {
      await client.get("node:missing");
      throw new Error("get node:missing returned instead of throwing KeyNotFound");
    } catch (error) {
      if (!(error instanceof kvTypes.KeyNotFound)) throw error;
      console.log(`get node:missing -> KeyNotFound(${JSON.stringify(error.key)})`);
    }

    const farewell = await client.goodbye();
    console.log(`goodbye: ${asNumber(farewell.calls)} calls in ${asNumber(farewell.duration_ms)} ms`);
  } finally {
    connection.end();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`FAIL: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
