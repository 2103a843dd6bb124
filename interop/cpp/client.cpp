// C++ interop client for thrift-handshake: runs the contract's whole flow against a running server and
// prints one line per check ("ok   ..." or "FAIL ..."), then "N/M checks passed". Exits 0 only if every
// check passed.
//
//   cmake -S interop/cpp -B build && cmake --build build && build/thrift-handshake-interop [HOST] [PORT]
//
// HOST and PORT may also come from HANDSHAKE_HOST and HANDSHAKE_PORT. The Thrift code is generated from
// ../../idl at build time (CMakeLists.txt), never committed. Wire: TBufferedTransport + strict
// TBinaryProtocol by default (libthrift 0.17 from Debian's libthrift-dev); HANDSHAKE_PROTOCOL=compact
// (TCompactProtocol), HANDSHAKE_TRANSPORT=framed (TFramedTransport) or HANDSHAKE_TRANSPORT=header
// (THeaderProtocol, from libthriftz, carrying the protocol HANDSHAKE_PROTOCOL names) choose the others.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>

#include <openssl/sha.h>
#include <thrift/TApplicationException.h>
#include <thrift/TToString.h>
#include <thrift/config.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/protocol/THeaderProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include "HandshakeService.h"
#include "handshake_types.h"
#include "session_types.h"

using apache::thrift::TApplicationException;
using apache::thrift::TException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TCompactProtocol;
using apache::thrift::protocol::THeaderProtocol;
using apache::thrift::protocol::TProtocol;
using apache::thrift::transport::TBufferedTransport;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TTransport;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransportException;
using namespace thrift_handshake;

static std::string host = "127.0.0.1";
static int port = 9090;
static std::string protocolName = "binary";
static std::string transportName = "buffered";
static const int CALL_TIMEOUT_MS = 10000;

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

static int checks = 0;
static int failures = 0;

static bool check(const std::string& name, bool ok, const std::string& detail = "") {
  checks++;
  if (!ok) failures++;
  std::cout << (ok ? "ok  " : "FAIL") << " " << name << (detail.empty() ? "" : ": " + detail) << "\n";
  return ok;
}

static std::string quote(const std::string& s) { return "\"" + s + "\""; }

// What a caught exception was, for FAIL details.
static std::string describe(std::exception_ptr error) {
  if (!error) return "no error";
  try {
    std::rethrow_exception(error);
  } catch (const TApplicationException& e) {
    return "TApplicationException(type=" + std::to_string(e.getType()) + ", \"" + e.what() + "\")";
  } catch (const TTransportException& e) {
    return "TTransportException(type=" + std::to_string(e.getType()) + ", \"" + e.what() + "\")";
  } catch (const std::exception& e) {
    return std::string(typeid(e).name()) + "(" + e.what() + ")";
  }
}

// Runs a call that must succeed; on an exception, a failed check and false.
static bool expectOK(const std::string& name, const std::function<void()>& call) {
  try {
    call();
    return true;
  } catch (...) {
    check(name, false, "expected a result, got " + describe(std::current_exception()));
    return false;
  }
}

