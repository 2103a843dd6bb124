// Java interop client for thrift-handshake: runs the contract's whole flow against a running server and
// prints one line per check ("ok   ..." or "FAIL ..."), then "N/M checks passed". Exits 0 only if every
// check passed.
//
//   mvn -q package && java -jar target/thrift-handshake-interop.jar [HOST] [PORT]
//
// HOST and PORT may also come from HANDSHAKE_HOST and HANDSHAKE_PORT. The package org.thrift_handshake
// is generated from ../../idl at build time (pom.xml), never committed.
//
// Wire: strict TBinaryProtocol over TSocket by default. Java has no TBufferedTransport class: its TSocket
// buffers its streams itself, which is the same bytes on the wire. HANDSHAKE_PROTOCOL=compact
// (TCompactProtocol) and HANDSHAKE_TRANSPORT=framed (layered.TFramedTransport) choose the others.
package org.thrift_handshake.interop;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Consumer;

import org.apache.thrift.TApplicationException;
import org.apache.thrift.TBase;
import org.apache.thrift.TEnum;
import org.apache.thrift.TException;
import org.apache.thrift.TFieldIdEnum;
import org.apache.thrift.TUnion;
import org.apache.thrift.meta_data.FieldMetaData;
import org.apache.thrift.protocol.TBinaryProtocol;
import org.apache.thrift.protocol.TCompactProtocol;
import org.apache.thrift.protocol.TProtocol;
import org.apache.thrift.transport.TTransport;
import org.apache.thrift.transport.layered.TFramedTransport;
import org.apache.thrift.transport.TSocket;
import org.apache.thrift.transport.TTransportException;

import org.thrift_handshake.AllTypes;
import org.thrift_handshake.ClientHello;
import org.thrift_handshake.Color;
import org.thrift_handshake.Event;
import org.thrift_handshake.Farewell;
import org.thrift_handshake.HandshakeRejected;
import org.thrift_handshake.HandshakeRequired;
import org.thrift_handshake.HandshakeService;
import org.thrift_handshake.InvalidRequest;
import org.thrift_handshake.NotReady;
import org.thrift_handshake.Overloaded;
import org.thrift_handshake.Point;
import org.thrift_handshake.Request;
import org.thrift_handshake.Response;
import org.thrift_handshake.ServerHello;
import org.thrift_handshake.ServerStats;
import org.thrift_handshake.Shape;
import org.thrift_handshake.UnknownTicket;
import org.thrift_handshake.Ack;

public final class Client {
  static String host;
  static int port;
  static String protocolName = "binary";
  static String transportName = "buffered";
  static final int CALL_TIMEOUT_MS = 10_000;

  // -------------------------------------------------------------------------------------------
  // Reporting
  // -------------------------------------------------------------------------------------------

  static int checks = 0;
  static int failures = 0;

  static boolean check(String name, boolean ok, String detail) {
    checks++;
    if (!ok) failures++;
    System.out.println((ok ? "ok  " : "FAIL") + " " + name + (detail == null || detail.isEmpty() ? "" : ": " + detail));
    return ok;
  }

  static String describe(Throwable e) {
    if (e == null) return "no error";
    if (e instanceof TApplicationException) {
      return "TApplicationException(type=" + ((TApplicationException) e).getType() + ", \"" + e.getMessage() + "\")";
    }
    return e.getClass().getSimpleName() + "(" + e + ")";
  }

  interface Call<T> { T run() throws Exception; }

  /** Runs a call that must return; a failed check (and null) when it throws. */
  static <T> T expectValue(String name, Call<T> call) {
    try {
      return call.run();
    } catch (Exception e) {
      check(name, false, "expected a result, got " + describe(e));
      return null;
    }
  }

