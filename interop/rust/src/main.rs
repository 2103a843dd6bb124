//! Rust interop client for thrift-handshake: runs the contract's whole flow against a running server and
//! prints one line per check ("ok   ..." or "FAIL ..."), then "N/M checks passed". Exits 0 only if every
//! check passed.
//!
//!     cargo run --release -- [HOST] [PORT]
//!
//! HOST and PORT may also come from HANDSHAKE_HOST and HANDSHAKE_PORT. The Thrift code is generated from
//! ../../idl at build time (build.rs), never committed. Wire: TBufferedTransport + strict TBinaryProtocol
//! by default (the `thrift` crate 0.17.0); HANDSHAKE_PROTOCOL=compact (TCompactInput/OutputProtocol) and
//! HANDSHAKE_TRANSPORT=framed (TFramedRead/WriteTransport) choose the others.
use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::fmt::Debug;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol, TInputProtocol,
    TOutputProtocol,
};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport, TIoChannel,
    TReadTransport, TTcpChannel, TWriteTransport,
};
use thrift::{ApplicationErrorKind, OrderedFloat, TransportErrorKind};

#[allow(unused_imports, unused_extern_crates, dead_code, clippy::all)]
#[rustfmt::skip]
mod thrift_handshake {
    pub mod session {
        include!(concat!(env!("OUT_DIR"), "/thrift/session.rs"));
    }
    pub mod handshake {
        include!(concat!(env!("OUT_DIR"), "/thrift/handshake.rs"));
    }
}

use thrift_handshake::handshake::{
    AllTypes, Color, Event, HandshakeServiceSyncClient, InvalidRequest, NotReady, Overloaded, Point, Request, Shape,
    THandshakeServiceSyncClient, UnknownTicket,
};
use thrift_handshake::session::{ClientHello, HandshakeRejected, HandshakeRequired, TSessionServiceSyncClient};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    checks: u32,
    failures: u32,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: impl AsRef<str>) -> bool {
        self.checks += 1;
        if !ok {
            self.failures += 1;
        }
        let detail = detail.as_ref();
        let sep = if detail.is_empty() { "" } else { ": " };
        println!("{} {}{}{}", if ok { "ok  " } else { "FAIL" }, name, sep, detail);
        ok
    }

    /// The value of a call that must succeed; a failed check (and None) otherwise.
    fn expect_ok<T>(&mut self, name: &str, result: thrift::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.check(name, false, format!("expected a result, got {}", describe(&error)));
                None
            }
        }
    }

    /// The declared exception E of a call that must throw it; a failed check (and None) otherwise.
    fn expect_err<T: Debug, E: StdError + Clone + 'static>(&mut self, name: &str, result: thrift::Result<T>) -> Option<E> {
        let want = std::any::type_name::<E>().rsplit("::").next().unwrap_or("?");
        match result {
            Ok(value) => {
                self.check(name, false, format!("expected {want}, got a result {value:?}"));
                None
            }
            Err(thrift::Error::User(boxed)) if boxed.downcast_ref::<E>().is_some() => boxed.downcast_ref::<E>().cloned(),
            Err(error) => {
                self.check(name, false, format!("expected {want}, got {}", describe(&error)));
                None
            }
        }
    }
}

fn describe(error: &thrift::Error) -> String {
    match error {
        thrift::Error::Application(e) => format!("ApplicationError(kind={:?} ({}), {:?})", e.kind, e.kind as i32, e.message),
        thrift::Error::Transport(e) => format!("TransportError(kind={:?}, {:?})", e.kind, e.message),
        thrift::Error::Protocol(e) => format!("ProtocolError(kind={:?}, {:?})", e.kind, e.message),
        thrift::Error::User(e) => format!("User({e:?})"),
    }
}