// Runs a call that must throw an E; returns true with *out set when it did.
template <class E>
static bool expectError(const std::string& name, const std::function<void()>& call, E* out) {
  try {
    call();
    check(name, false, std::string("expected ") + typeid(E).name() + ", got a result");
  } catch (const E& e) {
    *out = e;
    return true;
  } catch (...) {
    check(name, false, std::string("expected ") + typeid(E).name() + ", got " + describe(std::current_exception()));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

struct Conn {
  std::shared_ptr<TSocket> socket;
  std::shared_ptr<TTransport> transport;
  std::unique_ptr<HandshakeServiceClient> client;

  explicit Conn(int toPort = port) {
    socket = std::make_shared<TSocket>(host, toPort);
    socket->setConnTimeout(5000);
    socket->setRecvTimeout(CALL_TIMEOUT_MS);
    socket->setSendTimeout(CALL_TIMEOUT_MS);
    std::shared_ptr<TProtocol> protocol;
    if (transportName == "header") {  // THeaderProtocol frames each message itself, in its own THeaderTransport
      protocol = std::make_shared<THeaderProtocol>(
          socket, protocolName == "compact" ? apache::thrift::protocol::T_COMPACT_PROTOCOL
                                            : apache::thrift::protocol::T_BINARY_PROTOCOL);
      transport = protocol->getTransport();
    } else {
      if (transportName == "framed") {
        transport = std::make_shared<TFramedTransport>(socket);
      } else {
        transport = std::make_shared<TBufferedTransport>(socket);
      }
      if (protocolName == "compact") {
        protocol = std::make_shared<TCompactProtocol>(transport);
      } else {
        auto binary = std::make_shared<TBinaryProtocol>(transport);
        binary->setStrict(true, true);
        protocol = binary;
      }
    }
    client = std::make_unique<HandshakeServiceClient>(protocol);
    transport->open();
  }
  ~Conn() {
    try {
      transport->close();
    } catch (...) {
    }
  }
};

static ClientHello clientHello(int32_t min, int32_t max, std::set<std::string> features = {}) {
  ClientHello hello;
  hello.__set_client_name("thrift-handshake-interop-cpp");
  hello.__set_language("cpp");
  hello.__set_min_version(min);
  hello.__set_max_version(max);
  hello.__set_features(features);
  return hello;
}

static std::string hex(const std::string& bytes) {
  std::ostringstream o;
  for (unsigned char c : bytes) o << std::hex << std::setw(2) << std::setfill('0') << int(c);
  return o.str();
}

static std::string sha256(const std::string& text) {
  unsigned char sum[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), sum);
  return hex(std::string(reinterpret_cast<char*>(sum), sizeof sum));
}

static uint64_t bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

static std::string bitsHex(double d) {
  std::ostringstream o;
  o << std::hex << std::setw(16) << std::setfill('0') << bits(d);
  return o.str();
}

static std::string clip(const std::string& s) {
  // Counts UTF-8 code points; cuts at a code point boundary.
  size_t points = 0, i = 0;
  for (; i < s.size(); i++) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && ++points > 77) break;
  }
  return i < s.size() ? s.substr(0, i) + "..." : s;
}

static double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// AllTypes values
// ---------------------------------------------------------------------------------------------

static std::string allBytes() {
  std::string b(256, '\0');
  for (int i = 0; i < 256; i++) b[i] = static_cast<char>(i);
  return b;
}

static Point point(int32_t x, int32_t y, const char* label) {
  Point p;
  p.__set_x(x);
  p.__set_y(y);
  if (label) p.__set_label(label);
  return p;
}

static const int64_t TWO_53_PLUS_1 = (int64_t(1) << 53) + 1;
static const double SMALLEST_NEGATIVE_SUBNORMAL = -std::numeric_limits<double>::denorm_min();

// Every field set, the limits of each integer type, the negative enum and the point union member.
static AllTypes fullValue() {
  AllTypes v;
  v.__set_id("all-types/cpp/全部类型");
  v.__set_flag(true);
  v.__set_small(std::numeric_limits<int8_t>::min());
  v.__set_short_number(std::numeric_limits<int16_t>::min());
  v.__set_number(std::numeric_limits<int32_t>::max());
  v.__set_big_number(std::numeric_limits<int64_t>::max());
  v.__set_real(SMALLEST_NEGATIVE_SUBNORMAL);  // sign and denormal bits must survive (compared bitwise)
  v.__set_text("请求数据: 中文, emoji 😀🚀👍🏽, combining é");
  v.__set_data(allBytes());
  v.__set_color(Color::UNKNOWN_COLOR);
  Shape shape;
  shape.__set_point(point(-1, std::numeric_limits<int32_t>::max(), "原点"));
  v.__set_shape(shape);
  v.__set_note("备注 ✓");
  v.__set_maybe_number(std::numeric_limits<int64_t>::min());
  v.__set_greeting("你好, 世界 🌏");
  v.__set_answer(-42);
  v.__set_numbers({std::numeric_limits<int32_t>::min(), -1, 0, 1, std::numeric_limits<int32_t>::max()});
  v.__set_tags({"alpha", "βeta", "标签", "🏷️", ""});
  v.__set_counts({{"max", std::numeric_limits<int64_t>::max()},
                  {"min", std::numeric_limits<int64_t>::min()},
                  {"zero", 0},
                  {"2^53+1", TWO_53_PLUS_1}});
  v.__set_groups({{"角", {point(1, 2, "点")}}, {"empty", {}}, {"pair", {point(3, 4, "p"), point(-5, -6, nullptr)}}});
  v.__set_layers({{{"a", {1, 2, 3}}},
                  {},
                  {{"b", {}}, {"c", {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()}}}});
  v.__set_palette({{-5, Color::UNKNOWN_COLOR}, {0, Color::RED}, {std::numeric_limits<int32_t>::max(), Color::MAX_COLOR}});
  v.__set_blobs({std::string(), std::string("\x00\xff", 2), allBytes()});
  return v;
}