  /** Runs a call that must throw an E; a failed check (and null) otherwise. */
  static <E extends Exception> E expectError(String name, Class<E> type, Call<?> call) {
    try {
      Object value = call.run();
      check(name, false, "expected " + type.getSimpleName() + ", got a result " + value);
    } catch (Exception e) {
      if (type.isInstance(e)) return type.cast(e);
      check(name, false, "expected " + type.getSimpleName() + ", got " + describe(e));
    }
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // Connections
  // -------------------------------------------------------------------------------------------

  static final class Conn implements AutoCloseable {
    final TTransport transport;
    final HandshakeService.Client client;

    Conn() throws TTransportException {
      this(port);
    }

    Conn(int toPort) throws TTransportException {
      TSocket socket = new TSocket(host, toPort, CALL_TIMEOUT_MS);
      transport = transportName.equals("framed") ? new TFramedTransport(socket) : socket;
      transport.open();
      TProtocol protocol = protocolName.equals("compact")
          ? new TCompactProtocol(transport)
          : new TBinaryProtocol(transport, true, true); // strict read, strict write
      client = new HandshakeService.Client(protocol);
    }

    @Override
    public void close() {
      transport.close();
    }
  }

  static ClientHello clientHello(int min, int max, String... features) {
    return new ClientHello()
        .setClient_name("thrift-handshake-interop-java")
        .setLanguage("java")
        .setMin_version(min)
        .setMax_version(max)
        .setFeatures(new HashSet<>(Arrays.asList(features)));
  }

  static String sha256(String text) throws Exception {
    byte[] sum = MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
    StringBuilder hex = new StringBuilder();
    for (byte b : sum) hex.append(String.format("%02x", b));
    return hex.toString();
  }

  // -------------------------------------------------------------------------------------------
  // AllTypes values and their canonical form (doubles as bits, sets and maps sorted, binary as hex)
  // -------------------------------------------------------------------------------------------

  static byte[] allBytes() {
    byte[] b = new byte[256];
    for (int i = 0; i < 256; i++) b[i] = (byte) i;
    return b;
  }

  static Point point(int x, int y, String label) {
    Point p = new Point().setX(x).setY(y);
    if (label != null) p.setLabel(label);
    return p;
  }

  static <K, V> Map<K, V> mapOf(Object... kv) {
    Map<K, V> map = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      @SuppressWarnings("unchecked") K k = (K) kv[i];
      @SuppressWarnings("unchecked") V v = (V) kv[i + 1];
      map.put(k, v);
    }
    return map;
  }

  static final long TWO_53_PLUS_1 = (1L << 53) + 1;
  static final double SMALLEST_NEGATIVE_SUBNORMAL = -Double.MIN_VALUE;

  /** Every field set, the limits of each integer type, the negative enum and the point union member. */
  static AllTypes fullValue() {
    AllTypes v = new AllTypes();
    v.setId("all-types/java/全部类型");
    v.setFlag(true);
    v.setSmall(Byte.MIN_VALUE);
    v.setShort_number(Short.MIN_VALUE);
    v.setNumber(Integer.MAX_VALUE);
    v.setBig_number(Long.MAX_VALUE);
    v.setReal(SMALLEST_NEGATIVE_SUBNORMAL); // sign and denormal bits must survive (compared bitwise)
    v.setText("请求数据: 中文, emoji 😀🚀👍🏽, combining é");
    v.setData(allBytes());
    v.setColor(Color.UNKNOWN_COLOR);
    v.setShape(Shape.point(point(-1, Integer.MAX_VALUE, "原点")));
    v.setNote("备注 ✓");
    v.setMaybe_number(Long.MIN_VALUE);
    v.setGreeting("你好, 世界 🌏");
    v.setAnswer(-42);
    v.setNumbers(Arrays.asList(Integer.MIN_VALUE, -1, 0, 1, Integer.MAX_VALUE));
    v.setTags(new HashSet<>(Arrays.asList("alpha", "βeta", "标签", "🏷️", "")));
    v.setCounts(mapOf("max", Long.MAX_VALUE, "min", Long.MIN_VALUE, "zero", 0L, "2^53+1", TWO_53_PLUS_1));
    v.setGroups(mapOf(
        "角", new ArrayList<>(List.of(point(1, 2, "点"))),
        "empty", new ArrayList<Point>(),
        "pair", new ArrayList<>(List.of(point(3, 4, "p"), point(-5, -6, null)))));
    List<Map<String, Set<Integer>>> layers = new ArrayList<>();
    layers.add(mapOf("a", new HashSet<>(List.of(1, 2, 3))));
    layers.add(new HashMap<>());
    layers.add(mapOf("b", new HashSet<Integer>(), "c", new HashSet<>(List.of(Integer.MIN_VALUE, Integer.MAX_VALUE))));
    v.setLayers(layers);
    v.setPalette(mapOf(-5, Color.UNKNOWN_COLOR, 0, Color.RED, Integer.MAX_VALUE, Color.MAX_COLOR));
    v.setBlobs(new ArrayList<>(List.of(ByteBuffer.wrap(new byte[0]), ByteBuffer.wrap(new byte[] {0, (byte) 0xff}),
        ByteBuffer.wrap(allBytes()))));
    return v;
  }

