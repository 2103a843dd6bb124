/*
 * The contract's whole flow from C (Debian's libthrift-c-glib-dev 0.17): handshake, echo, process, submit and
 * get_result, notify, echo_types, an undeclared error, stats, goodbye, and Overloaded on a second server.
 * Build: thrift -r --gen c_glib -out GEN idl/handshake.thrift, then
 *   gcc -o client interop/c_glib/client.c GEN/\*.c -IGEN $(pkg-config --cflags --libs thrift_c_glib glib-2.0 gobject-2.0)
 * Run: client [HOST PORT]; HANDSHAKE_HOST/HANDSHAKE_PORT, HANDSHAKE_OVERLOAD_PORT (a server with room for 2
 * submits), HANDSHAKE_PROTOCOL=binary|compact, HANDSHAKE_TRANSPORT=buffered|framed.
 * Prints one line per check (`ok   name: detail` or `FAIL name: detail`), then `N/M checks passed`.
 *
 * c_glib's rules, seen here: struct and container results are allocated by the caller before the call; a
 * declared exception comes back in its own out-parameter (NULL before the call) with the call returning FALSE;
 * a TApplicationException is a GError in THRIFT_APPLICATION_EXCEPTION_ERROR whose code is its type.
 */
#include <glib-object.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/protocol/thrift_compact_protocol.h>
#include <thrift/c_glib/thrift.h>
#include <thrift/c_glib/thrift_application_exception.h>
#include <thrift/c_glib/transport/thrift_buffered_transport.h>
#include <thrift/c_glib/transport/thrift_framed_transport.h>
#include <thrift/c_glib/transport/thrift_socket.h>

#include "thrift_handshake_handshake_service.h"

#ifndef THRIFT_C_GLIB_VERSION /* the build passes -DTHRIFT_C_GLIB_VERSION="\"$(pkg-config --modversion thrift_c_glib)\"" */
#define THRIFT_C_GLIB_VERSION "unknown"
#endif

static const char *host = "127.0.0.1";
static const char *protocol_name = "binary";
static const char *transport_name = "buffered";
static int checks = 0, failures = 0;

static gboolean check(const char *name, gboolean ok, const char *format, ...) G_GNUC_PRINTF(3, 4);

static gboolean check(const char *name, gboolean ok, const char *format, ...) {
  va_list args;
  checks++;
  if (!ok) failures++;
  printf("%s %s: ", ok ? "ok  " : "FAIL", name);
  va_start(args, format);
  vprintf(format, args);
  va_end(args);
  printf("\n");
  fflush(stdout);
  return ok;
}

typedef struct {
  ThriftTransport *transport;
  ThriftProtocol *protocol;
  ThriftSocket *socket;
  ThriftHandshakeHandshakeServiceIf *client;
  ThriftHandshakeSessionServiceIf *session;
} Connection;

static gboolean connect_to(Connection *c, int port) {
  GError *error = NULL;
  c->socket = g_object_new(THRIFT_TYPE_SOCKET, "hostname", host, "port", port, NULL);
  GType transport_type = strcmp(transport_name, "framed") == 0 ? THRIFT_TYPE_FRAMED_TRANSPORT
                                                                : THRIFT_TYPE_BUFFERED_TRANSPORT;
  GType protocol_type = strcmp(protocol_name, "compact") == 0 ? THRIFT_TYPE_COMPACT_PROTOCOL
                                                               : THRIFT_TYPE_BINARY_PROTOCOL;
  c->transport = g_object_new(transport_type, "transport", c->socket, NULL);
  c->protocol = g_object_new(protocol_type, "transport", c->transport, NULL);
  c->client = g_object_new(THRIFT_HANDSHAKE_TYPE_HANDSHAKE_SERVICE_CLIENT, "input_protocol", c->protocol,
                           "output_protocol", c->protocol, NULL);
  c->session = THRIFT_HANDSHAKE_SESSION_SERVICE_IF(c->client);
  if (!thrift_transport_open(c->transport, &error)) {
    check("connect", FALSE, "%s:%d: %s", host, port, error ? error->message : "?");
    g_clear_error(&error);
    return FALSE;
  }
  return TRUE;
}

