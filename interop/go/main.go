// Go interop client for thrift-handshake: runs the contract's whole flow against a running server and
// prints one line per check ("ok   ..." or "FAIL ..."). Exits 0 only if every check passed.
//
//	go build -o client . && ./client [-host 127.0.0.1] [-port 9090] [-protocol binary|compact] [-transport buffered|framed|header]
//
// The package gen/thrift_handshake is generated, never committed (the tests generate it):
//
//	thrift --gen go:package_prefix=thrift-handshake/interop/go/gen/ -out gen idl/handshake.thrift
//	rm -rf gen/thrift_handshake/handshake_service-remote
//
// Wire: TBufferedTransport + strict TBinaryProtocol by default; -protocol compact (TCompactProtocol),
// -transport framed (TFramedTransport) or -transport header (THeaderTransport + THeaderProtocol, carrying
// the protocol that -protocol names), or the environment variables HANDSHAKE_PROTOCOL and
// HANDSHAKE_TRANSPORT (the flags win). HANDSHAKE_OVERLOAD_PORT names a server with a submit queue of 2
// (1 worker, 1 queued) on the same host, where a third submit must be refused with Overloaded.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	hs "thrift-handshake/interop/go/gen/thrift_handshake"
	session "thrift-handshake/interop/go/gen/thrift_handshake_session"
)

