# The contract's whole flow from Ruby (Debian's ruby-thrift): handshake, echo, process, submit and get_result,
# notify, echo_types, an undeclared error, stats, goodbye, and Overloaded on a second server.
# Usage: ruby interop/ruby/client.rb GEN [HOST PORT]   (GEN: `thrift -r --gen rb -out GEN idl/handshake.thrift`)
# HANDSHAKE_HOST/HANDSHAKE_PORT, HANDSHAKE_OVERLOAD_PORT (a server with room for 2 submits),
# HANDSHAKE_PROTOCOL=binary|compact and HANDSHAKE_TRANSPORT=buffered|framed.
# Prints one line per check (`ok   name: detail` or `FAIL name: detail`), then `N/M checks passed`.
require 'digest'
require 'set'
require 'thrift'

gen = ARGV[0] or abort('usage: ruby client.rb GEN_DIR [HOST PORT]')
$LOAD_PATH.unshift(gen)
require 'handshake_service'

HOST = ARGV[1] || ENV['HANDSHAKE_HOST'] || '127.0.0.1'
PORT = Integer(ARGV[2] || ENV['HANDSHAKE_PORT'] || 9090)
OVERLOAD_PORT = Integer(ENV['HANDSHAKE_OVERLOAD_PORT'] || 0)
PROTOCOL = ENV['HANDSHAKE_PROTOCOL'] || 'binary'
TRANSPORT = ENV['HANDSHAKE_TRANSPORT'] || 'buffered'
$stdout.sync = true

thrift_version = Gem.loaded_specs['thrift']&.version || Thrift::VERSION rescue 'unknown'
puts "ruby #{RUBY_VERSION}, thrift #{thrift_version}, server #{HOST}:#{PORT}, wire #{PROTOCOL}+#{TRANSPORT}"
if TRANSPORT == 'header'
  puts "Ruby's Thrift runtime (#{thrift_version}) has no THeader"
  exit 2
end
unless %w[binary compact].include?(PROTOCOL) && %w[buffered framed].include?(TRANSPORT)
  puts "unknown wire #{PROTOCOL}+#{TRANSPORT} (binary|compact, buffered|framed)"
  exit 2
end

$checks = 0
$failures = 0

def check(name, ok, detail = '')
  $checks += 1
  $failures += 1 unless ok
  puts "#{ok ? 'ok  ' : 'FAIL'} #{name}: #{detail}"
  ok
end

def describe(error)
  return "#{error.class} type=#{error.type} #{error.message}" if error.is_a?(Thrift::ApplicationException)
  "#{error.class} #{error.message}"
end

# The value the block returns, or nil after a FAIL line naming what was raised instead.
def call(name)
  yield
rescue StandardError => e
  check(name, false, "raised #{describe(e)}")
  nil
end

# The exception of klass the block raises, or nil after a FAIL line.
def raises(name, klass)
  yield
  check(name, false, "returned instead of raising #{klass}")
  nil
rescue klass => e
  e
rescue StandardError => e
  check(name, false, "raised #{describe(e)} instead of #{klass}")
  nil
end

def connect(port)
  socket = Thrift::Socket.new(HOST, port, 10)
  transport = TRANSPORT == 'framed' ? Thrift::FramedTransport.new(socket) : Thrift::BufferedTransport.new(socket)
  protocol = PROTOCOL == 'compact' ? Thrift::CompactProtocol.new(transport) : Thrift::BinaryProtocol.new(transport)
  transport.open
  [ThriftHandshake::HandshakeService::Client.new(protocol), transport]
end

def client_hello(min, max, features = [])
  ThriftHandshake::ClientHello.new(client_name: 'ruby-interop', language: 'ruby', min_version: min,
                                   max_version: max, features: Set.new(features))
end

def request(id, payload, work_ms)
  ThriftHandshake::Request.new(request_id: id, payload: payload, work_ms: work_ms)
end