fn clip(s: String) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() > 80 {
        chars[..77].iter().collect::<String>() + "..."
    } else {
        s
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

type Client = HandshakeServiceSyncClient<Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>>;

/// HANDSHAKE_PROTOCOL (binary or compact) and HANDSHAKE_TRANSPORT (buffered or framed).
fn wire() -> (String, String) {
    let var = |name: &str, default: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or(s(default));
    (var("HANDSHAKE_PROTOCOL", "binary"), var("HANDSHAKE_TRANSPORT", "buffered"))
}

fn connect(address: &str) -> thrift::Result<Client> {
    let addr = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| thrift::Error::from(std::io::Error::new(std::io::ErrorKind::NotFound, address.to_string())))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    stream.set_write_timeout(Some(CALL_TIMEOUT))?;
    let (read, write) = TTcpChannel::with_stream(stream).split()?;
    let (protocol, transport) = wire();
    let (read, write): (Box<dyn TReadTransport>, Box<dyn TWriteTransport>) = if transport == "framed" {
        (Box::new(TFramedReadTransport::new(read)), Box::new(TFramedWriteTransport::new(write)))
    } else {
        (Box::new(TBufferedReadTransport::new(read)), Box::new(TBufferedWriteTransport::new(write)))
    };
    let (input, output): (Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>) = if protocol == "compact" {
        (Box::new(TCompactInputProtocol::new(read)), Box::new(TCompactOutputProtocol::new(write)))
    } else {
        // strict read and write
        (Box::new(TBinaryInputProtocol::new(read, true)), Box::new(TBinaryOutputProtocol::new(write, true)))
    };
    Ok(HandshakeServiceSyncClient::new(input, output))
}

fn client_hello(min: i32, max: i32, features: &[&str]) -> ClientHello {
    ClientHello {
        client_name: "thrift-handshake-interop-rust".to_string(),
        language: Some("rust".to_string()),
        min_version: Some(min),
        max_version: Some(max),
        auth_token: None,
        features: Some(features.iter().map(|f| f.to_string()).collect()),
        traceparent: None,
    }
}

// ---------------------------------------------------------------------------------------------
// AllTypes values
// ---------------------------------------------------------------------------------------------

const TWO_53_PLUS_1: i64 = (1 << 53) + 1;
const SMALLEST_NEGATIVE_SUBNORMAL: f64 = -5e-324;

fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

fn point(x: i32, y: i32, label: Option<&str>) -> Point {
    Point { x: Some(x), y: Some(y), label: label.map(str::to_string) }
}

fn s(text: &str) -> String {
    text.to_string()
}

/// Every field set, the limits of each integer type, the negative enum and the point union member.
fn full_value() -> AllTypes {
    AllTypes {
        id: s("all-types/rust/全部类型"),
        flag: Some(true),
        small: Some(i8::MIN),
        short_number: Some(i16::MIN),
        number: Some(i32::MAX),
        big_number: Some(i64::MAX),
        real: Some(OrderedFloat(SMALLEST_NEGATIVE_SUBNORMAL)), // sign and denormal bits must survive
        text: Some(s("请求数据: 中文, emoji 😀🚀👍🏽, combining é")),
        data: Some(all_bytes()),
        color: Some(Color::UNKNOWN_COLOR),
        shape: Some(Shape::Point(point(-1, i32::MAX, Some("原点")))),
        note: Some(s("备注 ✓")),
        maybe_number: Some(i64::MIN),
        greeting: Some(s("你好, 世界 🌏")),
        answer: Some(-42),
        numbers: Some(vec![i32::MIN, -1, 0, 1, i32::MAX]),
        tags: Some(["alpha", "βeta", "标签", "🏷️", ""].iter().map(|t| s(t)).collect()),
        counts: Some(BTreeMap::from([
            (s("max"), i64::MAX),
            (s("min"), i64::MIN),
            (s("zero"), 0),
            (s("2^53+1"), TWO_53_PLUS_1),
        ])),
        groups: Some(BTreeMap::from([
            (s("角"), vec![point(1, 2, Some("点"))]),
            (s("empty"), vec![]),
            (s("pair"), vec![point(3, 4, Some("p")), point(-5, -6, None)]),
        ])),
        layers: Some(vec![
            BTreeMap::from([(s("a"), BTreeSet::from([1, 2, 3]))]),
            BTreeMap::new(),
            BTreeMap::from([(s("b"), BTreeSet::new()), (s("c"), BTreeSet::from([i32::MIN, i32::MAX]))]),
        ]),
        palette: Some(BTreeMap::from([(-5, Color::UNKNOWN_COLOR), (0, Color::RED), (i32::MAX, Color::MAX_COLOR)])),
        blobs: Some(vec![vec![], vec![0x00, 0xff], all_bytes()]),
    }
}

fn real_bits(v: &AllTypes) -> Option<u64> {
    v.real.map(|r| r.0.to_bits())
}

fn show_bits(bits: Option<u64>) -> String {
    bits.map_or("None".to_string(), |b| format!("{b:016x}"))
}