  static String hex(byte[] bytes) {
    StringBuilder s = new StringBuilder();
    for (byte b : bytes) s.append(String.format("%02x", b));
    return s.toString();
  }

  static String canon(Object v) {
    if (v == null) return "null";
    if (v instanceof Double) return String.format("double:%016x", Double.doubleToRawLongBits((Double) v));
    if (v instanceof String) return "\"" + v + "\"";
    if (v instanceof byte[]) return "binary:" + hex((byte[]) v);
    if (v instanceof ByteBuffer) {
      ByteBuffer b = ((ByteBuffer) v).duplicate();
      byte[] bytes = new byte[b.remaining()];
      b.get(bytes);
      return "binary:" + hex(bytes);
    }
    if (v instanceof TEnum) return v + "(" + ((TEnum) v).getValue() + ")";
    if (v instanceof Set) {
      TreeSet<String> items = new TreeSet<>();
      for (Object o : (Set<?>) v) items.add(canon(o));
      return "{" + String.join(",", items) + "}";
    }
    if (v instanceof Collection) {
      List<String> items = new ArrayList<>();
      for (Object o : (Collection<?>) v) items.add(canon(o));
      return "[" + String.join(",", items) + "]";
    }
    if (v instanceof Map) {
      TreeSet<String> items = new TreeSet<>();
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) items.add(canon(e.getKey()) + ":" + canon(e.getValue()));
      return "{" + String.join(",", items) + "}";
    }
    if (v instanceof TUnion) {
      TUnion<?, ?> u = (TUnion<?, ?>) v;
      return v.getClass().getSimpleName() + "{" + u.getSetField().getFieldName() + "=" + canon(u.getFieldValue()) + "}";
    }
    if (v instanceof TBase) return canonStruct((TBase<?, ?>) v);
    return String.valueOf(v);
  }

  @SuppressWarnings({"unchecked", "rawtypes"})
  static String canonStruct(TBase struct) {
    List<String> items = new ArrayList<>();
    Map<? extends TFieldIdEnum, FieldMetaData> meta = FieldMetaData.getStructMetaDataMap(struct.getClass());
    for (TFieldIdEnum field : meta.keySet()) {
      items.add(field.getFieldName() + "=" + (struct.isSet(field) ? canon(struct.getFieldValue(field)) : "unset"));
    }
    return struct.getClass().getSimpleName() + "{" + String.join(",", items) + "}";
  }

  static String clip(String s) {
    return s.codePointCount(0, s.length()) > 80 ? s.substring(0, s.offsetByCodePoints(0, 77)) + "..." : s;
  }

  static String bits(double d) {
    return String.format("%016x", Double.doubleToRawLongBits(d));
  }

  // -------------------------------------------------------------------------------------------
  // The flow
  // -------------------------------------------------------------------------------------------

  static void firstConnection() throws Exception {
    try (Conn c = new Conn()) {
      Exception pingError = null;
      try { c.client.ping(); } catch (Exception e) { pingError = e; }
      check("ping before hello", pingError == null, describe(pingError));

      HandshakeRequired required = expectError("echo before hello", HandshakeRequired.class,
          () -> c.client.echo("too early"));
      if (required != null) check("echo before hello", true, "HandshakeRequired: " + required.getMessage());
      pingError = null;
      try { c.client.ping(); } catch (Exception e) { pingError = e; }
      check("connection usable after HandshakeRequired", pingError == null, describe(pingError));

      ServerHello hello = expectValue("hello 1..1", () -> c.client.hello(clientHello(1, 1)));
      if (hello != null) {
        check("hello 1..1 -> version 1", hello.getVersion() == 1,
            "version=" + hello.getVersion() + " session_id=" + hello.getSession_id());
        check("hello 1..1 session_id non-empty", hello.getSession_id() != null && !hello.getSession_id().isEmpty(),
            "\"" + hello.getSession_id() + "\"");
      }

      HandshakeRejected rejected = expectError("second hello", HandshakeRejected.class,
          () -> c.client.hello(clientHello(1, 2)));
      if (rejected != null) {
        check("second hello -> HandshakeRejected", rejected.getReason() != null && !rejected.getReason().isEmpty(),
            "reason=\"" + rejected.getReason() + "\" server versions " + rejected.getMin_version() + ".."
                + rejected.getMax_version());
        check("HandshakeRejected carries the server's versions 1..2",
            rejected.getMin_version() == 1 && rejected.getMax_version() == 2,
            rejected.getMin_version() + ".." + rejected.getMax_version());
      }

      String echo = expectValue("echo after rejected second hello", () -> c.client.echo("still here"));
      if (echo != null) check("session survives a rejected second hello", echo.equals("still here"), "\"" + echo + "\"");
    }

    try (Conn c = new Conn()) {
      HandshakeRejected rejected = expectError("hello 3..4", HandshakeRejected.class,
          () -> c.client.hello(clientHello(3, 4)));
      if (rejected != null) {
        check("hello 3..4 -> HandshakeRejected (no common version)",
            rejected.getMin_version() == 1 && rejected.getMax_version() == 2,
            "reason=\"" + rejected.getReason() + "\"");
      }
      HandshakeRequired required = expectError("stats before hello", HandshakeRequired.class, () -> c.client.stats());
      if (required != null) check("stats after a rejected hello -> HandshakeRequired", true, required.getMessage());
    }
  }

  /** One echo_types round trip of a variant; returns the echoed value or null. */
  static AllTypes echoTypes(Conn c, String variant, AllTypes sent) {
    return expectValue("echo_types[" + variant + "]", () -> c.client.echo_types(sent));
  }

  static void secondConnection() throws Exception {
    try (Conn c = new Conn()) {
      long calls = 0; // calls after hello(), not counting goodbye(): what Farewell.calls must report

      List<String> sentFeatures = List.of("submit", "notify", "no-such-feature");
      long helloStarted = System.nanoTime();
      ServerHello hello = expectValue("hello 1..2",
          () -> c.client.hello(clientHello(1, 2, sentFeatures.toArray(new String[0]))));
      if (hello == null) return;
      String sessionId = hello.getSession_id();
      check("hello 1..2 -> version 2", hello.getVersion() == 2, "version=" + hello.getVersion());
      check("hello 1..2 session_id non-empty", sessionId != null && !sessionId.isEmpty(), "\"" + sessionId + "\"");
      boolean subset = hello.getFeatures().stream().allMatch(f -> f.equals("submit") || f.equals("notify"));
      check("hello features are a subset of the client's", subset, String.valueOf(hello.getFeatures()));
      long skew = System.currentTimeMillis() - hello.getServer_time_ms();
      check("hello server_time_ms is the server's wall clock", Math.abs(skew) < 60_000,
          hello.getServer_time_ms() + " (skew " + skew + " ms)");
      check("hello idle_timeout_ms and max_message_bytes positive",
          hello.getIdle_timeout_ms() > 0 && hello.getMax_message_bytes() > 0,
          "idle_timeout_ms=" + hello.getIdle_timeout_ms() + " max_message_bytes=" + hello.getMax_message_bytes());

      String text = "请求数据 😀🚀";
      calls++;
      String echo = expectValue("echo", () -> c.client.echo(text));
      if (echo != null) check("echo(\"请求数据 😀🚀\") round-trips", echo.equals(text), "\"" + echo + "\"");

      calls++;
      Response response = expectValue("process n1",
          () -> c.client.process(new Request().setRequest_id("n1").setPayload("abc").setWork_ms(0)));
      if (response != null) {
        check("process digest", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".equals(response.getDigest()),
            response.getDigest());
        check("process sequence 1", response.getSequence() == 1, String.valueOf(response.getSequence()));
        check("process session_id matches hello", sessionId.equals(response.getSession_id()), response.getSession_id());
        check("process request_id echoed", "n1".equals(response.getRequest_id()), response.getRequest_id());
      }
      String payload2 = "第二 📦";
      calls++;
      Response second = expectValue("process n2",
          () -> c.client.process(new Request().setRequest_id("n2").setPayload(payload2).setWork_ms(0)));
      if (second != null) {
        check("process n2 sequence 2 and sha256 digest",
            second.getSequence() == 2 && sha256(payload2).equals(second.getDigest()),
            "sequence=" + second.getSequence() + " digest=" + second.getDigest());
      }

      calls++;
      InvalidRequest invalid = expectError("process with empty request_id", InvalidRequest.class,
          () -> c.client.process(new Request().setRequest_id("").setPayload("abc").setWork_ms(0)));
      if (invalid != null) {
        check("process with empty request_id -> InvalidRequest(field=request_id)", "request_id".equals(invalid.getField()),
            "field=\"" + invalid.getField() + "\" message=\"" + invalid.getMessage() + "\"");
      }

      String payload = "submitted 数据";
      calls++;
      long submitStarted = System.nanoTime();
      Ack ack = expectValue("submit",
          () -> c.client.submit(new Request().setRequest_id("s1").setPayload(payload).setWork_ms(300)));
      long submitMs = (System.nanoTime() - submitStarted) / 1_000_000;
      String ticket = null;
      if (ack != null) {
        ticket = ack.getTicket();
        check("submit(work_ms=300) returns before the work is done", submitMs < 300, submitMs + " ms");
        check("submit ack has a ticket", ticket != null && !ticket.isEmpty(),
            "ticket=" + ticket + " request_id=" + ack.getRequest_id());
        check("submit ack request_id", "s1".equals(ack.getRequest_id()), ack.getRequest_id());
      }
      if (ticket != null) {
        final String t = ticket;
        calls++;
        NotReady notReady = expectError("get_result(ticket, 0)", NotReady.class, () -> c.client.get_result(t, 0));
        if (notReady != null) {
          check("get_result(ticket, 0) -> NotReady", t.equals(notReady.getTicket()),
              "ticket=" + notReady.getTicket() + " message=\"" + notReady.getMessage() + "\"");
        }
        calls++;
        Response result = expectValue("get_result(ticket, 3000)", () -> c.client.get_result(t, 3000));
        if (result != null) {
          check("get_result(ticket, 3000) -> result",
              "s1".equals(result.getRequest_id()) && sha256(payload).equals(result.getDigest()),
              "request_id=" + result.getRequest_id() + " digest=" + result.getDigest());
          check("submitted result session_id and sequence",
              sessionId.equals(result.getSession_id()) && result.getSequence() == 1,
              "session_id=" + result.getSession_id() + " sequence=" + result.getSequence());
          check("submitted result processing_us covers work_ms", result.getProcessing_us() >= 300_000,
              result.getProcessing_us() + " us");
        }
      }

      calls++;
      UnknownTicket unknown = expectError("get_result(\"nope\", 0)", UnknownTicket.class,
          () -> c.client.get_result("nope", 0));
      if (unknown != null) {
        check("get_result(\"nope\", 0) -> UnknownTicket", "nope".equals(unknown.getTicket()),
            "ticket=\"" + unknown.getTicket() + "\"");
      }

      calls++;
      Exception notifyError = null;
      try { c.client.notify(new Event().setName("interop").setPayload("java 通知")); } catch (Exception e) { notifyError = e; }
      check("notify (oneway) sent", notifyError == null, describe(notifyError));

      calls += echoTypesChecks(c);

      calls++;
      try {
        c.client.fail("x");
        check("fail(\"x\") -> TApplicationException", false, "got a result");
      } catch (TApplicationException e) {
        check("fail(\"x\") -> TApplicationException INTERNAL_ERROR", e.getType() == TApplicationException.INTERNAL_ERROR,
            "type=" + e.getType() + " message=\"" + e.getMessage() + "\"");
      } catch (Exception e) {
        check("fail(\"x\") -> TApplicationException", false, "got " + describe(e));
      }
      calls++;
      String after = expectValue("echo after fail", () -> c.client.echo("after fail"));
      if (after != null) check("echo works after fail on the same connection", after.equals("after fail"), "\"" + after + "\"");

      calls++;
      ServerStats stats = expectValue("stats", () -> c.client.stats());
      if (stats != null) {
        check("stats notifications >= 1", stats.getNotifications() >= 1, String.valueOf(stats.getNotifications()));
        long echoCalls = stats.getCalls() == null ? 0 : stats.getCalls().getOrDefault("echo", 0L);
        check("stats calls[\"echo\"] >= 1", echoCalls >= 1, String.valueOf(echoCalls));
        check("stats sessions_active >= 1", stats.getSessions_active() >= 1, String.valueOf(stats.getSessions_active()));
      }

      Farewell farewell = expectValue("goodbye", () -> c.client.goodbye());
      long sessionMs = (System.nanoTime() - helloStarted) / 1_000_000;
      if (farewell != null) {
        check("goodbye -> Farewell with the same session_id", sessionId.equals(farewell.getSession_id()),
            farewell.getSession_id());
        check("Farewell.calls counts the session's calls (no hello/goodbye)", farewell.getCalls() == calls,
            "calls=" + farewell.getCalls() + " expected " + calls);
        check("Farewell.duration_ms within the session's time",
            farewell.getDuration_ms() >= 0 && farewell.getDuration_ms() <= sessionMs + 1000,
            farewell.getDuration_ms() + " ms (client saw " + sessionMs + " ms)");
      }

      // The server closes the connection after goodbye's reply, so the next call cannot succeed.
      Exception afterGoodbye = null;
      try { c.client.echo("after goodbye"); } catch (Exception e) { afterGoodbye = e; }
      check("a call after goodbye fails", afterGoodbye != null, describe(afterGoodbye));
      check("the failure is the server closing the connection (a transport error, not a timeout)",
          afterGoodbye instanceof TTransportException
              && ((TTransportException) afterGoodbye).getType() != TTransportException.TIMED_OUT,
          describe(afterGoodbye));
    }
  }

  /** The echo_types checks; returns how many calls were made. */
  static int echoTypesChecks(Conn c) {
    int calls = 0;

    // 1. Every field set: one check per field, compared in canonical form (doubles as bits).
    AllTypes sent = fullValue();
    calls++;
    AllTypes echoed = echoTypes(c, "full", sent);
    if (echoed != null) {
      Map<? extends TFieldIdEnum, FieldMetaData> meta = FieldMetaData.getStructMetaDataMap(AllTypes.class);
      for (TFieldIdEnum field : meta.keySet()) {
        AllTypes._Fields f = (AllTypes._Fields) field;
        String a = sent.isSet(f) ? canon(sent.getFieldValue(f)) : "unset";
        String b = echoed.isSet(f) ? canon(echoed.getFieldValue(f)) : "unset";
        check("echo_types." + f.getFieldName(), a.equals(b), a.equals(b) ? clip(a) : "sent " + a + " got " + b);
      }
      check("echo_types.real bitwise (smallest negative subnormal)",
          Double.doubleToRawLongBits(echoed.getReal()) == Double.doubleToRawLongBits(SMALLEST_NEGATIVE_SUBNORMAL),
          bits(echoed.getReal()));
      check("echo_types.data all 256 byte values", Arrays.equals(echoed.getData(), allBytes()),
          echoed.getData().length + " bytes");
      check("echo_types i64 limits and 2^53+1",
          echoed.getBig_number() == Long.MAX_VALUE && echoed.getMaybe_number() == Long.MIN_VALUE
              && Long.valueOf(TWO_53_PLUS_1).equals(echoed.getCounts().get("2^53+1")),
          echoed.getBig_number() + " " + echoed.getMaybe_number() + " " + echoed.getCounts().get("2^53+1"));
      // Caveat: the generated equals() compares doubles with ==, so it would call -0.0 and 0.0 equal
      // and a NaN unequal to itself; this value has neither, so equals() must hold.
      check("echo_types generated equals() agrees", sent.equals(echoed), "");
    }

    // 2. The special doubles, one call each, with the other union members and enum limits.
    Object[][] variants = {
        {"NaN", Double.NaN, Shape.name("形状 🔷"), Color.MAX_COLOR, Long.MIN_VALUE},
        {"+inf", Double.POSITIVE_INFINITY, Shape.id(TWO_53_PLUS_1), Color.GREEN, TWO_53_PLUS_1},
        {"-inf", Double.NEGATIVE_INFINITY, Shape.polygon(new ArrayList<>(List.of(point(0, 0, null), point(-1, -1, "西"))))
            , Color.BLUE, -TWO_53_PLUS_1},
        {"-0.0", -0.0d, Shape.polygon(new ArrayList<>()), Color.UNKNOWN_COLOR, 0L},
    };
    for (Object[] variant : variants) {
      String name = (String) variant[0];
      double real = (Double) variant[1];
      AllTypes v = fullValue();
      v.setReal(real);
      v.setShape((Shape) variant[2]);
      v.setColor((Color) variant[3]);
      v.setBig_number((Long) variant[4]);
      calls++;
      AllTypes got = echoTypes(c, name, v);
      if (got == null) continue;
      check("echo_types[" + name + "].real bit for bit", Double.doubleToRawLongBits(got.getReal()) == Double.doubleToRawLongBits(real),
          "sent " + bits(real) + " got " + bits(got.getReal()));
      String a = canon(v), b = canon(got);
      check("echo_types[" + name + "] whole value (shape " + v.getShape().getSetField().getFieldName() + ", color "
          + v.getColor() + ")", a.equals(b), a.equals(b) ? "" : "sent " + a + " got " + b);
    }
    // Caveat, shown rather than hidden: Java's == and the generated equals() treat -0.0 as 0.0.
    check("caveat: Java == says -0.0 == 0.0 (so doubles are compared by their bits here)", -0.0d == 0.0d, "");

    // 3. Only the required field: optional fields stay unset, empty containers stay empty.
    AllTypes minimal = new AllTypes().setId("minimal/java");
    minimal.setNumbers(new ArrayList<>()).setTags(new HashSet<>()).setCounts(new HashMap<>());
    minimal.unsetColor(); // the IDL default RED is set by the constructor; unset, Java writes nothing
    calls++;
    AllTypes got = echoTypes(c, "minimal", minimal);
    if (got != null) {
      check("echo_types[minimal] optional fields (shape, note, maybe_number) stay unset",
          !got.isSetShape() && !got.isSetNote() && !got.isSetMaybe_number(),
          "shape=" + got.getShape() + " note=" + got.getNote() + " maybe_number set=" + got.isSetMaybe_number());
      check("echo_types[minimal] empty containers stay empty",
          got.isSetNumbers() && got.getNumbers().isEmpty() && got.isSetTags() && got.getTags().isEmpty()
              && got.isSetCounts() && got.getCounts().isEmpty(),
          "numbers=" + got.getNumbers() + " tags=" + got.getTags() + " counts=" + got.getCounts());
      check("echo_types[minimal] id and IDL defaults (greeting \"hello\", answer 42)",
          "minimal/java".equals(got.getId()) && "hello".equals(got.getGreeting()) && got.getAnswer() == 42,
          "id=" + got.getId() + " greeting=" + got.getGreeting() + " answer=" + got.getAnswer());
      // Caveat: Java writes unset primitive fields as zeros (flag, small, ..., real), so they come back set;
      // an unset object field (color here) is not written and the server fills in the IDL default RED.
      check("caveat: unset non-optional primitives are written as zeros and come back set",
          got.isSetFlag() && !got.isFlag() && got.isSetReal() && Double.doubleToRawLongBits(got.getReal()) == 0L,
          "flag=" + got.isFlag() + " real=" + bits(got.getReal()));
      check("echo_types[minimal] unset color comes back as the IDL default RED", got.getColor() == Color.RED,
          String.valueOf(got.getColor()));
    }
    return calls;
  }

  /**
   * Overloaded needs a full submit queue: HANDSHAKE_OVERLOAD_PORT names a server on the same host started
   * with submit_workers=1 and submit_queue=1 (room for 2 unfinished requests), where a third submit is refused.
   */
  static void overloadedServer(int overloadPort) throws Exception {
    try (Conn c = new Conn(overloadPort)) {
      if (expectValue("hello on the small-queue server", () -> c.client.hello(clientHello(1, 2))) == null) return;
      for (int i = 1; i <= 2; i++) {
        final String id = "q" + i;
        expectValue("submit " + id + " (fills the queue)",
            () -> c.client.submit(new Request().setRequest_id(id).setPayload("busy").setWork_ms(500)));
      }
      Overloaded overloaded = expectError("submit beyond the queue", Overloaded.class,
          () -> c.client.submit(new Request().setRequest_id("q3").setPayload("busy").setWork_ms(500)));
      if (overloaded != null) {
        check("submit beyond the queue -> Overloaded", overloaded.getQueued() == 2 && overloaded.getCapacity() == 2,
            "queued=" + overloaded.getQueued() + " capacity=" + overloaded.getCapacity() + " message=\""
                + overloaded.getMessage() + "\"");
      }
    }
  }

  public static void main(String[] args) {
    host = args.length > 0 ? args[0] : System.getenv().getOrDefault("HANDSHAKE_HOST", "127.0.0.1");
    String portText = args.length > 1 ? args[1] : System.getenv().getOrDefault("HANDSHAKE_PORT", "9090");
    port = Integer.parseInt(portText);
    protocolName = System.getenv().getOrDefault("HANDSHAKE_PROTOCOL", "binary");
    transportName = System.getenv().getOrDefault("HANDSHAKE_TRANSPORT", "buffered");
    if (transportName.equals("header")) {
      System.err.println("HANDSHAKE_TRANSPORT=header: libthrift " + TBase.class.getPackage().getImplementationVersion()
          + " for Java has no THeaderTransport or THeaderProtocol");
      System.exit(2);
    }
    if (!(protocolName.equals("binary") || protocolName.equals("compact"))
        || !(transportName.equals("buffered") || transportName.equals("framed"))) {
      System.err.println("HANDSHAKE_PROTOCOL must be binary or compact and HANDSHAKE_TRANSPORT buffered or framed, not \""
          + protocolName + "\" and \"" + transportName + "\"");
      System.exit(2);
    }
    Package thriftPackage = TBase.class.getPackage();
    String thriftVersion = thriftPackage == null ? null : thriftPackage.getImplementationVersion();
    System.out.println("Java " + System.getProperty("java.version") + ", libthrift "
        + (thriftVersion == null ? "?" : thriftVersion) + ", server " + host + ":" + port
        + ", wire " + protocolName + "+" + transportName);
    try {
      firstConnection();
      secondConnection();
      String overloadPort = System.getenv("HANDSHAKE_OVERLOAD_PORT");
      if (overloadPort != null && !overloadPort.isEmpty()) overloadedServer(Integer.parseInt(overloadPort));
    } catch (Exception e) {
      check("flow completed", false, describe(e));
    }
    System.out.println((checks - failures) + "/" + checks + " checks passed");
    System.exit(failures > 0 || checks == 0 ? 1 : 0);
  }
}
