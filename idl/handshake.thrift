/**
 * thrift-handshake's demo service: requests with both kinds of acknowledgement, and every Thrift type.
 *
 * It extends session.SessionService (session.thrift: hello, ping, stats, goodbye and their types), so
 * every method here needs a completed hello() on the same connection; otherwise it throws
 * HandshakeRequired and the connection stays usable.
 *
 * Wire: TBufferedTransport + TBinaryProtocol (strict), port 9090 by default.
 */

include "session.thrift"

namespace py thrift_handshake_gen
namespace js thrift_handshake
namespace cpp thrift_handshake
namespace java org.thrift_handshake
namespace go thrift_handshake
namespace rb ThriftHandshake
namespace perl ThriftHandshake
namespace c_glib ThriftHandshake
namespace netstd ThriftHandshake
namespace rs thrift_handshake

/** Lowest and highest protocol version this contract defines. */
const i32 MIN_PROTOCOL_VERSION = 1
const i32 MAX_PROTOCOL_VERSION = 2

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

struct Request {
  1: string request_id,
  2: string payload,
  /** Simulated processing time, 0..10000. */
  3: i32 work_ms,
  4: map<string, string> headers,
}

struct Response {
  1: string request_id,
  /** Lowercase hex SHA-256 of the payload's UTF-8 bytes. */
  2: string digest,
  /** The server's own time on this request (T_s), in microseconds. */
  3: i64 processing_us,
  4: string session_id,
  /** 1 for the session's first process() call, then +1 each (submit() counts its own sequence). */
  5: i64 sequence,
}

/** The sync acknowledgement: the request was received and queued. */
struct Ack {
  1: string ticket,
  2: string request_id,
  3: i64 accepted_at_ms,
}

/** A request that cannot be served as given; field names the offending field. */
exception InvalidRequest {
  1: string message,
  2: string field,
}

/** The submit queue is full; try again later. */
exception Overloaded {
  1: string message,
  2: i32 queued,
  3: i32 capacity,
}

exception UnknownTicket {
  1: string ticket,
}

exception NotReady {
  1: string ticket,
  2: string message,
}

struct Event {
  1: string name,
  2: string payload,
}


// ---------------------------------------------------------------------------------------------
// The type system, for interop
// ---------------------------------------------------------------------------------------------

enum Color {
  UNKNOWN_COLOR = -1,
  RED = 1,
  GREEN = 2,
  BLUE = 3,
  MAX_COLOR = 2147483647,
}

struct Point {
  1: i32 x,
  2: i32 y,
  3: optional string label,
}

union Shape {
  1: Point point,
  2: string name,
  3: i64 id,
  4: list<Point> polygon,
}

struct AllTypes {
  1: required string id,
  2: bool flag,
  3: i8 small,
  4: i16 short_number,
  5: i32 number,
  6: i64 big_number,
  7: double real,
  8: string text,
  9: binary data,
  10: Color color = Color.RED,
  11: optional Shape shape,
  12: optional string note,
  13: optional i64 maybe_number,
  14: string greeting = "hello",
  15: i32 answer = 42,
  16: list<i32> numbers,
  17: set<string> tags,
  18: map<string, i64> counts,
  19: map<string, list<Point>> groups,
  20: list<map<string, set<i32>>> layers,
  21: map<i32, Color> palette,
  22: list<binary> blobs,
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

service HandshakeService extends session.SessionService {
  /** Returns the message unchanged. */
  string echo(1: string message) throws (1: session.HandshakeRequired handshake_required),

  /** The async acknowledgement: returns after processing. */
  Response process(1: Request request)
      throws (1: InvalidRequest invalid, 2: session.HandshakeRequired handshake_required),

  /** The sync acknowledgement: returns on receipt; the work runs on a bounded server pool. */
  Ack submit(1: Request request)
      throws (1: InvalidRequest invalid, 2: session.HandshakeRequired handshake_required,
              3: Overloaded overloaded),

  /** Waits up to wait_ms for a submitted request's result; works from any connection. */
  Response get_result(1: string ticket, 2: i32 wait_ms)
      throws (1: UnknownTicket unknown, 2: NotReady not_ready,
              3: session.HandshakeRequired handshake_required),

  /** Fire and forget: no acknowledgement of any kind. Dropped before hello(). */
  oneway void notify(1: Event event),

  /** Returns the value unchanged. */
  AllTypes echo_types(1: AllTypes value) throws (1: session.HandshakeRequired handshake_required),

  /**
   * Fails on purpose with an error the IDL does not declare, so a client can see how it arrives
   * (TApplicationException INTERNAL_ERROR); the connection stays up.
   */
  void fail(1: string message) throws (1: session.HandshakeRequired handshake_required),
}
