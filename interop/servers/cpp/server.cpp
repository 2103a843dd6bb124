// C++ server for thrift-handshake: serves the whole contract (idl/handshake.thrift, HandshakeService
// extends session.SessionService) with Debian's libthrift 0.17, one session per connection.
//
//   cmake -S interop/servers/cpp -B build && cmake --build build
//   build/thrift-handshake-server [PORT [SUBMIT_WORKERS [SUBMIT_QUEUE]]]
//
// PORT 0 (the default) takes any free port; once the socket listens, the server prints
// "listening on 127.0.0.1:PORT" on stdout. Wire: TBufferedTransport + strict TBinaryProtocol on
// 127.0.0.1 by default; HANDSHAKE_PROTOCOL=compact (TCompactProtocol) and HANDSHAKE_TRANSPORT=framed
// (TFramedTransport) choose the others, as in the clients; HANDSHAKE_TRANSPORT=header serves THeader
// (THeaderProtocolFactory over the bare socket, libthriftz): the protocol inside each frame is the
// client's, and the reply is written on the request's own THeaderProtocol, in the same protocol.
// Served by TThreadedServer (a thread per connection). Per-connection state comes from a
// TProcessorFactory: the server asks it for a processor for each accepted connection, so each connection
// gets its own handler (its session); the handler's destructor runs when the connection is gone.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstdio>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <openssl/sha.h>
#include <thrift/TProcessor.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/protocol/THeaderProtocol.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>

#include "HandshakeService.h"
#include "handshake_types.h"
#include "session_types.h"

using apache::thrift::TConnectionInfo;
using apache::thrift::TProcessor;
using apache::thrift::TProcessorFactory;
using apache::thrift::protocol::TBinaryProtocolFactory;
using apache::thrift::protocol::TCompactProtocolFactory;
using apache::thrift::protocol::THeaderProtocolFactory;
using apache::thrift::protocol::TProtocol;
using apache::thrift::protocol::TProtocolFactory;
using apache::thrift::server::TServerEventHandler;
using apache::thrift::server::TThreadedServer;
using apache::thrift::transport::TBufferedTransportFactory;
using apache::thrift::transport::TFramedTransportFactory;
using apache::thrift::transport::TTransportFactory;
using apache::thrift::transport::TServerSocket;
using namespace thrift_handshake;
using Clock = std::chrono::steady_clock;

static const char* SERVER_NAME = "thrift-handshake-cpp-server";
static const int32_t MIN_VERSION = 1;
static const int32_t MAX_VERSION = 2;
static const int32_t MAX_WORK_MS = 10000;
static const int32_t MAX_WAIT_MS = 30000;
static const int IDLE_TIMEOUT_MS = 60000;             // the accepted sockets' receive timeout
static const int32_t MAX_MESSAGE_BYTES = 16 << 20;   // the binary protocol's string size limit
static const auto RESULT_TTL = std::chrono::minutes(10);
static const size_t MAX_RESULTS = 10000;
static const size_t MAX_NAME_LENGTH = 256;
static const size_t MAX_FEATURES = 64;
static const std::set<std::string> SERVER_FEATURES = {"submit", "notify", "echo_types", "stats", "timing"};

static int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

static std::string newId() {
  static std::mutex mutex;
  static std::mt19937_64 random{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mutex);
  char buffer[33];
  std::snprintf(buffer, sizeof buffer, "%016llx%016llx", static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random()));
  return buffer;
}