fn shape_member(shape: &Option<Shape>) -> &'static str {
    match shape {
        Some(Shape::Point(_)) => "point",
        Some(Shape::Name(_)) => "name",
        Some(Shape::Id(_)) => "id",
        Some(Shape::Polygon(_)) => "polygon",
        None => "none",
    }
}

/// The echo_types checks; returns how many calls were made.
fn echo_types_checks(r: &mut Report, c: &mut Client) -> i64 {
    let mut calls = 0;

    // 1. Every field set: one check per field (== and Debug, except the double: its bits).
    let sent = full_value();
    calls += 1;
    if let Some(got) = r.expect_ok("echo_types[full]", c.echo_types(sent.clone())) {
        macro_rules! field {
            ($name:ident) => {{
                let same = sent.$name == got.$name;
                let detail = if same {
                    clip(format!("{:?}", got.$name))
                } else {
                    format!("sent {:?} got {:?}", sent.$name, got.$name)
                };
                r.check(concat!("echo_types.", stringify!($name)), same, detail);
            }};
        }
        field!(id);
        field!(flag);
        field!(small);
        field!(short_number);
        field!(number);
        field!(big_number);
        r.check("echo_types.real", real_bits(&sent) == real_bits(&got), format!("double:{}", show_bits(real_bits(&got))));
        field!(text);
        r.check("echo_types.data", sent.data == got.data,
            clip(format!("binary:{}", hex(got.data.as_deref().unwrap_or_default()))));
        field!(color);
        field!(shape);
        field!(note);
        field!(maybe_number);
        field!(greeting);
        field!(answer);
        field!(numbers);
        field!(tags);
        field!(counts);
        field!(groups);
        field!(layers);
        field!(palette);
        r.check("echo_types.blobs", sent.blobs == got.blobs, clip(format!("{:?}",
            got.blobs.iter().flatten().map(|b| format!("binary:{}", hex(b))).collect::<Vec<_>>())));
        r.check("echo_types.real bitwise (smallest negative subnormal)",
            real_bits(&got) == Some(SMALLEST_NEGATIVE_SUBNORMAL.to_bits()), show_bits(real_bits(&got)));
        r.check("echo_types.data all 256 byte values", got.data.as_deref() == Some(&all_bytes()[..]),
            format!("{} bytes", got.data.as_ref().map_or(0, Vec::len)));
        let two53 = got.counts.as_ref().and_then(|m| m.get("2^53+1").copied());
        r.check("echo_types i64 limits and 2^53+1",
            got.big_number == Some(i64::MAX) && got.maybe_number == Some(i64::MIN) && two53 == Some(TWO_53_PLUS_1),
            format!("{:?} {:?} {:?}", got.big_number, got.maybe_number, two53));
        // The derived == compares OrderedFloat: fine for this value (no NaN, no -0.0).
        r.check("echo_types derived == agrees", sent == got, "");
    }

    // 2. The special doubles, one call each, with the other union members and enum values.
    let variants: [(&str, f64, Shape, Color, i64); 4] = [
        ("NaN", f64::NAN, Shape::Name(s("形状 🔷")), Color::MAX_COLOR, i64::MIN),
        ("+inf", f64::INFINITY, Shape::Id(TWO_53_PLUS_1), Color::GREEN, TWO_53_PLUS_1),
        ("-inf", f64::NEG_INFINITY, Shape::Polygon(vec![point(0, 0, None), point(-1, -1, Some("西"))]), Color::BLUE,
            -TWO_53_PLUS_1),
        ("-0.0", -0.0, Shape::Polygon(vec![]), Color::UNKNOWN_COLOR, 0),
    ];
    for (name, real, shape, color, big) in variants {
        let mut v = full_value();
        v.real = Some(OrderedFloat(real));
        v.shape = Some(shape);
        v.color = Some(color);
        v.big_number = Some(big);
        calls += 1;
        let got = match r.expect_ok(&format!("echo_types[{name}]"), c.echo_types(v.clone())) {
            Some(got) => got,
            None => continue,
        };
        r.check(&format!("echo_types[{name}].real bit for bit"), real_bits(&got) == Some(real.to_bits()),
            format!("sent {:016x} got {}", real.to_bits(), show_bits(real_bits(&got))));
        // The rest with the derived ==, after zeroing both doubles (their bits were checked above).
        let (mut rest, mut want) = (got.clone(), v.clone());
        rest.real = Some(OrderedFloat(0.0));
        want.real = Some(OrderedFloat(0.0));
        let same = rest == want;
        r.check(&format!("echo_types[{name}] whole value (shape {}, color {:?})", shape_member(&v.shape), color),
            same, if same { String::new() } else { format!("sent {want:?} got {rest:?}") });
    }
    // Caveats, shown rather than hidden: OrderedFloat (the generated code's double) says -0.0 == 0.0 and
    // NaN == NaN, so the derived == cannot tell those apart; doubles are compared by their bits here.
    r.check("caveat: OrderedFloat says -0.0 == 0.0 and NaN == NaN (so doubles are compared by their bits here)",
        OrderedFloat(-0.0f64) == OrderedFloat(0.0) && OrderedFloat(f64::NAN) == OrderedFloat(f64::NAN), "");

    // 3. Only the required field and three empty containers: everything else None, so not written.
    let minimal = AllTypes {
        id: s("minimal/rust"),
        flag: None, small: None, short_number: None, number: None, big_number: None, real: None, text: None,
        data: None, color: None, shape: None, note: None, maybe_number: None, greeting: None, answer: None,
        numbers: Some(vec![]),
        tags: Some(BTreeSet::new()),
        counts: Some(BTreeMap::new()),
        groups: None, layers: None, palette: None, blobs: None,
    };
    calls += 1;
    if let Some(got) = r.expect_ok("echo_types[minimal]", c.echo_types(minimal)) {
        r.check("echo_types[minimal] optional fields (shape, note, maybe_number) stay unset",
            got.shape.is_none() && got.note.is_none() && got.maybe_number.is_none(),
            format!("shape={:?} note={:?} maybe_number={:?}", got.shape, got.note, got.maybe_number));
        r.check("echo_types[minimal] empty containers stay empty",
            got.numbers == Some(vec![]) && got.tags == Some(BTreeSet::new()) && got.counts == Some(BTreeMap::new()),
            format!("numbers={:?} tags={:?} counts={:?}", got.numbers, got.tags, got.counts));
        r.check("echo_types[minimal] id and IDL defaults (greeting \"hello\", answer 42)",
            got.id == "minimal/rust" && got.greeting.as_deref() == Some("hello") && got.answer == Some(42),
            format!("id={} greeting={:?} answer={:?}", got.id, got.greeting, got.answer));
        // Caveat: the Python server sends nothing for fields it does not have (flag, real, text, data, the
        // containers left None here); Rust's generated reader fills a missing non-optional field with its
        // type's zero value (Some(false), Some(0.0), Some("")), not None and not the IDL default.
        r.check("caveat: a non-optional field missing on the wire reads as Some(zero value), not None",
            got.flag == Some(false) && real_bits(&got) == Some(0) && got.text.as_deref() == Some("")
                && got.data == Some(vec![]) && got.groups == Some(BTreeMap::new()),
            format!("flag={:?} real={} text={:?} data={:?}", got.flag, show_bits(real_bits(&got)), got.text, got.data));
        r.check("echo_types[minimal] unset color comes back as the IDL default RED", got.color == Some(Color::RED),
            format!("{:?}", got.color));
    }
    calls
}

