// Native load generator: N connections, each on its own thread, calling one method in a loop for T seconds,
// so that the server, not a Python client, is the bottleneck.
//
//   bench_loadgen PORT OP CONNS SECONDS HELLO IDLE
//     OP       echo (32-byte string) | types (echo_types with the struct-heavy payload) |
//              lifecycle (open [+hello] + echo [+goodbye] + close, timed as one operation; with HELLO, hello
//              is pipelined with the echo, both in one segment, and the Farewell is not awaited: one round trip,
//              as B's, like the Python Client's pipeline_hello=True, await_farewell=False)
//     HELLO    1: every connection calls hello first (and goodbye before closing in the lifecycle)
//     IDLE     connections opened (with hello, or one echo when HELLO is 0) and held idle, before the run
//
// Protocol on stdin/stdout, so the caller can read the server's counters around the timed window only:
//   prints "ready" once every connection is open, then for every line "go" runs a window of SECONDS and prints
//   one JSON line {"calls", "errors", "seconds", "p50_us", "p99_us", "p999_us"} (several windows on the same
//   connections: the caller can interleave them with another system's); any other line closes everything
//   (the active connections with goodbye when HELLO is 1, the idle ones without).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include "HandshakeService.h"
#include "payload.h"

using namespace apache::thrift;
using namespace thrift_handshake;
using Clock = std::chrono::steady_clock;

static int g_port;
static bool g_hello;

struct Connection {
  std::shared_ptr<transport::TSocket> socket;
  std::shared_ptr<transport::TTransport> transport;
  std::unique_ptr<HandshakeServiceClient> client;
};

static ClientHello client_hello() {
  ClientHello hello;
  hello.__set_client_name("bench-native");
  hello.__set_language("c++");
  hello.__set_min_version(1);
  hello.__set_max_version(2);
  return hello;
}

static std::unique_ptr<Connection> open_connection(bool say_hello = true) {
  auto conn = std::make_unique<Connection>();
  conn->socket = std::make_shared<transport::TSocket>("127.0.0.1", g_port);
  conn->socket->setNoDelay(true);
  conn->transport = std::make_shared<transport::TBufferedTransport>(conn->socket);
  conn->client = std::make_unique<HandshakeServiceClient>(std::make_shared<protocol::TBinaryProtocol>(conn->transport));
  conn->transport->open();
  if (g_hello && say_hello) {
    ServerHello answer;
    conn->client->hello(answer, client_hello());
  }
  return conn;
}

static void cork(Connection& conn, int on) {
  setsockopt(conn.socket->getSocketFD(), IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

// open + hello + echo + goodbye + close in one round trip: hello and the echo leave in one segment (corked, as
// the Python client's MSG_MORE), both answers are read, goodbye is sent and the connection closed unawaited.
static void pipelined_lifecycle(const std::string& text, std::string& out) {
  auto conn = open_connection(false);
  cork(*conn, 1);
  conn->client->send_hello(client_hello());
  conn->client->send_echo(text);
  cork(*conn, 0);
  ServerHello answer;
  conn->client->recv_hello(answer);
  conn->client->recv_echo(out);
  conn->client->send_goodbye();
  conn->transport->close();
}

static void close_connection(Connection& conn) {
  if (g_hello) {
    Farewell farewell;
    conn.client->goodbye(farewell);
  }
  conn.transport->close();
}

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: bench_loadgen PORT OP CONNS SECONDS HELLO IDLE\n");
    return 2;
  }
  g_port = std::atoi(argv[1]);
  const std::string op = argv[2];
  const int conns = std::atoi(argv[3]);
  const double seconds = std::atof(argv[4]);
  g_hello = std::atoi(argv[5]) != 0;
  const int idle = std::atoi(argv[6]);
  std::signal(SIGPIPE, SIG_IGN);
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  const std::string text(32, 'x');
  const AllTypes payload = bench_all_types();

  // Idle connections, opened by a few threads (hello, or one echo so the server has surely taken them).
  std::vector<std::unique_ptr<Connection>> idle_conns(idle);
  {
    std::vector<std::thread> openers;
    const int n_openers = idle > 0 ? std::min(idle, 4) : 0;
    for (int t = 0; t < n_openers; t++) {
      openers.emplace_back([&, t] {
        for (int i = t; i < idle; i += n_openers) {
          idle_conns[i] = open_connection();
          if (!g_hello) {
            std::string out;
            idle_conns[i]->client->echo(out, text);
          }
        }
      });
    }
    for (auto& t : openers) t.join();
  }

  std::vector<std::unique_ptr<Connection>> active(conns);
  if (op != "lifecycle") {
    for (auto& conn : active) conn = open_connection();
  }
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line) && line == "go") {
    std::vector<std::vector<uint32_t>> latencies(conns);
    std::vector<long> errors(conns, 0);
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<std::thread> threads;
    for (int c = 0; c < conns; c++) {
      threads.emplace_back([&, c] {
        auto& lat = latencies[c];
        lat.reserve(200000);
        std::string out;
        AllTypes types_out;
        while (true) {
          const auto t0 = Clock::now();
          if (t0 >= end) break;
          try {
            if (op == "echo") {
              active[c]->client->echo(out, text);
            } else if (op == "types") {
              active[c]->client->echo_types(types_out, payload);
            } else if (g_hello) {
              pipelined_lifecycle(text, out);
            } else {
              auto conn = open_connection();
              conn->client->echo(out, text);
              close_connection(*conn);
            }
          } catch (const std::exception& e) {
            if (errors[c]++ == 0) std::fprintf(stderr, "bench_loadgen: %s\n", e.what());
            if (op != "lifecycle") break;
            continue;
          }
          lat.push_back(uint32_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
        }
      });
    }
    for (auto& t : threads) t.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<uint32_t> all;
    long total_errors = 0;
    for (int c = 0; c < conns; c++) {
      all.insert(all.end(), latencies[c].begin(), latencies[c].end());
      total_errors += errors[c];
    }
    std::sort(all.begin(), all.end());
    auto pct = [&](double q) -> double {
      if (all.empty()) return 0.0;
      size_t i = std::min(all.size() - 1, size_t(q * double(all.size())));
      return all[i] / 1000.0;
    };
    std::printf("{\"calls\": %zu, \"errors\": %ld, \"seconds\": %.6f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f}\n",
                all.size(), total_errors, elapsed, pct(0.5), pct(0.99), pct(0.999));
    std::fflush(stdout);
  }
  for (auto& conn : active) {
    if (!conn) continue;
    try { close_connection(*conn); } catch (const std::exception&) {}
  }
  // Idle sessions just disconnect (no goodbye: the server sees the peer go), a few threads at a time.
  std::vector<std::thread> closers;
  const int n_closers = idle > 0 ? std::min(idle, 4) : 0;
  for (int t = 0; t < n_closers; t++) {
    closers.emplace_back([&, t] {
      for (int i = t; i < idle; i += n_closers) {
        if (!idle_conns[i]) continue;
        try { idle_conns[i]->transport->close(); } catch (const std::exception&) {}
      }
    });
  }
  for (auto& t : closers) t.join();
  return 0;
}