var (
	host         = flag.String("host", envOr("HANDSHAKE_HOST", "127.0.0.1"), "server host")
	port         = flag.Int("port", envInt("HANDSHAKE_PORT", 9090), "server port")
	callTimeout  = flag.Duration("timeout", 10*time.Second, "socket timeout of each call")
	protocolArg  = flag.String("protocol", envOr("HANDSHAKE_PROTOCOL", "binary"), "binary or compact (env HANDSHAKE_PROTOCOL)")
	transportArg = flag.String("transport", envOr("HANDSHAKE_TRANSPORT", "buffered"), "buffered, framed or header (env HANDSHAKE_TRANSPORT)")
	overloadPort = flag.Int("overload-port", envInt("HANDSHAKE_OVERLOAD_PORT", 0), "port of a server with a submit queue of 2 (env HANDSHAKE_OVERLOAD_PORT; 0: not checked)")
)

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func envInt(name string, fallback int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return fallback
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

var checks, failures int

func check(name string, ok bool, format string, args ...interface{}) bool {
	checks++
	status := "ok  "
	if !ok {
		failures++
		status = "FAIL"
	}
	detail := fmt.Sprintf(format, args...)
	if detail != "" {
		detail = ": " + detail
	}
	fmt.Printf("%s %s%s\n", status, name, detail)
	return ok
}

func describe(err error) string {
	if err == nil {
		return "no error"
	}
	var tae thrift.TApplicationException
	if errors.As(err, &tae) {
		return fmt.Sprintf("TApplicationException(type=%d, %q)", tae.TypeId(), tae.Error())
	}
	return fmt.Sprintf("%T(%v)", err, err)
}

// expectErr checks that err is (or wraps) a *T and returns it.
func expectErr[T error](name string, err error) (T, bool) {
	var target T
	if errors.As(err, &target) {
		return target, true
	}
	check(name, false, "expected %T, got %s", target, describe(err))
	return target, false
}

func expectOK(name string, err error) bool {
	if err != nil {
		check(name, false, "expected a result, got %s", describe(err))
		return false
	}
	return true
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

type conn struct {
	transport thrift.TTransport
	client    *hs.HandshakeServiceClient
}

func connect() (*conn, error) {
	return connectTo(*port)
}

func connectTo(toPort int) (*conn, error) {
	conf := &thrift.TConfiguration{
		ConnectTimeout:     5 * time.Second,
		SocketTimeout:      *callTimeout,
		TBinaryStrictRead:  thrift.BoolPtr(true),
		TBinaryStrictWrite: thrift.BoolPtr(true),
	}
	headerProtocol := thrift.THeaderProtocolBinary
	if *protocolArg == "compact" {
		headerProtocol = thrift.THeaderProtocolCompact
	}
	conf.THeaderProtocolID = &headerProtocol
	socket := thrift.NewTSocketConf(net.JoinHostPort(*host, strconv.Itoa(toPort)), conf)
	var transport thrift.TTransport
	switch *transportArg {
	case "framed":
		transport = thrift.NewTFramedTransportConf(socket, conf)
	case "header": // THeader frames the message itself: it goes straight on the socket
		transport = thrift.NewTHeaderTransportConf(socket, conf)
	default:
		transport = thrift.NewTBufferedTransport(socket, 8192)
	}
	if err := transport.Open(); err != nil {
		return nil, fmt.Errorf("cannot connect to %s:%d: %w", *host, toPort, err)
	}
	var protocol thrift.TProtocol
	switch {
	case *transportArg == "header":
		protocol = thrift.NewTHeaderProtocolConf(transport, conf)
	case *protocolArg == "compact":
		protocol = thrift.NewTCompactProtocolConf(transport, conf)
	default:
		protocol = thrift.NewTBinaryProtocolConf(transport, conf)
	}
	client := hs.NewHandshakeServiceClient(thrift.NewTStandardClient(protocol, protocol))
	return &conn{transport: transport, client: client}, nil
}

func clientHello(minVersion, maxVersion int32, features ...string) *session.ClientHello {
	hello := session.NewClientHello()
	hello.ClientName = "thrift-handshake-interop-go"
	hello.Language = "go"
	hello.MinVersion = minVersion
	hello.MaxVersion = maxVersion
	hello.Features = append([]string{}, features...)
	return hello
}

// ---------------------------------------------------------------------------------------------
// The AllTypes value and its canonical form for field-by-field comparison
// ---------------------------------------------------------------------------------------------

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func point(x, y int32, label *string) *hs.Point {
	return &hs.Point{X: x, Y: y, Label: label}
}

func allTypesValue() *hs.AllTypes {
	v := hs.NewAllTypes()
	v.ID = "all-types/go/全部类型"
	v.Flag = true
	v.Small = math.MinInt8
	v.ShortNumber = math.MinInt16
	v.Number = math.MaxInt32
	v.BigNumber = math.MaxInt64
	// The smallest negative subnormal: sign and denormal bits must survive (compared bitwise).
	v.Real = -math.SmallestNonzeroFloat64
	v.Text = "请求数据: 中文, emoji 😀🚀👍🏽, combining é"
	v.Data = allBytes()
	v.Color = hs.Color_UNKNOWN_COLOR
	v.Shape = &hs.Shape{Point: point(-1, math.MaxInt32, thrift.StringPtr("原点"))}
	v.Note = thrift.StringPtr("备注 ✓")
	v.MaybeNumber = thrift.Int64Ptr(math.MinInt64)
	v.Greeting = "你好, 世界 🌏"
	v.Answer = -42
	v.Numbers = []int32{math.MinInt32, -1, 0, 1, math.MaxInt32}
	v.Tags = []string{"alpha", "βeta", "标签", "🏷️", ""}
	v.Counts = map[string]int64{"max": math.MaxInt64, "min": math.MinInt64, "zero": 0, "2^53+1": 1<<53 + 1}
	v.Groups = map[string][]*hs.Point{
		"角":     {point(1, 2, thrift.StringPtr("点"))},
		"empty": {},
		"pair":  {point(3, 4, thrift.StringPtr("p")), point(-5, -6, nil)},
	}
	v.Layers = []map[string][]int32{
		{"a": {1, 2, 3}},
		{},
		{"b": {}, "c": {math.MinInt32, math.MaxInt32}},
	}
	v.Palette = map[int32]hs.Color{-5: hs.Color_UNKNOWN_COLOR, 0: hs.Color_RED, math.MaxInt32: hs.Color_MAX_COLOR}
	v.Blobs = [][]byte{{}, {0x00, 0xff}, allBytes()}
	return v
}

// canon renders a value deterministically: map keys sorted, []byte as hex, doubles as their bits,
// nil pointers as null, nil and empty slices alike (the wire does not tell them apart).
func canon(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Ptr, reflect.Interface:
		if v.IsNil() {
			return "null"
		}
		return canon(v.Elem())
	case reflect.Float32, reflect.Float64:
		return fmt.Sprintf("double:%016x", math.Float64bits(v.Float()))
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "binary:" + hex.EncodeToString(v.Bytes())
		}
		items := make([]string, v.Len())
		for i := range items {
			items[i] = canon(v.Index(i))
		}
		return "[" + strings.Join(items, ",") + "]"
	case reflect.Map:
		items := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			items = append(items, canon(k)+":"+canon(v.MapIndex(k)))
		}
		sort.Strings(items)
		return "{" + strings.Join(items, ",") + "}"
	case reflect.Struct:
		items := make([]string, 0, v.NumField())
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				items = append(items, v.Type().Field(i).Name+"="+canon(v.Field(i)))
			}
		}
		return v.Type().Name() + "{" + strings.Join(items, ",") + "}"
	default:
		return fmt.Sprint(v.Interface())
	}
}