def first_connection
  client, transport = connect(PORT)
  check('ping before hello', call('ping before hello') { client.ping; true }, 'returned')
  required = raises('echo before hello', ThriftHandshake::HandshakeRequired) { client.echo('too early') }
  check('echo before hello', true, "HandshakeRequired: #{required.message}") if required
  check('connection usable after HandshakeRequired', call('ping') { client.ping; true }, 'returned')

  hello = call('hello 1..1') { client.hello(client_hello(1, 1)) }
  if hello
    check('hello 1..1 -> version 1', hello.version == 1, "version=#{hello.version}")
    check('hello 1..1 session_id non-empty', !hello.session_id.to_s.empty?, hello.session_id)
  end
  rejected = raises('second hello', ThriftHandshake::HandshakeRejected) { client.hello(client_hello(1, 2)) }
  if rejected
    check('second hello -> HandshakeRejected', !rejected.reason.to_s.empty?, rejected.reason)
    check("HandshakeRejected carries the server's versions 1..2",
          rejected.min_version == 1 && rejected.max_version == 2, "#{rejected.min_version}..#{rejected.max_version}")
  end
  echo = call('echo after a rejected second hello') { client.echo('still here') }
  check('session survives a rejected second hello', echo == 'still here', echo) if echo
ensure
  transport&.close
end

def second_connection
  client, transport = connect(PORT)
  calls = 0 # calls after hello, not counting goodbye: what Farewell.calls must report
  started = Time.now
  hello = call('hello 1..2') { client.hello(client_hello(1, 2, %w[submit notify no-such-feature])) }
  return unless hello

  session_id = hello.session_id
  check('hello 1..2 -> version 2', hello.version == 2, "version=#{hello.version}")
  check('hello 1..2 session_id non-empty', !session_id.to_s.empty?, session_id)
  features = hello.features.to_a.sort
  check("hello features are a subset of the client's", (features - %w[submit notify]).empty?, features.join(','))
  check("hello server_time_ms is the server's wall clock", (hello.server_time_ms / 1000.0 - Time.now.to_f).abs < 60,
        hello.server_time_ms)
  check('hello idle_timeout_ms and max_message_bytes positive',
        hello.idle_timeout_ms.positive? && hello.max_message_bytes.positive?,
        "idle_timeout_ms=#{hello.idle_timeout_ms} max_message_bytes=#{hello.max_message_bytes}")

  text = '请求数据 🚀'
  calls += 1
  echo = call('echo') { client.echo(text) }
  check("echo(\"#{text}\") round-trips", echo == text && echo.encoding == Encoding::UTF_8, echo) if echo

  calls += 1
  response = call('process n1') { client.process(request('n1', 'abc', 0)) }
  if response
    check('process digest', response.digest == Digest::SHA256.hexdigest('abc'), response.digest)
    check('process sequence 1', response.sequence == 1, response.sequence)
    check('process session_id matches hello', response.session_id == session_id, response.session_id)
    check('process request_id echoed', response.request_id == 'n1', response.request_id)
  end
  calls += 1
  invalid = raises('process with empty request_id', ThriftHandshake::InvalidRequest) do
    client.process(request('', 'abc', 0))
  end
  if invalid
    check('process with empty request_id -> InvalidRequest(field=request_id)', invalid.field == 'request_id',
          "field=#{invalid.field} message=#{invalid.message}")
  end

  payload = 'submitted 数据'
  calls += 1
  submitted_at = Time.now
  ack = call('submit') { client.submit(request('s1', payload, 300)) }
  submit_ms = (Time.now - submitted_at) * 1000
  if ack
    check('submit(work_ms=300) returns before the work is done', submit_ms < 300, format('%.0f ms', submit_ms))
    check('submit ack has a ticket', !ack.ticket.to_s.empty?, ack.ticket)
    check('submit ack request_id', ack.request_id == 's1', ack.request_id)
    calls += 1
    not_ready = raises('get_result(ticket, 0)', ThriftHandshake::NotReady) { client.get_result(ack.ticket, 0) }
    check('get_result(ticket, 0) -> NotReady', not_ready.ticket == ack.ticket, not_ready.message) if not_ready
    calls += 1
    result = call('get_result(ticket, 3000)') { client.get_result(ack.ticket, 3000) }
    if result
      check('get_result(ticket, 3000) -> result', result.digest == Digest::SHA256.hexdigest(payload), result.digest)
      check('submitted result session_id and sequence', result.session_id == session_id && result.sequence == 1,
            "#{result.session_id} ##{result.sequence}")
      check('submitted result processing_us covers work_ms', result.processing_us >= 300_000,
            "#{result.processing_us} us")
    end
  end
  calls += 1
  unknown = raises('get_result("no-such-ticket")', ThriftHandshake::UnknownTicket) do
    client.get_result('no-such-ticket', 0)
  end
  check('get_result("no-such-ticket") -> UnknownTicket', unknown.ticket == 'no-such-ticket', unknown.ticket) if unknown

  calls += 1
  sent = call('notify') { client.notify(ThriftHandshake::Event.new(name: 'ruby', payload: 'hi')); true }
  check('notify (oneway) sent', sent, 'sent') if sent

  calls += 6 # echo_types: one full value, four special doubles, one minimal value
  echo_types(client)

  calls += 1
  error = raises('fail("boom")', Thrift::ApplicationException) { client.fail('boom') }
  if error
    check('fail("boom") -> TApplicationException INTERNAL_ERROR (6)', error.type == 6,
          "type=#{error.type} message=#{error.message}")
  end
  calls += 1
  after = call('echo after fail') { client.echo('after') }
  check('echo works after fail on the same connection', after == 'after', after) if after

  calls += 1
  stats = call('stats') { client.stats }
  if stats
    check('stats notifications >= 1', stats.notifications >= 1, stats.notifications)
    check('stats calls["echo"] >= 2', stats.calls.fetch('echo', 0) >= 2, stats.calls['echo'])
    check('stats sessions_active >= 1', stats.sessions_active >= 1, stats.sessions_active)
  end

  farewell = call('goodbye') { client.goodbye }
  elapsed_ms = (Time.now - started) * 1000
  if farewell
    check('goodbye -> Farewell with the same session_id', farewell.session_id == session_id, farewell.session_id)
    check("Farewell.calls counts the session's calls (no hello/goodbye)", farewell.calls == calls,
          "#{farewell.calls}, expected #{calls}")
    check("Farewell.duration_ms within the session's time",
          farewell.duration_ms >= 0 && farewell.duration_ms <= elapsed_ms + 50,
          "#{farewell.duration_ms} ms of #{elapsed_ms.round}")
  end
  begin
    client.echo('after goodbye')
    check('a call after goodbye fails', false, 'answered')
  rescue StandardError => e
    check('a call after goodbye fails', true, describe(e))
  end