// ---------------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------------

fn first_connection(r: &mut Report, address: &str) -> thrift::Result<()> {
    let mut c = connect(address)?;
    let ping = c.ping();
    r.check("ping before hello", ping.is_ok(), ping.err().map_or("no error".into(), |e| describe(&e)));

    if let Some(required) = r.expect_err::<_, HandshakeRequired>("echo before hello", c.echo(s("too early"))) {
        r.check("echo before hello", true, format!("HandshakeRequired: {}", required.message.unwrap_or_default()));
    }
    let ping = c.ping();
    r.check("connection usable after HandshakeRequired", ping.is_ok(),
        ping.err().map_or("no error".into(), |e| describe(&e)));

    if let Some(hello) = r.expect_ok("hello 1..1", c.hello(client_hello(1, 1, &[]))) {
        let session_id = hello.session_id.unwrap_or_default();
        r.check("hello 1..1 -> version 1", hello.version == Some(1),
            format!("version={:?} session_id={}", hello.version, session_id));
        r.check("hello 1..1 session_id non-empty", !session_id.is_empty(), format!("{session_id:?}"));
    }

    if let Some(rejected) = r.expect_err::<_, HandshakeRejected>("second hello", c.hello(client_hello(1, 2, &[]))) {
        let reason = rejected.reason.clone().unwrap_or_default();
        r.check("second hello -> HandshakeRejected", !reason.is_empty(), format!(
            "reason={reason:?} server versions {:?}..{:?}", rejected.min_version, rejected.max_version));
        r.check("HandshakeRejected carries the server's versions 1..2",
            rejected.min_version == Some(1) && rejected.max_version == Some(2),
            format!("{:?}..{:?}", rejected.min_version, rejected.max_version));
    }

    if let Some(echo) = r.expect_ok("echo after rejected second hello", c.echo(s("still here"))) {
        r.check("session survives a rejected second hello", echo == "still here", format!("{echo:?}"));
    }

    let mut c = connect(address)?;
    if let Some(rejected) = r.expect_err::<_, HandshakeRejected>("hello 3..4", c.hello(client_hello(3, 4, &[]))) {
        r.check("hello 3..4 -> HandshakeRejected (no common version)",
            rejected.min_version == Some(1) && rejected.max_version == Some(2),
            format!("reason={:?}", rejected.reason.unwrap_or_default()));
    }
    if let Some(required) = r.expect_err::<_, HandshakeRequired>("stats before hello", c.stats()) {
        r.check("stats after a rejected hello -> HandshakeRequired", true, required.message.unwrap_or_default());
    }
    Ok(())
}