// sortSets orders the set-typed fields (Go reads sets as slices, in wire order) so that canon compares
// them as sets.
func sortSets(v *hs.AllTypes) {
	sort.Strings(v.Tags)
	for _, layer := range v.Layers {
		for _, set := range layer {
			sort.Slice(set, func(i, j int) bool { return set[i] < set[j] })
		}
	}
}

func clip(s string) string {
	if r := []rune(s); len(r) > 80 {
		return string(r[:77]) + "..."
	}
	return s
}

// ---------------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------------

func firstConnection(ctx context.Context) error {
	c, err := connect()
	if err != nil {
		return err
	}
	defer c.transport.Close()

	err = c.client.Ping(ctx)
	check("ping before hello", err == nil, "%s", describe(err))

	_, err = c.client.Echo(ctx, "too early")
	if required, ok := expectErr[*session.HandshakeRequired]("echo before hello", err); ok {
		check("echo before hello", true, "HandshakeRequired: %s", required.Message)
	}
	err = c.client.Ping(ctx)
	check("connection usable after HandshakeRequired", err == nil, "%s", describe(err))

	hello, err := c.client.Hello(ctx, clientHello(1, 1))
	if expectOK("hello 1..1", err) {
		check("hello 1..1 -> version 1", hello.Version == 1, "version=%d session_id=%s", hello.Version, hello.SessionID)
		check("hello 1..1 session_id non-empty", hello.SessionID != "", "%q", hello.SessionID)
	}

	_, err = c.client.Hello(ctx, clientHello(1, 2))
	if rejected, ok := expectErr[*session.HandshakeRejected]("second hello", err); ok {
		check("second hello -> HandshakeRejected", rejected.Reason != "", "reason=%q server versions %d..%d",
			rejected.Reason, rejected.MinVersion, rejected.MaxVersion)
		check("HandshakeRejected carries the server's versions 1..2", rejected.MinVersion == 1 && rejected.MaxVersion == 2,
			"%d..%d", rejected.MinVersion, rejected.MaxVersion)
	}

	echo, err := c.client.Echo(ctx, "still here")
	if expectOK("echo after rejected second hello", err) {
		check("session survives a rejected second hello", echo == "still here", "%q", echo)
	}
	return nil
}