ensure
  transport&.close
end

def echo_types(client)
  data = (0..255).to_a.pack('C*')
  value = ThriftHandshake::AllTypes.new(
    id: 'ruby-1', flag: true, small: -128, short_number: 32_767, number: -2_147_483_648,
    big_number: 9_223_372_036_854_775_807, real: 0.1, text: '中文 😀', data: data,
    color: ThriftHandshake::Color::MAX_COLOR, maybe_number: -9_007_199_254_740_993,
    numbers: [1, -1, 2_147_483_647], tags: Set.new(%w[a b]), counts: { 'x' => -9_223_372_036_854_775_808 },
    shape: ThriftHandshake::Shape.new(:name, 'circle'),
    palette: { 1 => ThriftHandshake::Color::UNKNOWN_COLOR }, blobs: ["\x00\xff".b, ''.b]
  )
  back = call('echo_types') { client.echo_types(value) }
  return unless back

  check('echo_types returns an AllTypes', back.is_a?(ThriftHandshake::AllTypes), back.class)
  check('echo_types i8/i16/i32 limits', [back.small, back.short_number, back.number] == [-128, 32_767, -2_147_483_648],
        [back.small, back.short_number, back.number].join(' '))
  check('echo_types i64 limits', back.big_number == 9_223_372_036_854_775_807 &&
        back.maybe_number == -9_007_199_254_740_993 && back.counts['x'] == -9_223_372_036_854_775_808,
        "#{back.big_number} #{back.maybe_number} #{back.counts['x']}")
  check('echo_types double 0.1 bit for bit', [back.real].pack('G') == [0.1].pack('G'), back.real)
  check('echo_types text', back.text == '中文 😀', back.text)
  check('echo_types all 256 byte values', back.data.b == data, "#{back.data.bytesize} bytes")
  check('echo_types enum MAX_COLOR', back.color == 2_147_483_647, back.color)
  check('echo_types set', back.tags.is_a?(Set) && back.tags.to_a.sort == %w[a b], back.tags.to_a.inspect)
  check('echo_types list', back.numbers == [1, -1, 2_147_483_647], back.numbers.inspect)
  check('echo_types union', back.shape&.get_set_field == :name && back.shape.get_value == 'circle', back.shape.inspect)
  check('echo_types map<i32, Color>', back.palette == { 1 => -1 }, back.palette.inspect)
  check('echo_types list<binary>', back.blobs.map { |b| b.unpack1('H*') } == ['00ff', ''], back.blobs.inspect)
  check('echo_types IDL defaults come back', back.greeting == 'hello' && back.answer == 42,
        "#{back.greeting} #{back.answer}")
  special_doubles(client)
  minimal_value(client)
