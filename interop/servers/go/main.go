// Go server for thrift-handshake: serves the whole contract (idl/handshake.thrift, HandshakeService
// extends session.SessionService) with Apache Thrift's Go runtime, one session per connection.
//
//	go build -o server . && ./server [PORT [SUBMIT_WORKERS [SUBMIT_QUEUE]]]
//
// PORT 0 (the default) takes any free port; once the socket listens, the server prints
// "listening on 127.0.0.1:PORT" on stdout. The package gen/ is generated, never committed:
//
//	thrift -r --gen go:package_prefix=thrift-handshake/interop/servers/go/gen/ -out gen idl/handshake.thrift
//	rm -rf gen/*/*-remote
//
// Wire: TBufferedTransport + strict TBinaryProtocol on 127.0.0.1 by default; HANDSHAKE_PROTOCOL=compact
// (TCompactProtocol) and HANDSHAKE_TRANSPORT=framed (TFramedTransport) choose the others, as in the
// clients. HANDSHAKE_TRANSPORT=header serves THeader (THeaderTransport + THeaderProtocol): the protocol
// inside each frame is the client's (binary or compact, named in the frame's header), and the reply uses
// the same (TSimpleServer answers on the input THeaderProtocol itself), whatever HANDSHAKE_PROTOCOL says.
// Per-connection state comes from a TProcessorFactory: TSimpleServer asks it for a processor for each accepted connection, so each
// connection gets its own handler (its session) wrapped in a processor that ends the connection after
// goodbye and notices when the connection goes away.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	hs "thrift-handshake/interop/servers/go/gen/thrift_handshake"
	session "thrift-handshake/interop/servers/go/gen/thrift_handshake_session"
)

const (
	serverName      = "thrift-handshake-go-server"
	minVersion      = 1
	maxVersion      = 2
	maxWorkMs       = 10000
	maxWait         = 30 * time.Second
	idleTimeout     = 60 * time.Second // the server socket's read timeout: a silent connection is closed
	maxMessageBytes = 16 << 20         // TConfiguration.MaxMessageSize: no string or container may be larger
	resultTTL       = 10 * time.Minute
	maxResults      = 10000
	maxNameLength   = 256
	maxFeatures     = 64
)

var serverFeatures = map[string]bool{"submit": true, "notify": true, "echo_types": true, "stats": true, "timing": true}

// ---------------------------------------------------------------------------------------------
// Server-wide state: counters and the submit pool
// ---------------------------------------------------------------------------------------------

type server struct {
	mu                 sync.Mutex
	started            time.Time
	connectionsOpen    int64
	connectionsTotal   int64
	sessionsActive     int64
	handshakesOK       int64
	handshakesRejected int64
	notifications      int64
	calls              map[string]int64
	tickets            *ticketBoard
}

func (s *server) count(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

func (s *server) add(counter *int64, delta int64) {
	s.mu.Lock()
	*counter += delta
	s.mu.Unlock()
}

type ticket struct {
	done       chan struct{}
	response   *hs.Response
	finishedAt time.Time
}

// ticketBoard runs submitted work on a bounded pool: at most workers+queue unfinished tickets.
type ticketBoard struct {
	mu         sync.Mutex
	capacity   int
	unfinished int
	tickets    map[string]*ticket
	finished   []string // finish order, for expiry
	jobs       chan func()
}

func newTicketBoard(workers, queue int) *ticketBoard {
	b := &ticketBoard{capacity: workers + queue, tickets: map[string]*ticket{}, jobs: make(chan func(), workers+queue)}
	for i := 0; i < workers; i++ {
		go func() {
			for job := range b.jobs {
				job()
			}
		}()
	}
	return b
}

func (b *ticketBoard) expire(now time.Time) {
	for len(b.finished) > 0 {
		oldest := b.tickets[b.finished[0]]
		if now.Sub(oldest.finishedAt) <= resultTTL && len(b.finished) <= maxResults {
			break
		}
		delete(b.tickets, b.finished[0])
		b.finished = b.finished[1:]
	}
}

func (b *ticketBoard) submit(work func() *hs.Response) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(time.Now())
	if b.unfinished >= b.capacity {
		return "", &hs.Overloaded{Message: "the submit queue is full; try again later",
			Queued: int32(b.unfinished), Capacity: int32(b.capacity)}
	}
	id := newID()
	t := &ticket{done: make(chan struct{})}
	b.tickets[id] = t
	b.unfinished++
	b.jobs <- func() {
		response := work()
		b.mu.Lock()
		t.response, t.finishedAt = response, time.Now()
		b.unfinished--
		b.finished = append(b.finished, id)
		b.expire(t.finishedAt)
		b.mu.Unlock()
		close(t.done)
	}
	return id, nil
}

