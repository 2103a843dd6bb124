/**
 * thrift-handshake: an RPC service whose client/server handshake is explicit.
 *
 * Phases of a connection: connect (TCP), handshake (hello), requests, disconnect (goodbye, close).
 * Every method except hello() and ping() needs a completed hello on the same connection; otherwise it
 * throws HandshakeRequired and the connection stays usable.
 *
 * Wire: TBufferedTransport + TBinaryProtocol (strict), port 9090 by default.
 */

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
// Handshake
// ---------------------------------------------------------------------------------------------

struct ClientHello {
  1: required string client_name,
  2: string language,
  /** Inclusive range of protocol versions the client speaks. */
  3: i32 min_version,
  4: i32 max_version,
  /** Needed when the server is started with an auth token. */
  5: optional string auth_token,
  6: set<string> features,
}

struct ServerHello {
  1: string session_id,
  /** The highest version both sides support. */
  2: i32 version,
  3: string server_name,
  /** The features both sides support. */
  4: set<string> features,
  /** Server wall clock, milliseconds since the Unix epoch. */
  5: i64 server_time_ms,
  /** The server closes a connection that stays silent this long. */
  6: i32 idle_timeout_ms,
  /** No string or binary in one message may be longer than this many bytes. */
  7: i32 max_message_bytes,
}

/**
 * hello() was refused: no common version, a missing or wrong auth token, or a second hello on a
 * connection that already has a session (that session stays as it was). min_version and
 * max_version are the versions the server supports.
 */
exception HandshakeRejected {
  1: string reason,
  2: i32 min_version,
  3: i32 max_version,
}

/** The method needs a completed hello() on this connection; the connection stays usable. */
exception HandshakeRequired {
  1: string message,
}

/** What goodbye() returns before the server closes the connection. */
struct Farewell {
  1: string session_id,
  /** Calls served in this session, not counting hello() and goodbye(). */
  2: i64 calls,
  /** Time from hello() to goodbye(). */
  3: i64 duration_ms,
}

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

struct ServerStats {
  1: i64 connections_open,
  2: i64 connections_total,
  3: i64 sessions_active,
  4: i64 handshakes_ok,
  5: i64 handshakes_rejected,
  /** Messages received, by method name. */
  6: map<string, i64> calls,
  /** One-way notifications delivered to the handler. */
  7: i64 notifications,
  8: i64 uptime_ms,
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

service HandshakeService {
  /** Opens the session: negotiates the version and features, checks the auth token. */
  ServerHello hello(1: ClientHello hello) throws (1: HandshakeRejected rejected),

  /** Health check; allowed before hello(). */
  void ping(),

  /** Returns the message unchanged. */
  string echo(1: string message) throws (1: HandshakeRequired handshake_required),

  /** The async acknowledgement: returns after processing. */
  Response process(1: Request request)
      throws (1: InvalidRequest invalid, 2: HandshakeRequired handshake_required),

  /** The sync acknowledgement: returns on receipt; the work runs on a bounded server pool. */
  Ack submit(1: Request request)
      throws (1: InvalidRequest invalid, 2: HandshakeRequired handshake_required,
              3: Overloaded overloaded),

  /** Waits up to wait_ms for a submitted request's result; works from any connection. */
  Response get_result(1: string ticket, 2: i32 wait_ms)
      throws (1: UnknownTicket unknown, 2: NotReady not_ready,
              3: HandshakeRequired handshake_required),

  /** Fire and forget: no acknowledgement of any kind. Dropped before hello(). */
  oneway void notify(1: Event event),

  /** Returns the value unchanged. */
  AllTypes echo_types(1: AllTypes value) throws (1: HandshakeRequired handshake_required),

  ServerStats stats() throws (1: HandshakeRequired handshake_required),

  /**
   * Fails on purpose with an error the IDL does not declare, so a client can see how it arrives
   * (TApplicationException INTERNAL_ERROR); the connection stays up.
   */
  void fail(1: string message) throws (1: HandshakeRequired handshake_required),

  /** The disconnect phase: ends the session; the server closes the connection after the reply. */
  Farewell goodbye() throws (1: HandshakeRequired handshake_required),
}
