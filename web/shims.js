// Node's globals that npm's thrift and node-int64 use, from their browser ports on npm.
export { Buffer } from "buffer";
export { default as process } from "process";