end

# NaN, the infinities and -0.0 come back bit for bit (Ruby's == says -0.0 == 0.0 and NaN != NaN).
def special_doubles(client)
  { 'NaN' => Float::NAN, '+inf' => Float::INFINITY, '-inf' => -Float::INFINITY, '-0.0' => -0.0 }.each do |name, real|
    back = call("echo_types real=#{name}") { client.echo_types(ThriftHandshake::AllTypes.new(id: "d-#{name}", real: real)) }
    next unless back

    bits = [back.real].pack('G').unpack1('H*')
    check("echo_types real=#{name} bit for bit", bits == [real].pack('G').unpack1('H*'), bits)
  end
end

# Only the required id: the optional fields come back unset and the IDL defaults come back.
def minimal_value(client)
  back = call('echo_types minimal') { client.echo_types(ThriftHandshake::AllTypes.new(id: 'min')) }
  return unless back

  check('echo_types minimal: optional fields unset', back.shape.nil? && back.note.nil? && back.maybe_number.nil?,
        [back.shape, back.note, back.maybe_number].inspect)
  check('echo_types minimal: IDL defaults', back.color == ThriftHandshake::Color::RED && back.greeting == 'hello' &&
        back.answer == 42, "#{back.color} #{back.greeting} #{back.answer}")
end

# Overloaded needs a full submit queue: a server with room for 2 unfinished requests refuses a third.
def overloaded_server
  client, transport = connect(OVERLOAD_PORT)
  return unless call('hello on the small-queue server') { client.hello(client_hello(1, 2)) }

  tickets = %w[q1 q2].filter_map do |id|
    ack = call("submit #{id} (fills the queue)") { client.submit(request(id, 'busy', 200)) }
    [id, ack.ticket] if ack
  end
  overloaded = raises('submit beyond the queue', ThriftHandshake::Overloaded) do
    client.submit(request('q3', 'busy', 200))
  end
  if overloaded
    check('submit beyond the queue -> Overloaded', overloaded.queued == 2 && overloaded.capacity == 2,
          "queued=#{overloaded.queued} capacity=#{overloaded.capacity}")
  end
  tickets.each do |id, ticket|
    result = call("get_result of #{id}") { client.get_result(ticket, 5000) }
    check("accepted submit #{id} still finishes", result.request_id == id, result.request_id) if result
  end
ensure
  transport&.close
end

begin
  first_connection
  second_connection
  overloaded_server if OVERLOAD_PORT.positive?
rescue StandardError => e
  check('flow completed', false, "#{describe(e)}\n#{e.backtrace.first(5).join("\n")}")
end
puts "#{$checks - $failures}/#{$checks} checks passed"
exit($failures.zero? && $checks.positive? ? 0 : 1)