fn request(id: &str, payload: &str, work_ms: i32) -> Request {
    Request { request_id: Some(s(id)), payload: Some(s(payload)), work_ms: Some(work_ms), headers: None }
}

fn second_connection(r: &mut Report, address: &str) -> thrift::Result<()> {
    let mut c = connect(address)?;
    let mut calls: i64 = 0; // calls after hello(), not counting goodbye(): what Farewell.calls must report

    let hello_started = Instant::now();
    let hello = match r.expect_ok("hello 1..2", c.hello(client_hello(1, 2, &["submit", "notify", "no-such-feature"]))) {
        Some(hello) => hello,
        None => return Ok(()),
    };
    let session_id = hello.session_id.clone().unwrap_or_default();
    r.check("hello 1..2 -> version 2", hello.version == Some(2), format!("version={:?}", hello.version));
    r.check("hello 1..2 session_id non-empty", !session_id.is_empty(), format!("{session_id:?}"));
    let features = hello.features.clone().unwrap_or_default();
    r.check("hello features are a subset of the client's",
        features.iter().all(|f| f == "submit" || f == "notify"), format!("{features:?}"));
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let server_ms = hello.server_time_ms.unwrap_or_default();
    r.check("hello server_time_ms is the server's wall clock", (now_ms - server_ms).abs() < 60_000,
        format!("{server_ms} (skew {} ms)", now_ms - server_ms));
    r.check("hello idle_timeout_ms and max_message_bytes positive",
        hello.idle_timeout_ms.unwrap_or(0) > 0 && hello.max_message_bytes.unwrap_or(0) > 0,
        format!("idle_timeout_ms={:?} max_message_bytes={:?}", hello.idle_timeout_ms, hello.max_message_bytes));

    let text = "请求数据 😀🚀";
    calls += 1;
    if let Some(echo) = r.expect_ok("echo", c.echo(s(text))) {
        r.check("echo(\"请求数据 😀🚀\") round-trips", echo == text, format!("{echo:?}"));
    }

    calls += 1;
    if let Some(response) = r.expect_ok("process n1", c.process(request("n1", "abc", 0))) {
        let digest = response.digest.unwrap_or_default();
        r.check("process digest", digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &digest);
        r.check("process sequence 1", response.sequence == Some(1), format!("{:?}", response.sequence));
        let sid = response.session_id.unwrap_or_default();
        r.check("process session_id matches hello", sid == session_id, &sid);
        let rid = response.request_id.unwrap_or_default();
        r.check("process request_id echoed", rid == "n1", &rid);
    }
    let payload2 = "第二 📦";
    calls += 1;
    if let Some(response) = r.expect_ok("process n2", c.process(request("n2", payload2, 0))) {
        r.check("process n2 sequence 2 and sha256 digest",
            response.sequence == Some(2) && response.digest.as_deref() == Some(sha256_hex(payload2).as_str()),
            format!("sequence={:?} digest={}", response.sequence, response.digest.unwrap_or_default()));
    }

    calls += 1;
    if let Some(invalid) = r.expect_err::<_, InvalidRequest>("process with empty request_id", c.process(request("", "abc", 0))) {
        r.check("process with empty request_id -> InvalidRequest(field=request_id)",
            invalid.field.as_deref() == Some("request_id"),
            format!("field={:?} message={:?}", invalid.field, invalid.message));
    }

    let payload = "submitted 数据";
    calls += 1;
    let submit_started = Instant::now();
    let ack = r.expect_ok("submit", c.submit(request("s1", payload, 300)));
    let submit_took = submit_started.elapsed();
    let mut ticket = String::new();
    if let Some(ack) = ack {
        ticket = ack.ticket.clone().unwrap_or_default();
        r.check("submit(work_ms=300) returns before the work is done", submit_took < Duration::from_millis(300),
            format!("{} ms", submit_took.as_millis()));
        r.check("submit ack has a ticket", !ticket.is_empty(),
            format!("ticket={ticket} request_id={}", ack.request_id.clone().unwrap_or_default()));
        r.check("submit ack request_id", ack.request_id.as_deref() == Some("s1"), ack.request_id.unwrap_or_default());
    }
    if !ticket.is_empty() {
        calls += 1;
        if let Some(not_ready) = r.expect_err::<_, NotReady>("get_result(ticket, 0)", c.get_result(ticket.clone(), 0)) {
            r.check("get_result(ticket, 0) -> NotReady", not_ready.ticket.as_deref() == Some(ticket.as_str()),
                format!("ticket={:?} message={:?}", not_ready.ticket, not_ready.message));
        }
        calls += 1;
        if let Some(result) = r.expect_ok("get_result(ticket, 3000)", c.get_result(ticket.clone(), 3000)) {
            r.check("get_result(ticket, 3000) -> result",
                result.request_id.as_deref() == Some("s1") && result.digest.as_deref() == Some(sha256_hex(payload).as_str()),
                format!("request_id={:?} digest={:?}", result.request_id, result.digest));
            r.check("submitted result session_id and sequence",
                result.session_id.as_deref() == Some(session_id.as_str()) && result.sequence == Some(1),
                format!("session_id={:?} sequence={:?}", result.session_id, result.sequence));
            r.check("submitted result processing_us covers work_ms", result.processing_us.unwrap_or(0) >= 300_000,
                format!("{:?} us", result.processing_us));
        }
    }

    calls += 1;
    if let Some(unknown) = r.expect_err::<_, UnknownTicket>("get_result(\"nope\", 0)", c.get_result(s("nope"), 0)) {
        r.check("get_result(\"nope\", 0) -> UnknownTicket", unknown.ticket.as_deref() == Some("nope"),
            format!("ticket={:?}", unknown.ticket));
    }

    calls += 1;
    let notify = c.notify(Event { name: Some(s("interop")), payload: Some(s("rust 通知")) });
    r.check("notify (oneway) sent", notify.is_ok(), notify.err().map_or("no error".into(), |e| describe(&e)));

    calls += echo_types_checks(r, &mut c);

    calls += 1;
    match c.fail(s("x")) {
        Err(thrift::Error::Application(e)) => {
            r.check("fail(\"x\") -> TApplicationException INTERNAL_ERROR", e.kind == ApplicationErrorKind::InternalError,
                format!("type={} message={:?}", e.kind as i32, e.message));
        }
        other => {
            r.check("fail(\"x\") -> TApplicationException", false, format!("got {:?}", other.map_err(|e| describe(&e))));
        }
    }
    calls += 1;
    if let Some(after) = r.expect_ok("echo after fail", c.echo(s("after fail"))) {
        r.check("echo works after fail on the same connection", after == "after fail", format!("{after:?}"));
    }

    calls += 1;
    if let Some(stats) = r.expect_ok("stats", c.stats()) {
        let notifications = stats.notifications.unwrap_or(0);
        r.check("stats notifications >= 1", notifications >= 1, notifications.to_string());
        let echo_calls = stats.calls.as_ref().and_then(|m| m.get("echo").copied()).unwrap_or(0);
        r.check("stats calls[\"echo\"] >= 1", echo_calls >= 1, echo_calls.to_string());
        let active = stats.sessions_active.unwrap_or(0);
        r.check("stats sessions_active >= 1", active >= 1, active.to_string());
    }

    let farewell = r.expect_ok("goodbye", c.goodbye());
    let session_ms = hello_started.elapsed().as_millis() as i64;
    if let Some(farewell) = farewell {
        let sid = farewell.session_id.unwrap_or_default();
        r.check("goodbye -> Farewell with the same session_id", sid == session_id, &sid);
        r.check("Farewell.calls counts the session's calls (no hello/goodbye)", farewell.calls == Some(calls),
            format!("calls={:?} expected {calls}", farewell.calls));
        let duration = farewell.duration_ms.unwrap_or(-1);
        r.check("Farewell.duration_ms within the session's time", duration >= 0 && duration <= session_ms + 1000,
            format!("{duration} ms (client saw {session_ms} ms)"));
    }

    // The server closes the connection after goodbye's reply, so the next call cannot succeed.
    let after = c.echo(s("after goodbye"));
    let detail = match &after {
        Ok(v) => format!("got {v:?}"),
        Err(e) => describe(e),
    };
    r.check("a call after goodbye fails", after.is_err(), &detail);
    // Framed, TFramedWriteTransport writes the length and the payload in two writes: the first one meets
    // the closed socket's RST and the second fails with EPIPE, which the crate reports as kind Unknown
    // (only its message says "Broken pipe"). That is the server closing too.
    let closed = matches!(&after, Err(thrift::Error::Transport(e))
        if matches!(e.kind, TransportErrorKind::EndOfFile | TransportErrorKind::NotOpen)
            || (e.kind == TransportErrorKind::Unknown && e.message.contains("Broken pipe")));
    r.check("the failure is the server closing the connection (a transport error, not a timeout)", closed, &detail);
    Ok(())
}