static void disconnect(Connection *c) {
  thrift_transport_close(c->transport, NULL);
  g_object_unref(c->client);
  g_object_unref(c->protocol);
  g_object_unref(c->transport);
  g_object_unref(c->socket);
}

static ThriftHandshakeClientHello *client_hello(int min, int max, const char *const *features) {
  ThriftHandshakeClientHello *hello = g_object_new(THRIFT_HANDSHAKE_TYPE_CLIENT_HELLO, "client_name", "c_glib-interop",
                                                   "language", "c", "min_version", min, "max_version", max, NULL);
  for (; features && *features; features++) g_hash_table_add(hello->features, g_strdup(*features));
  return hello;
}

static ThriftHandshakeRequest *request(const char *id, const char *payload, int work_ms) {
  return g_object_new(THRIFT_HANDSHAKE_TYPE_REQUEST, "request_id", id, "payload", payload, "work_ms", work_ms, NULL);
}

/* The SHA-256 hex of a string, with GLib's checksum. */
static gchar *sha256_hex(const char *text) { return g_compute_checksum_for_string(G_CHECKSUM_SHA256, text, -1); }

static const char *message_of(GError *error) { return error ? error->message : "(no error)"; }

/* ping() and hello(); their Draining answer (only while the server stops) is a failure like any other here. */
static gboolean session_ping(ThriftHandshakeSessionServiceIf *session, GError **error) {
  ThriftHandshakeDraining *draining = NULL;
  gboolean ok = thrift_handshake_session_service_if_ping(session, &draining, error);
  g_clear_object(&draining);
  return ok;
}

static gboolean session_hello(ThriftHandshakeSessionServiceIf *session, ThriftHandshakeServerHello **answer,
                              const ThriftHandshakeClientHello *hello, ThriftHandshakeHandshakeRejected **rejected,
                              GError **error) {
  ThriftHandshakeDraining *draining = NULL;
  gboolean ok = thrift_handshake_session_service_if_hello(session, answer, hello, rejected, &draining, error);
  g_clear_object(&draining);
  return ok;
}

static void first_connection(int port) {
  Connection c;
  GError *error = NULL;
  if (!connect_to(&c, port)) return;
  gboolean ok = session_ping(c.session, &error);
  check("ping before hello", ok, "%s", ok ? "returned" : message_of(error));
  g_clear_error(&error);

  gchar *echoed = NULL;
  ThriftHandshakeHandshakeRequired *required = NULL;
  ok = thrift_handshake_handshake_service_if_echo(c.client, &echoed, "too early", &required, &error);
  check("echo before hello", !ok && required != NULL, "HandshakeRequired: %s", required ? required->message : "none");
  g_clear_error(&error);
  g_clear_object(&required);
  g_free(echoed);
  ok = session_ping(c.session, &error);
  check("connection usable after HandshakeRequired", ok, "%s", ok ? "returned" : message_of(error));
  g_clear_error(&error);

  ThriftHandshakeClientHello *hello = client_hello(1, 1, NULL);
  ThriftHandshakeServerHello *server_hello = g_object_new(THRIFT_HANDSHAKE_TYPE_SERVER_HELLO, NULL);
  ThriftHandshakeHandshakeRejected *rejected = NULL;
  ok = session_hello(c.session, &server_hello, hello, &rejected, &error);
  if (check("hello 1..1", ok, "%s", ok ? "answered" : message_of(error))) {
    check("hello 1..1 -> version 1", server_hello->version == 1, "version=%d", server_hello->version);
    check("hello 1..1 session_id non-empty", server_hello->session_id && *server_hello->session_id, "%s",
          server_hello->session_id);
  }
  g_clear_error(&error);
  g_clear_object(&rejected);
  g_object_unref(hello);

  hello = client_hello(1, 2, NULL);
  ok = session_hello(c.session, &server_hello, hello, &rejected, &error);
  if (check("second hello -> HandshakeRejected", !ok && rejected != NULL && rejected->reason && *rejected->reason,
            "%s", rejected ? rejected->reason : message_of(error))) {
    check("HandshakeRejected carries the server's versions 1..2",
          rejected->min_version == 1 && rejected->max_version == 2, "%d..%d", rejected->min_version,
          rejected->max_version);
  }
  g_clear_error(&error);
  g_clear_object(&rejected);
  g_object_unref(hello);
  g_object_unref(server_hello);

  echoed = NULL;
  ok = thrift_handshake_handshake_service_if_echo(c.client, &echoed, "still here", &required, &error);
  check("session survives a rejected second hello", ok && g_strcmp0(echoed, "still here") == 0, "%s",
        ok ? echoed : message_of(error));
  g_clear_error(&error);
  g_clear_object(&required);
  g_free(echoed);
  disconnect(&c);
}