template <class T>
static std::string show(const T& v) {
  return apache::thrift::to_string(v);
}
static std::string show(const std::string& s) { return quote(s); }

// One check per field: compared with the field type's == (no doubles inside), shown with to_string.
template <class T>
static void fieldCheck(const std::string& name, const T& sent, const T& got) {
  bool same = sent == got;
  check("echo_types." + name, same, same ? clip(show(got)) : "sent " + show(sent) + " got " + show(got));
}

static void binaryCheck(const std::string& name, const std::string& sent, const std::string& got) {
  bool same = sent == got;
  check("echo_types." + name, same, same ? clip("binary:" + hex(got)) : "sent " + hex(sent) + " got " + hex(got));
}

static void blobsCheck(const std::vector<std::string>& sent, const std::vector<std::string>& got) {
  std::string shown = "[";
  for (size_t i = 0; i < got.size(); i++) shown += (i ? "," : "") + std::string("binary:") + hex(got[i]);
  check("echo_types.blobs", sent == got, clip(shown + "]"));
}

static const char* shapeMember(const Shape& s) {
  return s.__isset.point ? "point" : s.__isset.name ? "name" : s.__isset.id ? "id" : s.__isset.polygon ? "polygon" : "none";
}

// The echo_types checks; returns how many calls were made.
static int echoTypesChecks(Conn& c) {
  int calls = 0;

  // 1. Every field set: one check per field.
  AllTypes sent = fullValue(), got;
  calls++;
  if (expectOK("echo_types[full]", [&] { c.client->echo_types(got, sent); })) {
    fieldCheck("id", sent.id, got.id);
    fieldCheck("flag", sent.flag, got.flag);
    fieldCheck("small", int(sent.small), int(got.small));
    fieldCheck("short_number", sent.short_number, got.short_number);
    fieldCheck("number", sent.number, got.number);
    fieldCheck("big_number", sent.big_number, got.big_number);
    check("echo_types.real", bits(sent.real) == bits(got.real), "double:" + bitsHex(got.real));
    fieldCheck("text", sent.text, got.text);
    binaryCheck("data", sent.data, got.data);
    fieldCheck("color", sent.color, got.color);
    check("echo_types.shape", got.__isset.shape && sent.shape == got.shape, clip(show(got.shape)));
    check("echo_types.note", got.__isset.note && sent.note == got.note, quote(got.note));
    check("echo_types.maybe_number", got.__isset.maybe_number && sent.maybe_number == got.maybe_number,
          std::to_string(got.maybe_number));
    fieldCheck("greeting", sent.greeting, got.greeting);
    fieldCheck("answer", sent.answer, got.answer);
    fieldCheck("numbers", sent.numbers, got.numbers);
    fieldCheck("tags", sent.tags, got.tags);
    fieldCheck("counts", sent.counts, got.counts);
    fieldCheck("groups", sent.groups, got.groups);
    fieldCheck("layers", sent.layers, got.layers);
    fieldCheck("palette", sent.palette, got.palette);
    blobsCheck(sent.blobs, got.blobs);
    check("echo_types.real bitwise (smallest negative subnormal)", bits(got.real) == bits(SMALLEST_NEGATIVE_SUBNORMAL),
          bitsHex(got.real));
    check("echo_types.data all 256 byte values", got.data == allBytes(), std::to_string(got.data.size()) + " bytes");
    check("echo_types i64 limits and 2^53+1",
          got.big_number == std::numeric_limits<int64_t>::max() &&
              got.maybe_number == std::numeric_limits<int64_t>::min() && got.counts["2^53+1"] == TWO_53_PLUS_1,
          std::to_string(got.big_number) + " " + std::to_string(got.maybe_number) + " " +
              std::to_string(got.counts["2^53+1"]));
    // The generated operator== compares doubles with ==: fine for this value (no NaN, no -0.0).
    check("echo_types generated operator== agrees", sent == got);
  }

  // 2. The special doubles, one call each, with the other union members and enum values.
  struct Variant {
    const char* name;
    double real;
    Color::type color;
    int64_t big;
  };
  const Variant variants[] = {
      {"NaN", std::numeric_limits<double>::quiet_NaN(), Color::MAX_COLOR, std::numeric_limits<int64_t>::min()},
      {"+inf", std::numeric_limits<double>::infinity(), Color::GREEN, TWO_53_PLUS_1},
      {"-inf", -std::numeric_limits<double>::infinity(), Color::BLUE, -TWO_53_PLUS_1},
      {"-0.0", -0.0, Color::UNKNOWN_COLOR, 0},
  };
  for (int i = 0; i < 4; i++) {
    const Variant& variant = variants[i];
    AllTypes v = fullValue(), back;
    v.__set_real(variant.real);
    v.__set_color(variant.color);
    v.__set_big_number(variant.big);
    Shape shape;
    if (i == 0) shape.__set_name("形状 🔷");
    if (i == 1) shape.__set_id(TWO_53_PLUS_1);
    if (i == 2) shape.__set_polygon({point(0, 0, nullptr), point(-1, -1, "西")});
    if (i == 3) shape.__set_polygon({});
    v.__set_shape(shape);
    std::string name = variant.name;
    calls++;
    if (!expectOK("echo_types[" + name + "]", [&] { c.client->echo_types(back, v); })) continue;
    check("echo_types[" + name + "].real bit for bit", bits(back.real) == bits(variant.real),
          "sent " + bitsHex(variant.real) + " got " + bitsHex(back.real));
    // The rest compared with operator== after copying the double over (its bits were checked above).
    // (operator== cannot compare a NaN with itself, so both doubles are zeroed for it.)
    AllTypes rest = back, want = v;
    rest.real = want.real = 0.0;
    bool same = rest == want && std::string(shapeMember(back.shape)) == shapeMember(v.shape);
    check("echo_types[" + name + "] whole value (shape " + shapeMember(v.shape) + ", color " + show(v.color) + ")",
          same, same ? "" : "the echoed value differs: shape " + std::string(shapeMember(back.shape)) + ", color " +
                                show(back.color) + ", big_number " + std::to_string(back.big_number));
  }
  // Caveat, shown rather than hidden: C++ == (and so the generated operator==) treats -0.0 as 0.0.
  check("caveat: C++ == says -0.0 == 0.0 (so doubles are compared by their bits here)", -0.0 == 0.0);

  // 3. Only the required field: optional fields stay unset, empty containers stay empty.
  AllTypes minimal, back;
  minimal.__set_id("minimal/cpp");
  calls++;
  if (expectOK("echo_types[minimal]", [&] { c.client->echo_types(back, minimal); })) {
    check("echo_types[minimal] optional fields (shape, note, maybe_number) stay unset",
          !back.__isset.shape && !back.__isset.note && !back.__isset.maybe_number,
          std::string("shape=") + (back.__isset.shape ? "set" : "unset") + " note=" + (back.__isset.note ? "set" : "unset") +
              " maybe_number=" + (back.__isset.maybe_number ? "set" : "unset"));
    check("echo_types[minimal] empty containers stay empty",
          back.__isset.numbers && back.numbers.empty() && back.__isset.tags && back.tags.empty() &&
              back.__isset.counts && back.counts.empty(),
          "numbers=" + show(back.numbers) + " tags=" + show(back.tags) + " counts=" + show(back.counts));
    check("echo_types[minimal] id and IDL defaults (greeting \"hello\", answer 42)",
          back.id == "minimal/cpp" && back.greeting == "hello" && back.answer == 42,
          "id=" + back.id + " greeting=" + back.greeting + " answer=" + std::to_string(back.answer));
    // Caveat: C++ writes every non-optional field, unset or not (zero values), so they all come back set.
    check("caveat: unset non-optional fields are written as zeros and come back set",
          back.__isset.flag && !back.flag && back.__isset.real && bits(back.real) == 0 && back.__isset.text &&
              back.text.empty(),
          std::string("flag=") + (back.flag ? "true" : "false") + " real=" + bitsHex(back.real));
    check("echo_types[minimal] color comes back as the IDL default RED", back.color == Color::RED, show(back.color));
  }
  return calls;
}