static std::string sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char byte : digest) {
    out += hex[byte >> 4];
    out += hex[byte & 15];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Server-wide state: counters and the submit pool
// ---------------------------------------------------------------------------------------------

struct Counters {
  std::mutex mutex;
  Clock::time_point started = Clock::now();
  int64_t connectionsOpen = 0, connectionsTotal = 0, sessionsActive = 0;
  int64_t handshakesOk = 0, handshakesRejected = 0, notifications = 0;
  std::map<std::string, int64_t> calls;

  void count(const std::string& method) {
    std::lock_guard<std::mutex> lock(mutex);
    calls[method]++;
  }
};

// Submitted work on a bounded pool: at most workers + queue unfinished tickets.
class TicketBoard {
 public:
  TicketBoard(int workers, int queue) : capacity_(workers + queue) {
    for (int i = 0; i < workers; i++) {
      std::thread([this] { work(); }).detach();
    }
  }

  std::string submit(std::function<Response()> job) {
    std::lock_guard<std::mutex> lock(mutex_);
    expire(Clock::now());
    if (unfinished_ >= capacity_) {
      Overloaded overloaded;
      overloaded.__set_message("the submit queue is full; try again later");
      overloaded.__set_queued(unfinished_);
      overloaded.__set_capacity(capacity_);
      throw overloaded;
    }
    std::string id = newId();
    tickets_[id] = std::make_shared<Ticket>();
    unfinished_++;
    jobs_.emplace_back(id, std::move(job));
    changed_.notify_all();
    return id;
  }

  void result(Response& out, const std::string& id, int32_t waitMs) {
    std::unique_lock<std::mutex> lock(mutex_);
    expire(Clock::now());
    auto found = tickets_.find(id);
    if (found == tickets_.end()) {
      UnknownTicket unknown;
      unknown.__set_ticket(id);
      throw unknown;
    }
    std::shared_ptr<Ticket> ticket = found->second;
    int32_t wait = std::min(std::max(waitMs, 0), MAX_WAIT_MS);
    if (!changed_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return ticket->done; })) {
      NotReady notReady;
      notReady.__set_ticket(id);
      notReady.__set_message("still running after waiting " + std::to_string(wait) + " ms");
      throw notReady;
    }
    out = ticket->response;
  }

 private:
  struct Ticket {
    bool done = false;
    Response response;
    Clock::time_point finishedAt;
  };

  void work() {
    for (;;) {
      std::pair<std::string, std::function<Response()>> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Response response = job.second();
      std::lock_guard<std::mutex> lock(mutex_);
      auto ticket = tickets_[job.first];
      ticket->response = response;
      ticket->done = true;
      ticket->finishedAt = Clock::now();
      unfinished_--;
      finished_.push_back(job.first);
      expire(ticket->finishedAt);
      changed_.notify_all();
    }
  }

  // Drops the oldest finished results while they are too old or too many (mutex_ held).
  void expire(Clock::time_point now) {
    while (!finished_.empty()) {
      auto oldest = tickets_[finished_.front()];
      if (now - oldest->finishedAt <= RESULT_TTL && finished_.size() <= MAX_RESULTS) break;
      tickets_.erase(finished_.front());
      finished_.pop_front();
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  int32_t capacity_;
  int32_t unfinished_ = 0;
  std::map<std::string, std::shared_ptr<Ticket>> tickets_;
  std::deque<std::string> finished_;
  std::deque<std::pair<std::string, std::function<Response()>>> jobs_;
};

static void validate(const Request& request) {
  InvalidRequest invalid;
  if (request.request_id.empty()) {
    invalid.__set_message("request_id must not be empty");
    invalid.__set_field("request_id");
    throw invalid;
  }
  if (request.work_ms < 0 || request.work_ms > MAX_WORK_MS) {
    invalid.__set_message("work_ms must be within 0.." + std::to_string(MAX_WORK_MS) + ", not " +
                          std::to_string(request.work_ms));
    invalid.__set_field("work_ms");
    throw invalid;
  }
}

// Does the (simulated) work of one request and measures the server's own time on it.
static Response run(const Request& request, const std::string& sessionId, int64_t sequence) {
  auto started = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(request.work_ms));
  Response response;
  response.__set_request_id(request.request_id);
  response.__set_digest(sha256Hex(request.payload));
  response.__set_processing_us(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
  response.__set_session_id(sessionId);
  response.__set_sequence(sequence);
  return response;
}

// ---------------------------------------------------------------------------------------------
// One connection: its session and the contract's methods. TThreadedServer serves a connection's
// messages one at a time on its own thread, so the session needs no lock of its own.
// ---------------------------------------------------------------------------------------------

class Connection : public HandshakeServiceIf {
 public:
  Connection(std::shared_ptr<Counters> counters, std::shared_ptr<TicketBoard> tickets)
      : counters_(std::move(counters)), tickets_(std::move(tickets)) {
    std::lock_guard<std::mutex> lock(counters_->mutex);
    counters_->connectionsOpen++;
    counters_->connectionsTotal++;
  }

  // The connection is gone (its processor is released when TThreadedServer is done with it).
  ~Connection() override {
    std::lock_guard<std::mutex> lock(counters_->mutex);
    if (!closing) {  // goodbye already took the connection and its session off the counts
      counters_->connectionsOpen--;
      if (established_) counters_->sessionsActive--;
    }
  }

  bool closing = false;  // goodbye answered: the connection ends after the reply

  void hello(ServerHello& out, const ClientHello& hello) override {
    counters_->count("hello");
    int32_t version = 0;
    std::string reason = check(hello, version);
    if (!reason.empty()) {
      {
        std::lock_guard<std::mutex> lock(counters_->mutex);
        counters_->handshakesRejected++;
      }
      HandshakeRejected rejected;
      rejected.__set_reason(reason);
      rejected.__set_min_version(MIN_VERSION);
      rejected.__set_max_version(MAX_VERSION);
      throw rejected;
    }
    established_ = true;
    sessionId_ = newId();
    establishedAt_ = Clock::now();
    {
      std::lock_guard<std::mutex> lock(counters_->mutex);
      counters_->handshakesOk++;
      counters_->sessionsActive++;
    }
    std::set<std::string> features;
    for (const auto& feature : hello.features) {
      if (SERVER_FEATURES.count(feature)) features.insert(feature);
    }
    out.__set_session_id(sessionId_);
    out.__set_version(version);
    out.__set_server_name(SERVER_NAME);
    out.__set_features(features);
    out.__set_server_time_ms(nowMs());
    out.__set_idle_timeout_ms(IDLE_TIMEOUT_MS);
    out.__set_max_message_bytes(MAX_MESSAGE_BYTES);
  }

  void ping() override {
    counters_->count("ping");
    if (established_) calls_++;
  }

  void stats(ServerStats& out) override {
    gate("stats");
    std::lock_guard<std::mutex> lock(counters_->mutex);
    out.__set_connections_open(counters_->connectionsOpen);
    out.__set_connections_total(counters_->connectionsTotal);
    out.__set_sessions_active(counters_->sessionsActive);
    out.__set_handshakes_ok(counters_->handshakesOk);
    out.__set_handshakes_rejected(counters_->handshakesRejected);
    out.__set_calls(counters_->calls);
    out.__set_notifications(counters_->notifications);
    out.__set_uptime_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - counters_->started).count());
  }

  void goodbye(Farewell& out) override {
    counters_->count("goodbye");
    if (!established_) required("goodbye");
    closing = true;
    {
      std::lock_guard<std::mutex> lock(counters_->mutex);
      counters_->sessionsActive--;
      counters_->connectionsOpen--;
    }
    out.__set_session_id(sessionId_);
    out.__set_calls(calls_);
    out.__set_duration_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - establishedAt_).count());
  }

  void echo(std::string& out, const std::string& message) override {
    gate("echo");
    out = message;
  }

  void process(Response& out, const Request& request) override {
    gate("process");
    validate(request);
    out = run(request, sessionId_, ++processSequence_);
  }

  void submit(Ack& out, const Request& request) override {
    gate("submit");
    validate(request);
    std::string sessionId = sessionId_;
    int64_t sequence = submitSequence_ + 1;
    std::string ticket = tickets_->submit([request, sessionId, sequence] { return run(request, sessionId, sequence); });
    submitSequence_ = sequence;
    out.__set_ticket(ticket);
    out.__set_request_id(request.request_id);
    out.__set_accepted_at_ms(nowMs());
  }

  void get_result(Response& out, const std::string& ticket, const int32_t waitMs) override {
    gate("get_result");
    tickets_->result(out, ticket, waitMs);
  }

  void notify(const Event& /* event */) override {
    counters_->count("notify");
    if (!established_) return;  // one-way before hello: dropped
    calls_++;
    std::lock_guard<std::mutex> lock(counters_->mutex);
    counters_->notifications++;
  }

  void echo_types(AllTypes& out, const AllTypes& value) override {
    gate("echo_types");
    out = value;
  }

  void fail(const std::string& message) override {
    gate("fail");
    // Undeclared: the generated processor answers with a TApplicationException carrying what().
    throw std::runtime_error(message.empty() ? "fail() was called" : message);
  }

 private:
  [[noreturn]] void required(const std::string& method) {
    HandshakeRequired error;
    error.__set_message(method + "() needs a completed hello() on this connection");
    throw error;
  }

  // Counts the message; throws HandshakeRequired before hello; counts a served session call.
  void gate(const std::string& method) {
    counters_->count(method);
    if (!established_) required(method);
    calls_++;
  }

  std::string check(const ClientHello& hello, int32_t& version) const {
    if (established_) return "this connection already has session " + sessionId_;
    if (hello.client_name.empty()) return "client_name is required";
    if (hello.client_name.size() > MAX_NAME_LENGTH || hello.language.size() > MAX_NAME_LENGTH) {
      return "client_name and language are limited to " + std::to_string(MAX_NAME_LENGTH) + " characters";
    }
    if (hello.features.size() > MAX_FEATURES) {
      return "at most " + std::to_string(MAX_FEATURES) + " features of " + std::to_string(MAX_NAME_LENGTH) +
             " characters each";
    }
    int32_t low = hello.min_version, high = hello.max_version;
    if (low > high) {
      return "min_version " + std::to_string(low) + " is greater than max_version " + std::to_string(high);
    }
    version = std::min(high, MAX_VERSION);
    if (version < std::max(low, MIN_VERSION)) {
      return "no common version: client speaks " + std::to_string(low) + ".." + std::to_string(high) +
             ", server speaks " + std::to_string(MIN_VERSION) + ".." + std::to_string(MAX_VERSION);
    }
    return "";
  }

  std::shared_ptr<Counters> counters_;
  std::shared_ptr<TicketBoard> tickets_;
  bool established_ = false;
  std::string sessionId_;
  Clock::time_point establishedAt_;
  int64_t calls_ = 0;  // calls served in the session, hello and goodbye excluded
  int64_t processSequence_ = 0;
  int64_t submitSequence_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Per-connection processors