/* NaN, the infinities and -0.0 come back bit for bit (C's == says -0.0 == 0.0 and NaN != NaN). */
static void special_doubles(Connection *c) {
  const char *names[] = {"NaN", "+inf", "-inf", "-0.0"};
  const guint64 patterns[] = {0x7ff8000000000000ULL, 0x7ff0000000000000ULL, 0xfff0000000000000ULL,
                              0x8000000000000000ULL};
  for (int i = 0; i < 4; i++) {
    GError *error = NULL;
    ThriftHandshakeHandshakeRequired *required = NULL;
    gchar id[32], name[64];
    snprintf(id, sizeof id, "d-%s", names[i]);
    snprintf(name, sizeof name, "echo_types real=%s bit for bit", names[i]);
    ThriftHandshakeAllTypes *value = g_object_new(THRIFT_HANDSHAKE_TYPE_ALL_TYPES, "id", id, NULL);
    memcpy(&value->real, &patterns[i], 8);
    value->__isset_real = TRUE;
    ThriftHandshakeAllTypes *back = g_object_new(THRIFT_HANDSHAKE_TYPE_ALL_TYPES, NULL);
    gboolean ok = thrift_handshake_handshake_service_if_echo_types(c->client, &back, value, &required, &error);
    guint64 bits = 0;
    memcpy(&bits, &back->real, 8);
    check(name, ok && bits == patterns[i], "%016" PRIx64 "%s%s", bits, ok ? "" : " ", ok ? "" : message_of(error));
    g_clear_error(&error);
    g_clear_object(&required);
    g_object_unref(back);
    g_object_unref(value);
  }
}

/* Only the required id: the optional fields come back unset and the IDL defaults come back. */
static void minimal_value(Connection *c) {
  GError *error = NULL;
  ThriftHandshakeHandshakeRequired *required = NULL;
  ThriftHandshakeAllTypes *value = g_object_new(THRIFT_HANDSHAKE_TYPE_ALL_TYPES, "id", "min", NULL);
  ThriftHandshakeAllTypes *back = g_object_new(THRIFT_HANDSHAKE_TYPE_ALL_TYPES, NULL);
  gboolean ok = thrift_handshake_handshake_service_if_echo_types(c->client, &back, value, &required, &error);
  if (check("echo_types minimal", ok, "%s", ok ? "answered" : message_of(error))) {
    check("echo_types minimal: optional fields unset", !back->__isset_shape && !back->__isset_note &&
          !back->__isset_maybe_number, "shape %d note %d maybe_number %d", back->__isset_shape, back->__isset_note,
          back->__isset_maybe_number);
    check("echo_types minimal: IDL defaults", g_strcmp0(back->greeting, "hello") == 0 && back->answer == 42,
          "%s %d", back->greeting, back->answer);
    /* The generated instance_init sets greeting and answer to their defaults but not the enum color (= RED), and
     * the writer writes every non-optional field: a new AllTypes goes out, and comes back, with color 0. */
    check("caveat: c_glib leaves the enum default unset: color 0 (not RED) goes out and comes back",
          value->color == 0 && back->color == 0, "sent %d, got %d", value->color, back->color);
  }
  g_clear_error(&error);
  g_clear_object(&required);
  g_object_unref(back);
  g_object_unref(value);
}