// ---------------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------------

static void firstConnection() {
  {
    Conn c;
    std::exception_ptr error;
    try {
      c.client->ping();
    } catch (...) {
      error = std::current_exception();
    }
    check("ping before hello", !error, describe(error));

    std::string echo;
    HandshakeRequired required;
    if (expectError<HandshakeRequired>("echo before hello", [&] { c.client->echo(echo, "too early"); }, &required)) {
      check("echo before hello", true, "HandshakeRequired: " + required.message);
    }
    error = nullptr;
    try {
      c.client->ping();
    } catch (...) {
      error = std::current_exception();
    }
    check("connection usable after HandshakeRequired", !error, describe(error));

    ServerHello hello;
    if (expectOK("hello 1..1", [&] { c.client->hello(hello, clientHello(1, 1)); })) {
      check("hello 1..1 -> version 1", hello.version == 1,
            "version=" + std::to_string(hello.version) + " session_id=" + hello.session_id);
      check("hello 1..1 session_id non-empty", !hello.session_id.empty(), quote(hello.session_id));
    }

    HandshakeRejected rejected;
    ServerHello again;
    if (expectError<HandshakeRejected>("second hello", [&] { c.client->hello(again, clientHello(1, 2)); }, &rejected)) {
      check("second hello -> HandshakeRejected", !rejected.reason.empty(),
            "reason=" + quote(rejected.reason) + " server versions " + std::to_string(rejected.min_version) + ".." +
                std::to_string(rejected.max_version));
      check("HandshakeRejected carries the server's versions 1..2", rejected.min_version == 1 && rejected.max_version == 2,
            std::to_string(rejected.min_version) + ".." + std::to_string(rejected.max_version));
    }

    if (expectOK("echo after rejected second hello", [&] { c.client->echo(echo, "still here"); })) {
      check("session survives a rejected second hello", echo == "still here", quote(echo));
    }
  }
  {
    Conn c;
    HandshakeRejected rejected;
    ServerHello hello;
    if (expectError<HandshakeRejected>("hello 3..4", [&] { c.client->hello(hello, clientHello(3, 4)); }, &rejected)) {
      check("hello 3..4 -> HandshakeRejected (no common version)", rejected.min_version == 1 && rejected.max_version == 2,
            "reason=" + quote(rejected.reason));
    }
    HandshakeRequired required;
    ServerStats stats;
    if (expectError<HandshakeRequired>("stats before hello", [&] { c.client->stats(stats); }, &required)) {
      check("stats after a rejected hello -> HandshakeRequired", true, required.message);
    }
  }
}

