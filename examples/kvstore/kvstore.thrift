/**
 * A small key-value store: the example service to copy when you add your own.
 *
 * It extends session.SessionService, so the runtime serves hello, ping, stats and goodbye for it and
 * every method below needs a completed hello() on the connection (HandshakeRequired otherwise).
 */

include "../../idl/session.thrift"

namespace py kvstore
namespace js kvstore
namespace go kvstore

/** One stored value. version starts at 1 and grows by one on every put of the key. */
struct Entry {
  1: required string key,
  2: string value,
  3: i64 version,
  /** Milliseconds since the Unix epoch after which the entry is gone; unset: never. */
  4: optional i64 expires_at,
}

/** get() or remove() of a key that is not there (or has expired). */
exception KeyNotFound {
  1: string key,
}

service KeyValue extends session.SessionService {
  /** Stores value under key; ttl_ms > 0 makes it expire that many milliseconds from now. */
  Entry put(1: string key, 2: string value, 3: i64 ttl_ms)
      throws (1: session.HandshakeRequired handshake_required),

  Entry get(1: string key)
      throws (1: KeyNotFound not_found, 2: session.HandshakeRequired handshake_required),

  /** Removes key and returns what it held. */
  Entry remove(1: string key)
      throws (1: KeyNotFound not_found, 2: session.HandshakeRequired handshake_required),

  /** The entries whose key starts with prefix, sorted by key, at most limit of them (0: all). */
  list<Entry> scan(1: string prefix, 2: i32 limit)
      throws (1: session.HandshakeRequired handshake_required),

  /** Every key with its version. */
  map<string, i64> versions() throws (1: session.HandshakeRequired handshake_required),

  /** Fire and forget: pushes an expiring key's expiry ttl_ms further (nothing happens for unknown keys). */
  oneway void touch(1: string key, 2: i64 ttl_ms),
}