static void echo_types(Connection *c) {
  GError *error = NULL;
  ThriftHandshakeHandshakeRequired *required = NULL;
  ThriftHandshakeAllTypes *value = g_object_new(THRIFT_HANDSHAKE_TYPE_ALL_TYPES, "id", "c-1", NULL);
  value->flag = TRUE, value->__isset_flag = TRUE;
  value->small = -128, value->__isset_small = TRUE;
  value->short_number = 32767, value->__isset_short_number = TRUE;
  value->number = INT32_MIN, value->__isset_number = TRUE;
  value->big_number = INT64_MAX, value->__isset_big_number = TRUE;
  value->real = 0.1, value->__isset_real = TRUE;
  value->text = g_strdup("中文 😀"), value->__isset_text = TRUE;
  guint8 bytes[256];
  for (int i = 0; i < 256; i++) bytes[i] = (guint8)i;
  value->data = g_byte_array_new();
  g_byte_array_append(value->data, bytes, sizeof bytes);
  value->__isset_data = TRUE;
  value->color = THRIFT_HANDSHAKE_COLOR_MAX_COLOR, value->__isset_color = TRUE;
  value->maybe_number = -9007199254740993LL, value->__isset_maybe_number = TRUE;
  gint32 numbers[] = {1, -1, INT32_MAX};
  g_array_append_vals(value->numbers, numbers, 3);
  value->__isset_numbers = TRUE;
  g_hash_table_add(value->tags, g_strdup("a"));
  g_hash_table_add(value->tags, g_strdup("b"));
  value->__isset_tags = TRUE;
  gint64 *count = g_new(gint64, 1);
  *count = INT64_MIN;
  g_hash_table_insert(value->counts, g_strdup("x"), count);
  value->__isset_counts = TRUE;
  value->shape->name = g_strdup("circle"), value->shape->__isset_name = TRUE;
  value->__isset_shape = TRUE;

  ThriftHandshakeAllTypes *back = g_object_new(THRIFT_HANDSHAKE_TYPE_ALL_TYPES, NULL);
  gboolean ok = thrift_handshake_handshake_service_if_echo_types(c->client, &back, value, &required, &error);
  if (check("echo_types returns an AllTypes", ok && back->id && strcmp(back->id, "c-1") == 0, "%s",
            ok ? back->id : message_of(error))) {
    check("echo_types i8/i16/i32 limits", back->small == -128 && back->short_number == 32767 &&
          back->number == INT32_MIN, "%d %d %d", back->small, back->short_number, back->number);
    gint64 *count_back = g_hash_table_lookup(back->counts, "x");
    check("echo_types i64 limits", back->big_number == INT64_MAX && back->maybe_number == -9007199254740993LL &&
          count_back && *count_back == INT64_MIN, "%" PRId64 " %" PRId64 " %" PRId64, back->big_number,
          back->maybe_number, count_back ? *count_back : 0);
    guint64 sent_bits, back_bits;
    memcpy(&sent_bits, &value->real, 8);
    memcpy(&back_bits, &back->real, 8);
    check("echo_types double 0.1 bit for bit", sent_bits == back_bits, "%016" PRIx64, back_bits);
    check("echo_types text", g_strcmp0(back->text, "中文 😀") == 0, "%s", back->text);
    check("echo_types all 256 byte values", back->data && back->data->len == 256 &&
          memcmp(back->data->data, bytes, 256) == 0, "%u bytes", back->data ? back->data->len : 0);
    check("echo_types enum MAX_COLOR", back->color == THRIFT_HANDSHAKE_COLOR_MAX_COLOR, "%d", back->color);
    check("echo_types set", g_hash_table_size(back->tags) == 2 && g_hash_table_contains(back->tags, "a") &&
          g_hash_table_contains(back->tags, "b"), "%u elements", g_hash_table_size(back->tags));
    check("echo_types list", back->numbers->len == 3 && g_array_index(back->numbers, gint32, 0) == 1 &&
          g_array_index(back->numbers, gint32, 2) == INT32_MAX, "%u elements", back->numbers->len);
    check("echo_types union", back->__isset_shape && g_strcmp0(back->shape->name, "circle") == 0, "%s",
          back->shape->name);
    check("echo_types IDL defaults come back", g_strcmp0(back->greeting, "hello") == 0 && back->answer == 42,
          "%s %d", back->greeting, back->answer);
  }
  g_clear_error(&error);
  g_clear_object(&required);
  g_object_unref(back);
  g_object_unref(value);
  special_doubles(c);
  minimal_value(c);
}