// ---------------------------------------------------------------------------------------------

// The generated processor of one connection's handler; returning false after goodbye makes
// TThreadedServer stop reading the connection and close it.
class ConnectionProcessor : public TProcessor {
 public:
  ConnectionProcessor(std::shared_ptr<Connection> connection)
      : connection_(connection), inner_(std::make_shared<HandshakeServiceProcessor>(connection)) {}

  bool process(std::shared_ptr<TProtocol> in, std::shared_ptr<TProtocol> out, void* context) override {
    bool more = inner_->process(in, out, context);
    return more && !connection_->closing;
  }

 private:
  std::shared_ptr<Connection> connection_;
  std::shared_ptr<HandshakeServiceProcessor> inner_;
};

class ConnectionProcessorFactory : public TProcessorFactory {
 public:
  ConnectionProcessorFactory(std::shared_ptr<Counters> counters, std::shared_ptr<TicketBoard> tickets)
      : counters_(std::move(counters)), tickets_(std::move(tickets)) {}

  std::shared_ptr<TProcessor> getProcessor(const TConnectionInfo& /* connInfo */) override {
    return std::make_shared<ConnectionProcessor>(std::make_shared<Connection>(counters_, tickets_));
  }

 private:
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<TicketBoard> tickets_;
};

// Prints the port once the socket listens (TServerFramework::serve calls preServe after listen()).
class AnnounceListening : public TServerEventHandler {
 public:
  explicit AnnounceListening(std::shared_ptr<TServerSocket> socket) : socket_(std::move(socket)) {}
  void preServe() override { std::cout << "listening on 127.0.0.1:" << socket_->getPort() << std::endl; }