func secondConnection(ctx context.Context) error {
	c, err := connect()
	if err != nil {
		return err
	}
	defer c.transport.Close()
	calls := int64(0) // calls after hello(), not counting goodbye(): what Farewell.calls must report

	sentFeatures := []string{"submit", "notify", "no-such-feature"}
	helloStarted := time.Now()
	hello, err := c.client.Hello(ctx, clientHello(1, 2, sentFeatures...))
	if !expectOK("hello 1..2", err) {
		return nil
	}
	sessionID := hello.SessionID
	check("hello 1..2 -> version 2", hello.Version == 2, "version=%d", hello.Version)
	check("hello 1..2 session_id non-empty", sessionID != "", "%q", sessionID)
	subset := true
	for _, f := range hello.Features {
		subset = subset && f != "no-such-feature" && (f == "submit" || f == "notify")
	}
	check("hello features are a subset of the client's", subset, "%q", hello.Features)
	skew := time.Since(time.UnixMilli(hello.ServerTimeMs))
	check("hello server_time_ms is the server's wall clock", skew < time.Minute && skew > -time.Minute,
		"%d (skew %v)", hello.ServerTimeMs, skew)
	check("hello idle_timeout_ms and max_message_bytes positive", hello.IdleTimeoutMs > 0 && hello.MaxMessageBytes > 0,
		"idle_timeout_ms=%d max_message_bytes=%d", hello.IdleTimeoutMs, hello.MaxMessageBytes)

	text := "请求数据"
	calls++
	echo, err := c.client.Echo(ctx, text)
	if expectOK("echo", err) {
		check("echo(\"请求数据\") round-trips", echo == text, "%q", echo)
	}

	calls++
	response, err := c.client.Process(ctx, &hs.Request{RequestID: "n1", Payload: "abc", WorkMs: 0})
	if expectOK("process n1", err) {
		check("process digest", response.Digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
			"%s", response.Digest)
		check("process sequence 1", response.Sequence == 1, "%d", response.Sequence)
		check("process session_id matches hello", response.SessionID == sessionID, "%s", response.SessionID)
		check("process request_id echoed", response.RequestID == "n1", "%s", response.RequestID)
	}

	calls++
	_, err = c.client.Process(ctx, &hs.Request{RequestID: "", Payload: "abc", WorkMs: 0})
	if invalid, ok := expectErr[*hs.InvalidRequest]("process with empty request_id", err); ok {
		check("process with empty request_id -> InvalidRequest(field=request_id)", invalid.Field == "request_id",
			"field=%q message=%q", invalid.Field, invalid.Message)
	}

	payload := "submitted 数据"
	calls++
	submitStarted := time.Now()
	ack, err := c.client.Submit(ctx, &hs.Request{RequestID: "s1", Payload: payload, WorkMs: 300})
	submitTook := time.Since(submitStarted)
	ticket := ""
	if expectOK("submit", err) {
		ticket = ack.Ticket
		check("submit(work_ms=300) returns before the work is done", submitTook < 300*time.Millisecond, "%v", submitTook)
		check("submit ack has a ticket", ticket != "", "ticket=%s request_id=%s", ticket, ack.RequestID)
		check("submit ack request_id", ack.RequestID == "s1", "%s", ack.RequestID)
	}
	if ticket != "" {
		calls++
		_, err = c.client.GetResult_(ctx, ticket, 0)
		if notReady, ok := expectErr[*hs.NotReady]("get_result(ticket, 0)", err); ok {
			check("get_result(ticket, 0) -> NotReady", notReady.Ticket == ticket, "ticket=%s message=%q",
				notReady.Ticket, notReady.Message)
		}
		calls++
		result, err := c.client.GetResult_(ctx, ticket, 3000)
		if expectOK("get_result(ticket, 3000)", err) {
			sum := sha256.Sum256([]byte(payload))
			check("get_result(ticket, 3000) -> result",
				result.RequestID == "s1" && result.Digest == hex.EncodeToString(sum[:]),
				"request_id=%s digest=%s", result.RequestID, result.Digest)
			check("submitted result session_id and sequence", result.SessionID == sessionID && result.Sequence == 1,
				"session_id=%s sequence=%d", result.SessionID, result.Sequence)
			check("submitted result processing_us covers work_ms", result.ProcessingUs >= 300000, "%d us",
				result.ProcessingUs)
		}
	}

	calls++
	_, err = c.client.GetResult_(ctx, "nope", 0)
	if unknown, ok := expectErr[*hs.UnknownTicket]("get_result(\"nope\", 0)", err); ok {
		check("get_result(\"nope\", 0) -> UnknownTicket", unknown.Ticket == "nope", "ticket=%q", unknown.Ticket)
	}

	calls++
	err = c.client.Notify(ctx, &hs.Event{Name: "interop", Payload: "go 通知"})
	check("notify (oneway) sent", err == nil, "%s", describe(err))

	calls++
	sent := allTypesValue()
	echoed, err := c.client.EchoTypes(ctx, sent)
	if expectOK("echo_types", err) {
		sortSets(sent)
		sortSets(echoed)
		want, got := reflect.ValueOf(sent).Elem(), reflect.ValueOf(echoed).Elem()
		for i := 0; i < want.NumField(); i++ {
			field := want.Type().Field(i)
			tag := strings.Split(field.Tag.Get("thrift"), ",")[0]
			a, b := canon(want.Field(i)), canon(got.Field(i))
			if a == b {
				check("echo_types."+tag, true, "%s", clip(a))
			} else {
				check("echo_types."+tag, false, "sent %s got %s", a, b)
			}
		}
		check("echo_types.real bitwise", math.Float64bits(echoed.Real) == math.Float64bits(-math.SmallestNonzeroFloat64),
			"%016x", math.Float64bits(echoed.Real))
		check("echo_types.data all 256 byte values", bytes.Equal(echoed.Data, allBytes()), "%d bytes", len(echoed.Data))
	}

	calls++
	err = c.client.Fail(ctx, "x")
	var tae thrift.TApplicationException
	if errors.As(err, &tae) {
		check("fail(\"x\") -> TApplicationException INTERNAL_ERROR", tae.TypeId() == thrift.INTERNAL_ERROR,
			"type=%d message=%q", tae.TypeId(), tae.Error())
	} else {
		check("fail(\"x\") -> TApplicationException", false, "got %s", describe(err))
	}
	calls++
	echo, err = c.client.Echo(ctx, "after fail")
	if expectOK("echo after fail", err) {
		check("echo works after fail on the same connection", echo == "after fail", "%q", echo)
	}

	calls++
	stats, err := c.client.Stats(ctx)
	if expectOK("stats", err) {
		check("stats notifications >= 1", stats.Notifications >= 1, "%d", stats.Notifications)
		check("stats calls[\"echo\"] >= 1", stats.Calls["echo"] >= 1, "%d", stats.Calls["echo"])
		check("stats sessions_active >= 1", stats.SessionsActive >= 1, "%d", stats.SessionsActive)
	}

	farewell, err := c.client.Goodbye(ctx)
	sessionTook := time.Since(helloStarted)
	if expectOK("goodbye", err) {
		check("goodbye -> Farewell with the same session_id", farewell.SessionID == sessionID, "%s", farewell.SessionID)
		check("Farewell.calls counts the session's calls (no hello/goodbye)", farewell.Calls == calls,
			"calls=%d expected %d", farewell.Calls, calls)
		check("Farewell.duration_ms within the session's time",
			farewell.DurationMs >= 0 && farewell.DurationMs <= sessionTook.Milliseconds()+1000,
			"%d ms (client saw %d ms)", farewell.DurationMs, sessionTook.Milliseconds())
	}

	// The server closes the connection after goodbye's reply, so the next call cannot succeed.
	_, err = c.client.Echo(ctx, "after goodbye")
	check("a call after goodbye fails", err != nil, "%s", describe(err))
	var transportErr thrift.TTransportException
	check("the failure is the server closing the connection (a transport error, not a timeout)",
		errors.As(err, &transportErr) && transportErr.TypeId() != thrift.TIMED_OUT, "%s", describe(err))
	return nil
}