static void second_connection(int port) {
  Connection c;
  GError *error = NULL;
  ThriftHandshakeHandshakeRequired *required = NULL;
  gint64 calls = 0; /* calls after hello, not counting goodbye: what Farewell.calls must report */
  if (!connect_to(&c, port)) return;
  gint64 started = g_get_monotonic_time();

  const char *const features[] = {"submit", "notify", "no-such-feature", NULL};
  ThriftHandshakeClientHello *hello = client_hello(1, 2, features);
  ThriftHandshakeServerHello *sh = g_object_new(THRIFT_HANDSHAKE_TYPE_SERVER_HELLO, NULL);
  ThriftHandshakeHandshakeRejected *rejected = NULL;
  gboolean ok = session_hello(c.session, &sh, hello, &rejected, &error);
  g_object_unref(hello);
  if (!check("hello 1..2", ok, "%s", ok ? "answered" : message_of(error))) {
    g_clear_error(&error);
    g_object_unref(sh);
    disconnect(&c);
    return;
  }
  gchar *session_id = g_strdup(sh->session_id);
  check("hello 1..2 -> version 2", sh->version == 2, "version=%d", sh->version);
  check("hello 1..2 session_id non-empty", session_id && *session_id, "%s", session_id);
  check("hello features are a subset of the client's", g_hash_table_size(sh->features) <= 2 &&
        !g_hash_table_contains(sh->features, "no-such-feature"), "%u features", g_hash_table_size(sh->features));
  gint64 now_ms = g_get_real_time() / 1000;
  check("hello server_time_ms is the server's wall clock", llabs(sh->server_time_ms - now_ms) < 60000,
        "%" PRId64 " vs %" PRId64, sh->server_time_ms, now_ms);
  check("hello idle_timeout_ms and max_message_bytes positive", sh->idle_timeout_ms > 0 && sh->max_message_bytes > 0,
        "idle_timeout_ms=%d max_message_bytes=%d", sh->idle_timeout_ms, sh->max_message_bytes);
  g_object_unref(sh);

  const char *text = "请求数据 🚀";
  gchar *echoed = NULL;
  calls++;
  ok = thrift_handshake_handshake_service_if_echo(c.client, &echoed, text, &required, &error);
  check("echo(\"请求数据 🚀\") round-trips", ok && g_strcmp0(echoed, text) == 0, "%s", ok ? echoed : message_of(error));
  g_clear_error(&error);
  g_free(echoed);

  ThriftHandshakeRequest *req = request("n1", "abc", 0);
  ThriftHandshakeResponse *response = g_object_new(THRIFT_HANDSHAKE_TYPE_RESPONSE, NULL);
  ThriftHandshakeInvalidRequest *invalid = NULL;
  gchar *abc = sha256_hex("abc");
  calls++;
  ok = thrift_handshake_handshake_service_if_process(c.client, &response, req, &invalid, &required, &error);
  if (check("process n1", ok, "%s", ok ? "answered" : message_of(error))) {
    check("process digest", g_strcmp0(response->digest, abc) == 0, "%s", response->digest);
    check("process sequence 1", response->sequence == 1, "%" PRId64, response->sequence);
    check("process session_id matches hello", g_strcmp0(response->session_id, session_id) == 0, "%s",
          response->session_id);
    check("process request_id echoed", g_strcmp0(response->request_id, "n1") == 0, "%s", response->request_id);
  }
  g_clear_error(&error);
  g_free(abc);
  g_object_unref(req);

  req = request("", "abc", 0);
  calls++;
  ok = thrift_handshake_handshake_service_if_process(c.client, &response, req, &invalid, &required, &error);
  check("process with empty request_id -> InvalidRequest(field=request_id)",
        !ok && invalid != NULL && g_strcmp0(invalid->field, "request_id") == 0, "field=%s message=%s",
        invalid ? invalid->field : "-", invalid ? invalid->message : message_of(error));
  g_clear_error(&error);
  g_clear_object(&invalid);
  g_object_unref(req);

  const char *payload = "submitted 数据";
  req = request("s1", payload, 300);
  ThriftHandshakeAck *ack = g_object_new(THRIFT_HANDSHAKE_TYPE_ACK, NULL);
  ThriftHandshakeOverloaded *overloaded = NULL;
  calls++;
  gint64 submitted_at = g_get_monotonic_time();
  ok = thrift_handshake_handshake_service_if_submit(c.client, &ack, req, &invalid, &required, &overloaded, &error);
  gint64 submit_ms = (g_get_monotonic_time() - submitted_at) / 1000;
  g_object_unref(req);
  if (check("submit", ok, "%s", ok ? "acknowledged" : message_of(error))) {
    check("submit(work_ms=300) returns before the work is done", submit_ms < 300, "%" PRId64 " ms", submit_ms);
    check("submit ack has a ticket", ack->ticket && *ack->ticket, "%s", ack->ticket);
    check("submit ack request_id", g_strcmp0(ack->request_id, "s1") == 0, "%s", ack->request_id);
    ThriftHandshakeUnknownTicket *unknown = NULL;
    ThriftHandshakeNotReady *not_ready = NULL;
    calls++;
    ok = thrift_handshake_handshake_service_if_get_result(c.client, &response, ack->ticket, 0, &unknown, &not_ready,
                                                          &required, &error);
    check("get_result(ticket, 0) -> NotReady", !ok && not_ready && g_strcmp0(not_ready->ticket, ack->ticket) == 0,
          "%s", not_ready ? not_ready->message : message_of(error));
    g_clear_error(&error);
    g_clear_object(&not_ready);
    calls++;
    ok = thrift_handshake_handshake_service_if_get_result(c.client, &response, ack->ticket, 3000, &unknown,
                                                          &not_ready, &required, &error);
    gchar *digest = sha256_hex(payload);
    if (check("get_result(ticket, 3000) -> result", ok && g_strcmp0(response->digest, digest) == 0, "%s",
              ok ? response->digest : message_of(error))) {
      check("submitted result session_id and sequence", g_strcmp0(response->session_id, session_id) == 0 &&
            response->sequence == 1, "%s #%" PRId64, response->session_id, response->sequence);
      check("submitted result processing_us covers work_ms", response->processing_us >= 300000, "%" PRId64 " us",
            response->processing_us);
    }
    g_free(digest);
    g_clear_error(&error);
    g_clear_object(&not_ready);
    calls++;
    ok = thrift_handshake_handshake_service_if_get_result(c.client, &response, "no-such-ticket", 0, &unknown,
                                                          &not_ready, &required, &error);
    check("get_result(\"no-such-ticket\") -> UnknownTicket", !ok && unknown &&
          g_strcmp0(unknown->ticket, "no-such-ticket") == 0, "%s", unknown ? unknown->ticket : message_of(error));
    g_clear_error(&error);
    g_clear_object(&unknown);
  }
  g_clear_error(&error);
  g_object_unref(ack);
  g_object_unref(response);

  ThriftHandshakeEvent *event = g_object_new(THRIFT_HANDSHAKE_TYPE_EVENT, "name", "c", "payload", "hi", NULL);
  calls++;
  ok = thrift_handshake_handshake_service_if_notify(c.client, event, &error);
  check("notify (oneway) sent", ok, "%s", ok ? "sent" : message_of(error));
  g_clear_error(&error);
  g_object_unref(event);

  calls += 6; /* echo_types: one full value, four special doubles, one minimal value */
  echo_types(&c);

  calls++;
  ok = thrift_handshake_handshake_service_if_fail(c.client, "boom", &required, &error);
  check("fail(\"boom\") -> TApplicationException INTERNAL_ERROR (6)", !ok && error &&
        error->domain == THRIFT_APPLICATION_EXCEPTION_ERROR && error->code == 6, "code=%d %s",
        error ? error->code : -1, message_of(error));
  g_clear_error(&error);
  echoed = NULL;
  calls++;
  ok = thrift_handshake_handshake_service_if_echo(c.client, &echoed, "after", &required, &error);
  check("echo works after fail on the same connection", ok && g_strcmp0(echoed, "after") == 0, "%s",
        ok ? echoed : message_of(error));
  g_clear_error(&error);
  g_free(echoed);

  ThriftHandshakeServerStats *stats = g_object_new(THRIFT_HANDSHAKE_TYPE_SERVER_STATS, NULL);
  calls++;
  ok = thrift_handshake_session_service_if_stats(c.session, &stats, &required, &error);
  if (check("stats", ok, "%s", ok ? "answered" : message_of(error))) {
    gint64 *echo_calls = g_hash_table_lookup(stats->calls, "echo");
    check("stats notifications >= 1", stats->notifications >= 1, "%" PRId64, stats->notifications);
    check("stats calls[\"echo\"] >= 2", echo_calls && *echo_calls >= 2, "%" PRId64, echo_calls ? *echo_calls : 0);
    check("stats sessions_active >= 1", stats->sessions_active >= 1, "%" PRId64, stats->sessions_active);
  }
  g_clear_error(&error);
  g_object_unref(stats);

  ThriftHandshakeFarewell *farewell = g_object_new(THRIFT_HANDSHAKE_TYPE_FAREWELL, NULL);
  ok = thrift_handshake_session_service_if_goodbye(c.session, &farewell, &required, &error);
  gint64 elapsed_ms = (g_get_monotonic_time() - started) / 1000;
  if (check("goodbye", ok, "%s", ok ? "answered" : message_of(error))) {
    check("goodbye -> Farewell with the same session_id", g_strcmp0(farewell->session_id, session_id) == 0, "%s",
          farewell->session_id);
    check("Farewell.calls counts the session's calls (no hello/goodbye)", farewell->calls == calls,
          "%" PRId64 ", expected %" PRId64, farewell->calls, calls);
    check("Farewell.duration_ms within the session's time", farewell->duration_ms >= 0 &&
          farewell->duration_ms <= elapsed_ms + 50, "%" PRId64 " ms of %" PRId64, farewell->duration_ms, elapsed_ms);
  }
  g_clear_error(&error);
  g_object_unref(farewell);
  echoed = NULL;
  ok = thrift_handshake_handshake_service_if_echo(c.client, &echoed, "after goodbye", &required, &error);
  check("a call after goodbye fails", !ok, "%s", ok ? "answered" : message_of(error));
  g_clear_error(&error);
  g_free(echoed);
  g_free(session_id);
  disconnect(&c);
}