static void secondConnection() {
  Conn c;
  int64_t calls = 0;  // calls after hello(), not counting goodbye(): what Farewell.calls must report

  auto helloStarted = std::chrono::steady_clock::now();
  ServerHello hello;
  if (!expectOK("hello 1..2", [&] { c.client->hello(hello, clientHello(1, 2, {"submit", "notify", "no-such-feature"})); })) {
    return;
  }
  const std::string sessionId = hello.session_id;
  check("hello 1..2 -> version 2", hello.version == 2, "version=" + std::to_string(hello.version));
  check("hello 1..2 session_id non-empty", !sessionId.empty(), quote(sessionId));
  bool subset = true;
  for (const auto& f : hello.features) subset = subset && (f == "submit" || f == "notify");
  check("hello features are a subset of the client's", subset, show(hello.features));
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  int64_t skew = now - hello.server_time_ms;
  check("hello server_time_ms is the server's wall clock", std::llabs(skew) < 60000,
        std::to_string(hello.server_time_ms) + " (skew " + std::to_string(skew) + " ms)");
  check("hello idle_timeout_ms and max_message_bytes positive", hello.idle_timeout_ms > 0 && hello.max_message_bytes > 0,
        "idle_timeout_ms=" + std::to_string(hello.idle_timeout_ms) +
            " max_message_bytes=" + std::to_string(hello.max_message_bytes));

  const std::string text = "请求数据 😀🚀";
  std::string echo;
  calls++;
  if (expectOK("echo", [&] { c.client->echo(echo, text); })) {
    check("echo(\"请求数据 😀🚀\") round-trips", echo == text, quote(echo));
  }

  Request request;
  request.__set_request_id("n1");
  request.__set_payload("abc");
  request.__set_work_ms(0);
  Response response;
  calls++;
  if (expectOK("process n1", [&] { c.client->process(response, request); })) {
    check("process digest", response.digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
          response.digest);
    check("process sequence 1", response.sequence == 1, std::to_string(response.sequence));
    check("process session_id matches hello", response.session_id == sessionId, response.session_id);
    check("process request_id echoed", response.request_id == "n1", response.request_id);
  }
  const std::string payload2 = "第二 📦";
  request.__set_request_id("n2");
  request.__set_payload(payload2);
  calls++;
  if (expectOK("process n2", [&] { c.client->process(response, request); })) {
    check("process n2 sequence 2 and sha256 digest", response.sequence == 2 && response.digest == sha256(payload2),
          "sequence=" + std::to_string(response.sequence) + " digest=" + response.digest);
  }

  request.__set_request_id("");
  request.__set_payload("abc");
  InvalidRequest invalid;
  calls++;
  if (expectError<InvalidRequest>("process with empty request_id", [&] { c.client->process(response, request); }, &invalid)) {
    check("process with empty request_id -> InvalidRequest(field=request_id)", invalid.field == "request_id",
          "field=" + quote(invalid.field) + " message=" + quote(invalid.message));
  }

  const std::string payload = "submitted 数据";
  request.__set_request_id("s1");
  request.__set_payload(payload);
  request.__set_work_ms(300);
  Ack ack;
  calls++;
  auto submitStarted = std::chrono::steady_clock::now();
  bool submitted = expectOK("submit", [&] { c.client->submit(ack, request); });
  double submitMs = ms_since(submitStarted);
  if (submitted) {
    check("submit(work_ms=300) returns before the work is done", submitMs < 300, std::to_string(int(submitMs)) + " ms");
    check("submit ack has a ticket", !ack.ticket.empty(), "ticket=" + ack.ticket + " request_id=" + ack.request_id);
    check("submit ack request_id", ack.request_id == "s1", ack.request_id);
  }
  if (submitted && !ack.ticket.empty()) {
    NotReady notReady;
    Response result;
    calls++;
    if (expectError<NotReady>("get_result(ticket, 0)", [&] { c.client->get_result(result, ack.ticket, 0); }, &notReady)) {
      check("get_result(ticket, 0) -> NotReady", notReady.ticket == ack.ticket,
            "ticket=" + notReady.ticket + " message=" + quote(notReady.message));
    }
    calls++;
    if (expectOK("get_result(ticket, 3000)", [&] { c.client->get_result(result, ack.ticket, 3000); })) {
      check("get_result(ticket, 3000) -> result", result.request_id == "s1" && result.digest == sha256(payload),
            "request_id=" + result.request_id + " digest=" + result.digest);
      check("submitted result session_id and sequence", result.session_id == sessionId && result.sequence == 1,
            "session_id=" + result.session_id + " sequence=" + std::to_string(result.sequence));
      check("submitted result processing_us covers work_ms", result.processing_us >= 300000,
            std::to_string(result.processing_us) + " us");
    }
  }

  UnknownTicket unknown;
  Response none;
  calls++;
  if (expectError<UnknownTicket>("get_result(\"nope\", 0)", [&] { c.client->get_result(none, "nope", 0); }, &unknown)) {
    check("get_result(\"nope\", 0) -> UnknownTicket", unknown.ticket == "nope", "ticket=" + quote(unknown.ticket));
  }

  Event event;
  event.__set_name("interop");
  event.__set_payload("cpp 通知");
  calls++;
  std::exception_ptr error;
  try {
    c.client->notify(event);
  } catch (...) {
    error = std::current_exception();
  }
  check("notify (oneway) sent", !error, describe(error));

  calls += echoTypesChecks(c);

  calls++;
  try {
    c.client->fail("x");
    check("fail(\"x\") -> TApplicationException", false, "got a result");
  } catch (const TApplicationException& e) {
    check("fail(\"x\") -> TApplicationException INTERNAL_ERROR", e.getType() == TApplicationException::INTERNAL_ERROR,
          "type=" + std::to_string(e.getType()) + " message=" + quote(e.what()));
  } catch (...) {
    check("fail(\"x\") -> TApplicationException", false, "got " + describe(std::current_exception()));
  }
  calls++;
  if (expectOK("echo after fail", [&] { c.client->echo(echo, "after fail"); })) {
    check("echo works after fail on the same connection", echo == "after fail", quote(echo));
  }

  ServerStats stats;
  calls++;
  if (expectOK("stats", [&] { c.client->stats(stats); })) {
    check("stats notifications >= 1", stats.notifications >= 1, std::to_string(stats.notifications));
    int64_t echoCalls = stats.calls.count("echo") ? stats.calls["echo"] : 0;
    check("stats calls[\"echo\"] >= 1", echoCalls >= 1, std::to_string(echoCalls));
    check("stats sessions_active >= 1", stats.sessions_active >= 1, std::to_string(stats.sessions_active));
  }

  Farewell farewell;
  bool said = expectOK("goodbye", [&] { c.client->goodbye(farewell); });
  double sessionMs = ms_since(helloStarted);
  if (said) {
    check("goodbye -> Farewell with the same session_id", farewell.session_id == sessionId, farewell.session_id);
    check("Farewell.calls counts the session's calls (no hello/goodbye)", farewell.calls == calls,
          "calls=" + std::to_string(farewell.calls) + " expected " + std::to_string(calls));
    check("Farewell.duration_ms within the session's time",
          farewell.duration_ms >= 0 && farewell.duration_ms <= sessionMs + 1000,
          std::to_string(farewell.duration_ms) + " ms (client saw " + std::to_string(int64_t(sessionMs)) + " ms)");
  }

  // The server closes the connection after goodbye's reply, so the next call cannot succeed.
  error = nullptr;
  bool transportError = false;
  try {
    c.client->echo(echo, "after goodbye");
  } catch (const TTransportException& e) {
    error = std::current_exception();
    transportError = e.getType() != TTransportException::TIMED_OUT;
  } catch (...) {
    error = std::current_exception();
  }
  check("a call after goodbye fails", error != nullptr, describe(error));
  check("the failure is the server closing the connection (a transport error, not a timeout)", transportError,
        describe(error));
}

