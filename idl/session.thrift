/**
 * The session contract of the thrift-handshake runtime: the explicit handshake any service can extend.
 *
 * Phases of a connection: connect (TCP/TLS), handshake (hello), requests, disconnect (goodbye, close).
 * A service that extends SessionService gets hello/ping/goodbye/stats served by the runtime; every
 * other method needs a completed hello() on the same connection, otherwise it throws
 * HandshakeRequired (where declared) and the connection stays usable.
 */

namespace py thrift_handshake_gen.session
namespace js thrift_handshake
namespace cpp thrift_handshake
namespace java org.thrift_handshake
namespace go thrift_handshake_session
namespace rb ThriftHandshake
namespace perl ThriftHandshake.Session
namespace c_glib ThriftHandshake
namespace netstd ThriftHandshake
namespace rs thrift_handshake

// ---------------------------------------------------------------------------------------------
// Handshake types
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
  /**
   * W3C trace context (https://www.w3.org/TR/trace-context/#traceparent-header) of the hello call,
   * e.g. "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", for dialects without per-message
   * headers; over THeader every call (hello included) may carry a "traceparent" header instead.
   */
  7: optional string traceparent,
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
  /** The largest message (header and framing included) the server reads, in bytes. */
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

/**
 * The method needs a completed hello() on this connection; the connection stays usable.
 *
 * With reconnect set, the call was not run for another reason: the session on this connection has
 * ended (it reached the server's max connection age) and the server closes the connection after this
 * answer. Connect again, say hello, and send the call again, whatever the method: it never ran.
 */
exception HandshakeRequired {
  1: string message,
  2: optional bool reconnect,
}

/**
 * The server is draining (it is stopping): it finishes the calls in flight but opens no new session.
 * ping() answers it, so a health check can tell; hello() answers it, and the client connects to
 * another server. remaining_ms: at most this long until the server stops.
 */
exception Draining {
  1: string message,
  2: i64 remaining_ms,
}

/** What goodbye() returns before the server closes the connection. */
struct Farewell {
  1: string session_id,
  /** Calls served in this session, not counting hello() and goodbye(). */
  2: i64 calls,
  /** Time from hello() to goodbye(). */
  3: i64 duration_ms,
}

/** Server counters (stats()). */
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
// The session methods
// ---------------------------------------------------------------------------------------------

service SessionService {
  /** Opens the session: negotiates the version and features, checks the auth token. */
  ServerHello hello(1: ClientHello hello) throws (1: HandshakeRejected rejected, 2: Draining draining),

  /** Health check; allowed before hello(). Draining while the server stops. */
  void ping() throws (1: Draining draining),

  ServerStats stats() throws (1: HandshakeRequired handshake_required),

  /** The disconnect phase: ends the session; the server closes the connection after the reply. */
  Farewell goodbye() throws (1: HandshakeRequired handshake_required),
}