/* Overloaded needs a full submit queue: a server with room for 2 unfinished requests refuses a third. */
static void overloaded_server(int port) {
  Connection c;
  GError *error = NULL;
  if (!connect_to(&c, port)) return;
  ThriftHandshakeClientHello *hello = client_hello(1, 2, NULL);
  ThriftHandshakeServerHello *sh = g_object_new(THRIFT_HANDSHAKE_TYPE_SERVER_HELLO, NULL);
  ThriftHandshakeHandshakeRejected *rejected = NULL;
  ThriftHandshakeHandshakeRequired *required = NULL;
  ThriftHandshakeInvalidRequest *invalid = NULL;
  ThriftHandshakeOverloaded *overloaded = NULL;
  gboolean ok = session_hello(c.session, &sh, hello, &rejected, &error);
  g_object_unref(hello);
  g_object_unref(sh);
  if (!check("hello on the small-queue server", ok, "%s", ok ? "answered" : message_of(error))) {
    g_clear_error(&error);
    disconnect(&c);
    return;
  }
  const char *ids[] = {"q1", "q2"};
  gchar *tickets[2] = {NULL, NULL};
  for (int i = 0; i < 2; i++) {
    ThriftHandshakeRequest *req = request(ids[i], "busy", 200);
    ThriftHandshakeAck *ack = g_object_new(THRIFT_HANDSHAKE_TYPE_ACK, NULL);
    if (thrift_handshake_handshake_service_if_submit(c.client, &ack, req, &invalid, &required, &overloaded, &error))
      tickets[i] = g_strdup(ack->ticket);
    else
      check("submit fills the queue", FALSE, "%s: %s", ids[i], message_of(error));
    g_clear_error(&error);
    g_clear_object(&overloaded);
    g_object_unref(ack);
    g_object_unref(req);
  }
  ThriftHandshakeRequest *req = request("q3", "busy", 200);
  ThriftHandshakeAck *ack = g_object_new(THRIFT_HANDSHAKE_TYPE_ACK, NULL);
  ok = thrift_handshake_handshake_service_if_submit(c.client, &ack, req, &invalid, &required, &overloaded, &error);
  check("submit beyond the queue -> Overloaded", !ok && overloaded && overloaded->queued == 2 &&
        overloaded->capacity == 2, "queued=%d capacity=%d", overloaded ? overloaded->queued : -1,
        overloaded ? overloaded->capacity : -1);
  g_clear_error(&error);
  g_clear_object(&overloaded);
  g_object_unref(ack);
  g_object_unref(req);
  for (int i = 0; i < 2; i++) {
    if (!tickets[i]) continue;
    ThriftHandshakeResponse *response = g_object_new(THRIFT_HANDSHAKE_TYPE_RESPONSE, NULL);
    ThriftHandshakeUnknownTicket *unknown = NULL;
    ThriftHandshakeNotReady *not_ready = NULL;
    char name[64];
    snprintf(name, sizeof name, "accepted submit %s still finishes", ids[i]);
    ok = thrift_handshake_handshake_service_if_get_result(c.client, &response, tickets[i], 5000, &unknown, &not_ready,
                                                          &required, &error);
    check(name, ok && g_strcmp0(response->request_id, ids[i]) == 0, "%s", ok ? response->request_id : message_of(error));
    g_clear_error(&error);
    g_clear_object(&unknown);
    g_clear_object(&not_ready);
    g_object_unref(response);
    g_free(tickets[i]);
  }
  disconnect(&c);
}