 private:
  std::shared_ptr<TServerSocket> socket_;
};

static int argument(int argc, char** argv, int index, int fallback) {
  if (argc <= index) return fallback;
  char* end = nullptr;
  long value = std::strtol(argv[index], &end, 10);
  if (*end != '\0' || value < 0 || value > 65535) {
    std::cerr << "usage: " << argv[0] << " [PORT [SUBMIT_WORKERS [SUBMIT_QUEUE]]]: '" << argv[index]
              << "' is not a number\n";
    std::exit(2);
  }
  return static_cast<int>(value);
}

static std::string environment(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

int main(int argc, char** argv) {
  const std::string protocolName = environment("HANDSHAKE_PROTOCOL", "binary");
  const std::string transportName = environment("HANDSHAKE_TRANSPORT", "buffered");
  if ((protocolName != "binary" && protocolName != "compact") ||
      (transportName != "buffered" && transportName != "framed" && transportName != "header")) {
    std::cerr << "HANDSHAKE_PROTOCOL must be binary or compact and HANDSHAKE_TRANSPORT buffered, framed or header, not \""
              << protocolName << "\" and \"" << transportName << "\"\n";
    return 2;
  }
  int port = argument(argc, argv, 1, 0);
  int workers = std::max(1, argument(argc, argv, 2, 4));
  int queue = argument(argc, argv, 3, 1000);
  auto counters = std::make_shared<Counters>();
  auto tickets = std::make_shared<TicketBoard>(workers, queue);
  auto socket = std::make_shared<TServerSocket>("127.0.0.1", port);
  socket->setRecvTimeout(IDLE_TIMEOUT_MS);
  std::shared_ptr<TProtocolFactory> protocol;
  if (protocolName == "compact") {
    protocol = std::make_shared<TCompactProtocolFactory>(MAX_MESSAGE_BYTES, 0);
  } else {
    protocol = std::make_shared<TBinaryProtocolFactory>(MAX_MESSAGE_BYTES, 0, true, true);  // strict both ways
  }
  std::shared_ptr<TTransportFactory> transport;
  if (transportName == "header") {
    // THeaderProtocol wraps the transport it is given in its own THeaderTransport: give it the socket.
    protocol = std::make_shared<THeaderProtocolFactory>();
    transport = std::make_shared<TTransportFactory>();
  } else if (transportName == "framed") {
    transport = std::make_shared<TFramedTransportFactory>();
  } else {
    transport = std::make_shared<TBufferedTransportFactory>();
  }
  TThreadedServer server(std::make_shared<ConnectionProcessorFactory>(counters, tickets), socket, transport, protocol);
  if (transportName == "header") {
    // Without an output protocol factory, TServerFramework makes one protocol for both directions
    // (getProtocol(input, output)), so the reply goes out in the dialect the request came in.
    server.setOutputProtocolFactory(nullptr);
  }
  server.setServerEventHandler(std::make_shared<AnnounceListening>(socket));
  try {
    server.serve();
  } catch (const std::exception& error) {
    std::cerr << "server stopped: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