// Overloaded needs a full submit queue: HANDSHAKE_OVERLOAD_PORT names a server on the same host started with
// submit_workers=1 and submit_queue=1 (room for 2 unfinished requests), where a third submit is refused.
static void overloadedServer(int overloadPort) {
  Conn c(overloadPort);
  ServerHello hello;
  if (!expectOK("hello on the small-queue server", [&] { c.client->hello(hello, clientHello(1, 2)); })) return;
  Request request;
  request.__set_payload("busy");
  request.__set_work_ms(500);
  Ack ack;
  for (int i = 1; i <= 2; i++) {
    request.__set_request_id("q" + std::to_string(i));
    expectOK("submit q" + std::to_string(i) + " (fills the queue)", [&] { c.client->submit(ack, request); });
  }
  request.__set_request_id("q3");
  Overloaded overloaded;
  if (expectError<Overloaded>("submit beyond the queue", [&] { c.client->submit(ack, request); }, &overloaded)) {
    check("submit beyond the queue -> Overloaded", overloaded.queued == 2 && overloaded.capacity == 2,
          "queued=" + std::to_string(overloaded.queued) + " capacity=" + std::to_string(overloaded.capacity) +
              " message=" + quote(overloaded.message));
  }
}

int main(int argc, char** argv) {
  const char* envHost = std::getenv("HANDSHAKE_HOST");
  const char* envPort = std::getenv("HANDSHAKE_PORT");
  if (argc > 1) host = argv[1]; else if (envHost && *envHost) host = envHost;
  if (argc > 2) port = std::atoi(argv[2]); else if (envPort && *envPort) port = std::atoi(envPort);
  const char* envProtocol = std::getenv("HANDSHAKE_PROTOCOL");
  const char* envTransport = std::getenv("HANDSHAKE_TRANSPORT");
  if (envProtocol && *envProtocol) protocolName = envProtocol;
  if (envTransport && *envTransport) transportName = envTransport;
  if ((protocolName != "binary" && protocolName != "compact") ||
      (transportName != "buffered" && transportName != "framed" && transportName != "header")) {
    std::cerr << "HANDSHAKE_PROTOCOL must be binary or compact and HANDSHAKE_TRANSPORT buffered, framed or header, not \""
              << protocolName << "\" and \"" << transportName << "\"\n";
    return 2;
  }
  std::cout << "C++ " << __cplusplus << " (g++ " << __VERSION__ << "), libthrift " << PACKAGE_VERSION << ", server "
            << host << ":" << port << ", wire " << protocolName << "+" << transportName << "\n";
  try {
    firstConnection();
    secondConnection();
    const char* overloadPort = std::getenv("HANDSHAKE_OVERLOAD_PORT");
    if (overloadPort && *overloadPort) overloadedServer(std::atoi(overloadPort));
  } catch (...) {
    check("flow completed", false, describe(std::current_exception()));
  }
  std::cout << (checks - failures) << "/" << checks << " checks passed" << std::endl;
  return failures > 0 || checks == 0 ? 1 : 0;
}