static const char *env_or(const char *name, const char *fallback) {
  const char *value = getenv(name);
  return value && *value ? value : fallback;
}

int main(int argc, char **argv) {
  host = argc > 1 ? argv[1] : env_or("HANDSHAKE_HOST", "127.0.0.1");
  int port = atoi(argc > 2 ? argv[2] : env_or("HANDSHAKE_PORT", "9090"));
  int overload_port = atoi(env_or("HANDSHAKE_OVERLOAD_PORT", "0"));
  protocol_name = env_or("HANDSHAKE_PROTOCOL", "binary");
  transport_name = env_or("HANDSHAKE_TRANSPORT", "buffered");
  printf("c_glib %s, glib %u.%u.%u, server %s:%d, wire %s+%s\n", THRIFT_C_GLIB_VERSION, glib_major_version,
         glib_minor_version, glib_micro_version, host, port, protocol_name, transport_name);
  if (strcmp(transport_name, "header") == 0) {
    printf("c_glib's Thrift runtime (%s) has no THeader\n", THRIFT_C_GLIB_VERSION);
    return 2;
  }
  if ((strcmp(protocol_name, "binary") != 0 && strcmp(protocol_name, "compact") != 0) ||
      (strcmp(transport_name, "buffered") != 0 && strcmp(transport_name, "framed") != 0)) {
    printf("unknown wire %s+%s (binary|compact, buffered|framed)\n", protocol_name, transport_name);
    return 2;
  }
  first_connection(port);
  second_connection(port);
  if (overload_port > 0) overloaded_server(overload_port);
  printf("%d/%d checks passed\n", checks - failures, checks);
  return failures == 0 && checks > 0 ? 0 : 1;
}