// overloadedServer fills the submit queue of a server with room for 2 unfinished requests (1 worker,
// 1 queued): a third submit must be refused with Overloaded, and the accepted two still finish.
func overloadedServer(ctx context.Context) error {
	c, err := connectTo(*overloadPort)
	if err != nil {
		return err
	}
	defer c.transport.Close()
	if _, err := c.client.Hello(ctx, clientHello(1, 2)); !expectOK("hello on the small-queue server", err) {
		return nil
	}
	var tickets []string
	for i := 1; i <= 2; i++ {
		ack, err := c.client.Submit(ctx, &hs.Request{RequestID: fmt.Sprintf("q%d", i), Payload: "busy", WorkMs: 200})
		if expectOK(fmt.Sprintf("submit q%d (fills the queue)", i), err) {
			tickets = append(tickets, ack.Ticket)
		}
	}
	_, err = c.client.Submit(ctx, &hs.Request{RequestID: "q3", Payload: "busy", WorkMs: 200})
	if overloaded, ok := expectErr[*hs.Overloaded]("submit beyond the queue", err); ok {
		check("submit beyond the queue -> Overloaded", overloaded.Queued == 2 && overloaded.Capacity == 2,
			"queued=%d capacity=%d message=%q", overloaded.Queued, overloaded.Capacity, overloaded.Message)
	}
	for i, ticket := range tickets {
		result, err := c.client.GetResult_(ctx, ticket, 5000)
		if expectOK("get_result of an accepted submit", err) {
			check(fmt.Sprintf("accepted submit q%d still finishes", i+1), result.RequestID == fmt.Sprintf("q%d", i+1),
				"request_id=%s", result.RequestID)
		}
	}
	return nil
}

func main() {
	flag.Parse()
	if (*protocolArg != "binary" && *protocolArg != "compact") ||
		(*transportArg != "buffered" && *transportArg != "framed" && *transportArg != "header") {
		fmt.Fprintf(os.Stderr, "protocol must be binary or compact and transport buffered, framed or header, not %q and %q\n", *protocolArg, *transportArg)
		os.Exit(2)
	}
	thriftVersion := "?"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/apache/thrift" {
				thriftVersion = dep.Version
			}
		}
	}
	fmt.Printf("%s, github.com/apache/thrift %s, server %s:%d, wire %s+%s\n", runtime.Version(), thriftVersion, *host, *port,
		*protocolArg, *transportArg)
	ctx := context.Background()
	steps := []func(context.Context) error{firstConnection, secondConnection}
	if *overloadPort != 0 {
		steps = append(steps, overloadedServer)
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			check("flow completed", false, "%v", err)
			break
		}
	}
	fmt.Printf("%d/%d checks passed\n", checks-failures, checks)
	if failures > 0 || checks == 0 {
		os.Exit(1)
	}
}