/// Overloaded needs a full submit queue: HANDSHAKE_OVERLOAD_PORT names a server on the same host started
/// with submit_workers=1 and submit_queue=1 (room for 2 unfinished requests), where a third submit is refused.
fn overloaded_server(r: &mut Report, address: &str) -> thrift::Result<()> {
    let mut c = connect(address)?;
    if r.expect_ok("hello on the small-queue server", c.hello(client_hello(1, 2, &[]))).is_none() {
        return Ok(());
    }
    for id in ["q1", "q2"] {
        r.expect_ok(&format!("submit {id} (fills the queue)"), c.submit(request(id, "busy", 500)));
    }
    if let Some(overloaded) = r.expect_err::<_, Overloaded>("submit beyond the queue", c.submit(request("q3", "busy", 500))) {
        r.check("submit beyond the queue -> Overloaded", overloaded.queued == Some(2) && overloaded.capacity == Some(2),
            format!("queued={:?} capacity={:?} message={:?}", overloaded.queued, overloaded.capacity, overloaded.message));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let host = args.get(1).cloned().or_else(|| std::env::var("HANDSHAKE_HOST").ok()).unwrap_or(s("127.0.0.1"));
    let port = args.get(2).cloned().or_else(|| std::env::var("HANDSHAKE_PORT").ok()).unwrap_or(s("9090"));
    let address = format!("{host}:{port}");
    let (protocol, transport) = wire();
    if transport == "header" {
        eprintln!("HANDSHAKE_TRANSPORT=header: the thrift crate {} has no THeader transport or protocol", env!("THRIFT_CRATE_VERSION"));
        std::process::exit(2);
    }
    if !matches!(protocol.as_str(), "binary" | "compact") || !matches!(transport.as_str(), "buffered" | "framed") {
        eprintln!("HANDSHAKE_PROTOCOL must be binary or compact and HANDSHAKE_TRANSPORT buffered or framed, not {protocol:?} and {transport:?}");
        std::process::exit(2);
    }
    println!("Rust ({}), thrift crate {}, server {address}, wire {protocol}+{transport}", env!("RUSTC_VERSION"),
        env!("THRIFT_CRATE_VERSION"));
    let mut report = Report::default();
    let mut steps: Vec<(fn(&mut Report, &str) -> thrift::Result<()>, String)> =
        vec![(first_connection, address.clone()), (second_connection, address.clone())];
    if let Some(overload_port) = std::env::var("HANDSHAKE_OVERLOAD_PORT").ok().filter(|p| !p.is_empty()) {
        steps.push((overloaded_server, format!("{host}:{overload_port}")));
    }
    for (step, to) in steps {
        if let Err(error) = step(&mut report, &to) {
            report.check("flow completed", false, describe(&error));
            break;
        }
    }
    println!("{}/{} checks passed", report.checks - report.failures, report.checks);
    std::process::exit(if report.failures > 0 || report.checks == 0 { 1 } else { 0 });
}
