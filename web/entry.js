// What the admin page's "run it" panel uses, as the global ThriftHandshake: Apache Thrift's browser library
// (npm's thrift: XHRConnection, TJSONProtocol) and the code `thrift --gen js:node` makes from idl/.
module.exports = {
  thrift: require("thrift"),
  HandshakeService: require("./gen-js/HandshakeService"),
  session: require("./gen-js/session_types"),
  handshake: require("./gen-js/handshake_types"),
};