func (b *ticketBoard) result(id string, waitMs int32) (*hs.Response, error) {
	b.mu.Lock()
	b.expire(time.Now())
	t := b.tickets[id]
	b.mu.Unlock()
	if t == nil {
		return nil, &hs.UnknownTicket{Ticket: id}
	}
	wait := time.Duration(waitMs) * time.Millisecond
	if wait < 0 {
		wait = 0
	}
	if wait > maxWait {
		wait = maxWait
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-t.done:
		return t.response, nil
	case <-timer.C:
		return nil, &hs.NotReady{Ticket: id, Message: fmt.Sprintf("still running after waiting %d ms", wait.Milliseconds())}
	}
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------------------------
// One connection: its session and the contract's methods (TSimpleServer serves a connection's
// messages one at a time, on one goroutine, so the session needs no lock of its own)
// ---------------------------------------------------------------------------------------------

type connection struct {
	srv           *server
	established   bool
	closing       bool // goodbye answered: the connection ends after the reply
	closed        bool
	sessionID     string
	version       int32
	establishedAt time.Time
	calls         int64 // calls served in the session, hello and goodbye excluded
	processSeq    int64
	submitSeq     int64
}

func (c *connection) required(method string) error {
	return &session.HandshakeRequired{Message: method + "() needs a completed hello() on this connection"}
}

// served counts a call served in the session (for Farewell.calls).
func (c *connection) served() {
	if c.established {
		c.calls++
	}
}

// ended is called once when the connection goes away (after goodbye, EOF, an error or a timeout).
func (c *connection) ended() {
	if c.closed {
		return
	}
	c.closed = true
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if !c.closing { // goodbye already took the connection and its session off the counts
		s.connectionsOpen--
		if c.established {
			s.sessionsActive--
		}
	}
}

func negotiate(low, high int32) (int32, string) {
	if low > high {
		return 0, fmt.Sprintf("min_version %d is greater than max_version %d", low, high)
	}
	chosen := high
	if chosen > maxVersion {
		chosen = maxVersion
	}
	floor := low
	if floor < minVersion {
		floor = minVersion
	}
	if chosen < floor {
		return 0, fmt.Sprintf("no common version: client speaks %d..%d, server speaks %d..%d", low, high, minVersion, maxVersion)
	}
	return chosen, ""
}

func (c *connection) checkHello(hello *session.ClientHello) (int32, string) {
	if c.established {
		return 0, "this connection already has session " + c.sessionID
	}
	if hello == nil || hello.ClientName == "" {
		return 0, "client_name is required"
	}
	if len(hello.ClientName) > maxNameLength || len(hello.Language) > maxNameLength {
		return 0, fmt.Sprintf("client_name and language are limited to %d characters", maxNameLength)
	}
	if len(hello.Features) > maxFeatures {
		return 0, fmt.Sprintf("at most %d features of %d characters each", maxFeatures, maxNameLength)
	}
	return negotiate(hello.MinVersion, hello.MaxVersion)
}

func (c *connection) Hello(ctx context.Context, hello *session.ClientHello) (*session.ServerHello, error) {
	c.srv.count("hello")
	version, reason := c.checkHello(hello)
	if reason != "" {
		c.srv.add(&c.srv.handshakesRejected, 1)
		return nil, &session.HandshakeRejected{Reason: reason, MinVersion: minVersion, MaxVersion: maxVersion}
	}
	features := []string{} // Go reads and writes sets as slices: keep it free of duplicates
	seen := map[string]bool{}
	for _, f := range hello.Features {
		if serverFeatures[f] && !seen[f] {
			seen[f] = true
			features = append(features, f)
		}
	}
	sort.Strings(features)
	c.established, c.sessionID, c.version, c.establishedAt = true, newID(), version, time.Now()
	c.srv.mu.Lock()
	c.srv.handshakesOK++
	c.srv.sessionsActive++
	c.srv.mu.Unlock()
	return &session.ServerHello{
		SessionID:       c.sessionID,
		Version:         version,
		ServerName:      serverName,
		Features:        features,
		ServerTimeMs:    time.Now().UnixMilli(),
		IdleTimeoutMs:   int32(idleTimeout.Milliseconds()),
		MaxMessageBytes: maxMessageBytes,
	}, nil
}

func (c *connection) Ping(ctx context.Context) error {
	c.srv.count("ping")
	c.served()
	return nil
}

func (c *connection) Stats(ctx context.Context) (*session.ServerStats, error) {
	c.srv.count("stats")
	if !c.established {
		return nil, c.required("stats")
	}
	c.served()
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := make(map[string]int64, len(s.calls))
	for name, n := range s.calls {
		calls[name] = n
	}
	return &session.ServerStats{
		ConnectionsOpen:    s.connectionsOpen,
		ConnectionsTotal:   s.connectionsTotal,
		SessionsActive:     s.sessionsActive,
		HandshakesOk:       s.handshakesOK,
		HandshakesRejected: s.handshakesRejected,
		Calls:              calls,
		Notifications:      s.notifications,
		UptimeMs:           time.Since(s.started).Milliseconds(),
	}, nil
}

func (c *connection) Goodbye(ctx context.Context) (*session.Farewell, error) {
	c.srv.count("goodbye")
	if !c.established {
		return nil, c.required("goodbye")
	}
	c.closing = true
	c.srv.mu.Lock()
	c.srv.sessionsActive--
	c.srv.connectionsOpen--
	c.srv.mu.Unlock()
	return &session.Farewell{SessionID: c.sessionID, Calls: c.calls,
		DurationMs: time.Since(c.establishedAt).Milliseconds()}, nil
}

func (c *connection) Echo(ctx context.Context, message string) (string, error) {
	c.srv.count("echo")
	if !c.established {
		return "", c.required("echo")
	}
	c.served()
	return message, nil
}

func validate(request *hs.Request) error {
	if request == nil {
		return &hs.InvalidRequest{Message: "request is required", Field: "request"}
	}
	if request.RequestID == "" {
		return &hs.InvalidRequest{Message: "request_id must not be empty", Field: "request_id"}
	}
	if request.WorkMs < 0 || request.WorkMs > maxWorkMs {
		return &hs.InvalidRequest{Message: fmt.Sprintf("work_ms must be within 0..%d, not %d", maxWorkMs, request.WorkMs),
			Field: "work_ms"}
	}
	return nil
}

// run does the (simulated) work of one request and measures the server's own time on it.
func run(request *hs.Request, sessionID string, sequence int64) *hs.Response {
	started := time.Now()
	time.Sleep(time.Duration(request.WorkMs) * time.Millisecond)
	sum := sha256.Sum256([]byte(request.Payload))
	return &hs.Response{RequestID: request.RequestID, Digest: hex.EncodeToString(sum[:]),
		ProcessingUs: time.Since(started).Microseconds(), SessionID: sessionID, Sequence: sequence}
}

func (c *connection) Process(ctx context.Context, request *hs.Request) (*hs.Response, error) {
	c.srv.count("process")
	if !c.established {
		return nil, c.required("process")
	}
	c.served()
	if err := validate(request); err != nil {
		return nil, err
	}
	c.processSeq++
	return run(request, c.sessionID, c.processSeq), nil
}

func (c *connection) Submit(ctx context.Context, request *hs.Request) (*hs.Ack, error) {
	c.srv.count("submit")
	if !c.established {
		return nil, c.required("submit")
	}
	c.served()
	if err := validate(request); err != nil {
		return nil, err
	}
	sessionID, sequence := c.sessionID, c.submitSeq+1
	id, err := c.srv.tickets.submit(func() *hs.Response { return run(request, sessionID, sequence) })
	if err != nil {
		return nil, err
	}
	c.submitSeq = sequence
	return &hs.Ack{Ticket: id, RequestID: request.RequestID, AcceptedAtMs: time.Now().UnixMilli()}, nil
}

func (c *connection) GetResult_(ctx context.Context, ticket string, waitMs int32) (*hs.Response, error) {
	c.srv.count("get_result")
	if !c.established {
		return nil, c.required("get_result")
	}
	c.served()
	return c.srv.tickets.result(ticket, waitMs)
}

func (c *connection) Notify(ctx context.Context, event *hs.Event) error {
	c.srv.count("notify")
	if !c.established {
		return nil // one-way before hello: dropped
	}
	c.served()
	c.srv.add(&c.srv.notifications, 1)
	return nil
}

func (c *connection) EchoTypes(ctx context.Context, value *hs.AllTypes) (*hs.AllTypes, error) {
	c.srv.count("echo_types")
	if !c.established {
		return nil, c.required("echo_types")
	}
	c.served()
	return value, nil
}

func (c *connection) Fail(ctx context.Context, message string) error {
	c.srv.count("fail")
	if !c.established {
		return c.required("fail")
	}
	c.served()
	if message == "" {
		message = "fail() was called"
	}
	return errors.New(message) // undeclared: the processor answers TApplicationException INTERNAL_ERROR
}

// ---------------------------------------------------------------------------------------------
// Per-connection processors
// ---------------------------------------------------------------------------------------------

// connProcessor is the generated processor of one connection's handler; it ends the connection after
// goodbye (returning false stops TSimpleServer's loop, which closes the transport) and tells the
// connection when it goes away.
type connProcessor struct {
	*hs.HandshakeServiceProcessor
	conn *connection
}

func (p *connProcessor) Process(ctx context.Context, in, out thrift.TProtocol) (bool, thrift.TException) {
	ok, err := p.HandshakeServiceProcessor.Process(ctx, in, out)
	var transportErr thrift.TTransportException
	if p.conn.closing || !ok || errors.As(err, &transportErr) {
		p.conn.ended() // TSimpleServer stops reading this connection and closes it
		if p.conn.closing {
			return false, nil
		}
	}
	return ok, err
}

// endingSocket accepts connections that report their own end (endingTransport). With THeader,
// TSimpleServer reads each frame before calling Process and returns on end-of-file without calling it,
// so the processor never sees the end of the connection; the deferred Close of the connection's
// transport (THeader, buffered and framed all close the socket below them) always runs.
type endingSocket struct{ *thrift.TServerSocket }

func (s endingSocket) Accept() (thrift.TTransport, error) {
	client, err := s.TServerSocket.Accept()
	if err != nil {
		return nil, err
	}
	return &endingTransport{TTransport: client}, nil
}

type endingTransport struct {
	thrift.TTransport
	onClose func()
}

func (t *endingTransport) Close() error {
	if t.onClose != nil {
		t.onClose()
	}
	return t.TTransport.Close()
}

type processorFactory struct{ srv *server }

func (f processorFactory) GetProcessor(trans thrift.TTransport) thrift.TProcessor {
	f.srv.mu.Lock()
	f.srv.connectionsOpen++
	f.srv.connectionsTotal++
	f.srv.mu.Unlock()
	conn := &connection{srv: f.srv}
	if ending, ok := trans.(*endingTransport); ok {
		ending.onClose = conn.ended // on the connection's goroutine, like Process
	}
	return &connProcessor{hs.NewHandshakeServiceProcessor(conn), conn}
}

func argInt(i, fallback int) int {
	if len(os.Args) <= i {
		return fallback
	}
	n, err := strconv.Atoi(os.Args[i])
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "usage: %s [PORT [SUBMIT_WORKERS [SUBMIT_QUEUE]]]: %q is not a number\n", os.Args[0], os.Args[i])
		os.Exit(2)
	}
	return n
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	wireProtocol, wireTransport := envOr("HANDSHAKE_PROTOCOL", "binary"), envOr("HANDSHAKE_TRANSPORT", "buffered")
	if (wireProtocol != "binary" && wireProtocol != "compact") || (wireTransport != "buffered" && wireTransport != "framed" && wireTransport != "header") {
		fmt.Fprintf(os.Stderr, "HANDSHAKE_PROTOCOL must be binary or compact and HANDSHAKE_TRANSPORT buffered, framed or header, not %q and %q\n",
			wireProtocol, wireTransport)
		os.Exit(2)
	}
	port, workers, queue := argInt(1, 0), argInt(2, 4), argInt(3, 1000)
	if workers < 1 {
		workers = 1
	}
	srv := &server{started: time.Now(), calls: map[string]int64{}, tickets: newTicketBoard(workers, queue)}
	conf := &thrift.TConfiguration{
		MaxMessageSize:     maxMessageBytes,
		TBinaryStrictRead:  thrift.BoolPtr(true),
		TBinaryStrictWrite: thrift.BoolPtr(true),
	}
	socket, err := thrift.NewTServerSocketTimeout(fmt.Sprintf("127.0.0.1:%d", port), idleTimeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot listen:", err)
		os.Exit(1)
	}
	var transports thrift.TTransportFactory = thrift.NewTBufferedTransportFactory(8192)
	var protocols thrift.TProtocolFactory = thrift.NewTBinaryProtocolFactoryConf(conf)
	switch {
	case wireTransport == "header":
		transports = thrift.NewTHeaderTransportFactoryConf(thrift.NewTTransportFactory(), conf)
		protocols = thrift.NewTHeaderProtocolFactoryConf(conf)
	case wireTransport == "framed":
		transports = thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), conf)
	}
	if wireProtocol == "compact" && wireTransport != "header" {
		protocols = thrift.NewTCompactProtocolFactoryConf(conf)
	}
	server := thrift.NewTSimpleServerFactory4(processorFactory{srv}, endingSocket{socket}, transports, protocols)
	if err := server.Listen(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", socket.Addr())
	fmt.Fprintf(os.Stderr, "wire %s+%s\n", wireProtocol, wireTransport)
	if err := server.AcceptLoop(); err != nil {
		fmt.Fprintln(os.Stderr, "server stopped:", err)
		os.Exit(1)
	}
}
