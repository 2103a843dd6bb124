// The native reference: Apache Thrift's C++ TThreadedServer (TBufferedTransport + TBinaryProtocol) serving
// HandshakeService with a handler that just returns, like B's Python handler.
//   bench_server PORT      prints "listening PORT" on stdout once it accepts; runs until SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>

#include "HandshakeService.h"

using namespace apache::thrift;
using namespace thrift_handshake;

class Handler : public HandshakeServiceIf {
 public:
  void hello(ServerHello& out, const ClientHello&) override {
    out.__set_session_id("native");
    out.__set_version(2);
  }
  void ping() override {}
  void stats(ServerStats&) override {}
  void goodbye(Farewell& out) override { out.__set_session_id("native"); }
  void echo(std::string& out, const std::string& message) override { out = message; }
  void process(Response& out, const Request& request) override { out.__set_request_id(request.request_id); }
  void submit(Ack& out, const Request& request) override { out.__set_request_id(request.request_id); }
  void get_result(Response&, const std::string&, const int32_t) override {}
  void notify(const Event&) override {}
  void echo_types(AllTypes& out, const AllTypes& value) override { out = value; }
  void fail(const std::string&) override {}
};

class Announce : public server::TServerEventHandler {
 public:
  explicit Announce(int port) : port_(port) {}
  void preServe() override {
    std::printf("listening %d\n", port_);
    std::fflush(stdout);
  }

 private:
  int port_;
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: bench_server PORT\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  std::signal(SIGPIPE, SIG_IGN);
  auto socket = std::make_shared<transport::TServerSocket>("127.0.0.1", port);
  server::TThreadedServer server(std::make_shared<HandshakeServiceProcessor>(std::make_shared<Handler>()), socket,
                                 std::make_shared<transport::TBufferedTransportFactory>(),
                                 std::make_shared<protocol::TBinaryProtocolFactory>());
  server.setServerEventHandler(std::make_shared<Announce>(port));
  server.serve();
  return 0;
}
