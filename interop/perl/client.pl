#!/usr/bin/env perl
# The contract's whole flow from Perl (Debian's libthrift-perl 0.17): handshake, echo, process, submit and
# get_result, notify, echo_types, an undeclared error, stats, goodbye, and Overloaded on a second server.
# Usage: perl -I GEN interop/perl/client.pl [HOST PORT]   (GEN: `thrift -r --gen perl -out GEN idl/handshake.thrift`)
# HANDSHAKE_HOST/HANDSHAKE_PORT, HANDSHAKE_OVERLOAD_PORT (a server with room for 2 submits),
# HANDSHAKE_PROTOCOL=binary (Perl's Thrift has no compact) and HANDSHAKE_TRANSPORT=buffered|framed.
# Prints one line per check (`ok   name: detail` or `FAIL name: detail`), then `N/M checks passed`.
use strict;
use warnings;
use utf8;
use Digest::SHA qw(sha256_hex);
use Encode qw(encode_utf8 decode_utf8);
use Time::HiRes qw(time);

BEGIN {
  # The generated HandshakeServiceRest (an HTTP helper this client does not use) declares `my $request` twice
  # because process() and submit() have a parameter named `request`; the code is right, the warning is noise.
  $SIG{__WARN__} = sub { warn @_ unless $_[0] =~ /"my" variable \$request masks earlier declaration/ };
}
use Thrift;
use Thrift::Socket;
use Thrift::BufferedTransport;
use Thrift::FramedTransport;
use Thrift::BinaryProtocol;
use ThriftHandshake::HandshakeService;
use ThriftHandshake::Types;
use ThriftHandshake::Session::Types;
BEGIN { $SIG{__WARN__} = 'DEFAULT' }

binmode(STDOUT, ':encoding(UTF-8)');
$| = 1;

my $host = $ARGV[0] // $ENV{HANDSHAKE_HOST} // '127.0.0.1';
my $port = $ARGV[1] // $ENV{HANDSHAKE_PORT} // 9090;
my $overload_port = $ENV{HANDSHAKE_OVERLOAD_PORT} || 0;
my $protocol_name = $ENV{HANDSHAKE_PROTOCOL} || 'binary';
my $transport_name = $ENV{HANDSHAKE_TRANSPORT} || 'buffered';

print "perl $^V, thrift $Thrift::VERSION, server $host:$port, wire $protocol_name+$transport_name\n";
if ($protocol_name ne 'binary') {
  print "Perl's Thrift runtime ($Thrift::VERSION) has no $protocol_name protocol\n";
  exit 2;
}
if ($transport_name eq 'header') {
  print "Perl's Thrift runtime ($Thrift::VERSION) has no THeader\n";
  exit 2;
}
if ($transport_name ne 'buffered' && $transport_name ne 'framed') {
  print "unknown HANDSHAKE_TRANSPORT $transport_name (buffered, framed)\n";
  exit 2;
}

my ($checks, $failures) = (0, 0);

sub check {
  my ($name, $ok, $detail) = @_;
  $checks++;
  $failures++ unless $ok;
  printf "%s %s: %s\n", ($ok ? 'ok  ' : 'FAIL'), $name, $detail // '';
  return $ok;
}

# call(NAME, CODE): the value CODE returns, or undef after a FAIL line naming what was raised instead
sub call {
  my ($name, $code) = @_;
  my $value = eval { $code->() };
  return $value unless $@;
  check($name, 0, 'raised ' . describe($@));
  return undef;
}

# raises(NAME, CLASS, CODE): the exception of CLASS that CODE raises, or undef after a FAIL line
sub raises {
  my ($name, $class, $code) = @_;
  my $value = eval { $code->(); 1 };
  if ($value) {
    check($name, 0, "returned instead of raising $class");
    return undef;
  }
  return $@ if ref($@) && $@->isa($class);
  check($name, 0, "raised " . describe($@) . " instead of $class");
  return undef;
}

sub describe {
  my ($error) = @_;
  return "$error" unless ref $error;
  return ref($error) . ' code=' . ($error->{code} // '?') . ' ' . ($error->{message} // '')
    if $error->isa('Thrift::TException');
  return ref($error) . ' ' . join(' ', map { "$_=" . ($error->{$_} // 'undef') } sort keys %$error);
}

sub connect_to {
  my ($port) = @_;
  my $socket = Thrift::Socket->new($host, $port);
  $socket->setSendTimeout(10000);
  $socket->setRecvTimeout(10000);  # get_result waits up to 3 s; the default is 750 ms
  my $transport = $transport_name eq 'framed' ? Thrift::FramedTransport->new($socket)
                                              : Thrift::BufferedTransport->new($socket);
  my $client = ThriftHandshake::HandshakeServiceClient->new(Thrift::BinaryProtocol->new($transport));
  $transport->open();
  return ($client, $transport);
}

sub client_hello {
  my ($min, $max, @features) = @_;
  # a set is written from an array ref (and read back as a hash ref)
  return ThriftHandshake::Session::ClientHello->new({client_name => 'perl-interop', language => 'perl',
    min_version => $min, max_version => $max, features => [@features]});
}

sub request {
  my ($id, $payload, $work_ms) = @_;
  return ThriftHandshake::Request->new({request_id => $id, payload => encode_utf8($payload), work_ms => $work_ms});
}

sub first_connection {
  my ($client, $transport) = connect_to($port);
  check('ping before hello', defined(eval { $client->ping(); 1 }), $@ ? describe($@) : 'returned');
  my $required = raises('echo before hello', 'ThriftHandshake::Session::HandshakeRequired',
                        sub { $client->echo('too early') });
  check('echo before hello', 1, 'HandshakeRequired: ' . $required->{message}) if $required;
  check('connection usable after HandshakeRequired', defined(eval { $client->ping(); 1 }),
        $@ ? describe($@) : 'returned');

  my $hello = call('hello 1..1', sub { $client->hello(client_hello(1, 1)) });
  if ($hello) {
    check('hello 1..1 -> version 1', $hello->{version} == 1, "version=$hello->{version}");
    check('hello 1..1 session_id non-empty', length($hello->{session_id} // '') > 0, $hello->{session_id});
  }
  my $rejected = raises('second hello', 'ThriftHandshake::Session::HandshakeRejected',
                        sub { $client->hello(client_hello(1, 2)) });
  if ($rejected) {
    check('second hello -> HandshakeRejected', length($rejected->{reason} // '') > 0, $rejected->{reason});
    check("HandshakeRejected carries the server's versions 1..2",
          $rejected->{min_version} == 1 && $rejected->{max_version} == 2,
          "$rejected->{min_version}..$rejected->{max_version}");
  }
  my $echo = call('echo after a rejected second hello', sub { $client->echo('still here') });
  check('session survives a rejected second hello', ($echo // '') eq 'still here', $echo) if defined $echo;
  $transport->close();
}

sub second_connection {
  my ($client, $transport) = connect_to($port);
  my $calls = 0;  # calls after hello, not counting goodbye: what Farewell.calls must report
  my $started = time;
  my $hello = call('hello 1..2', sub { $client->hello(client_hello(1, 2, 'submit', 'notify', 'no-such-feature')) });
  return $transport->close() unless $hello;
  my $session_id = $hello->{session_id};
  check('hello 1..2 -> version 2', $hello->{version} == 2, "version=$hello->{version}");
  check('hello 1..2 session_id non-empty', length($session_id // '') > 0, $session_id);
  my @features = sort keys %{$hello->{features} // {}};
  check("hello features are a subset of the client's",
        !grep({ $_ ne 'submit' && $_ ne 'notify' } @features), join(',', @features));
  # i64 arrive as decimal strings
  check("hello server_time_ms is the server's wall clock", abs($hello->{server_time_ms} / 1000 - time) < 60,
        "$hello->{server_time_ms}");
  check('hello idle_timeout_ms and max_message_bytes positive',
        $hello->{idle_timeout_ms} > 0 && $hello->{max_message_bytes} > 0,
        "idle_timeout_ms=$hello->{idle_timeout_ms} max_message_bytes=$hello->{max_message_bytes}");

  my $text = "请求数据 🚀";
  $calls++;
  my $echo = call('echo', sub { $client->echo(encode_utf8($text)) });
  check("echo(\"$text\") round-trips (strings arrive as UTF-8 bytes)", decode_utf8($echo) eq $text,
        decode_utf8($echo)) if defined $echo;

  $calls++;
  my $response = call('process n1', sub { $client->process(request('n1', 'abc', 0)) });
  if ($response) {
    check('process digest', $response->{digest} eq sha256_hex('abc'), $response->{digest});
    check('process sequence 1', $response->{sequence} eq '1', $response->{sequence});
    check('process session_id matches hello', $response->{session_id} eq $session_id, $response->{session_id});
    check('process request_id echoed', $response->{request_id} eq 'n1', $response->{request_id});
  }
  $calls++;
  my $invalid = raises('process with empty request_id', 'ThriftHandshake::InvalidRequest',
                       sub { $client->process(request('', 'abc', 0)) });
  check('process with empty request_id -> InvalidRequest(field=request_id)', $invalid->{field} eq 'request_id',
        "field=$invalid->{field} message=$invalid->{message}") if $invalid;

  my $payload = "submitted 数据";
  $calls++;
  my $submitted_at = time;
  my $ack = call('submit', sub { $client->submit(request('s1', $payload, 300)) });
  my $submit_ms = (time - $submitted_at) * 1000;
  if ($ack) {
    check('submit(work_ms=300) returns before the work is done', $submit_ms < 300, sprintf('%.0f ms', $submit_ms));
    check('submit ack has a ticket', length($ack->{ticket} // '') > 0, $ack->{ticket});
    check('submit ack request_id', $ack->{request_id} eq 's1', $ack->{request_id});
    $calls++;
    my $not_ready = raises('get_result(ticket, 0)', 'ThriftHandshake::NotReady',
                           sub { $client->get_result($ack->{ticket}, 0) });
    check('get_result(ticket, 0) -> NotReady', $not_ready->{ticket} eq $ack->{ticket}, $not_ready->{message})
      if $not_ready;
    $calls++;
    my $result = call('get_result(ticket, 3000)', sub { $client->get_result($ack->{ticket}, 3000) });
    if ($result) {
      check('get_result(ticket, 3000) -> result', $result->{digest} eq sha256_hex(encode_utf8($payload)),
            $result->{digest});
      check('submitted result session_id and sequence', $result->{session_id} eq $session_id
            && $result->{sequence} eq '1', "$result->{session_id} #$result->{sequence}");
      check('submitted result processing_us covers work_ms', $result->{processing_us} >= 300000,
            "$result->{processing_us} us");
    }
  }
  $calls++;
  my $unknown = raises('get_result("no-such-ticket")', 'ThriftHandshake::UnknownTicket',
                       sub { $client->get_result('no-such-ticket', 0) });
  check('get_result("no-such-ticket") -> UnknownTicket', $unknown->{ticket} eq 'no-such-ticket', $unknown->{ticket})
    if $unknown;

  $calls++;
  my $sent = eval { $client->notify(ThriftHandshake::Event->new({name => 'perl', payload => 'hi'})); 1 };
  check('notify (oneway) sent', $sent, $sent ? 'sent' : describe($@));

  $calls += 6;  # echo_types: one full value, four special doubles, one minimal value
  echo_types($client);

  $calls++;
  my $error = raises('fail("boom")', 'Thrift::TApplicationException', sub { $client->fail('boom') });
  check('fail("boom") -> TApplicationException INTERNAL_ERROR (6)', $error->{code} == 6,
        "code=$error->{code} message=$error->{message}") if $error;
  $calls++;
  my $after = call('echo after fail', sub { $client->echo('after') });
  check('echo works after fail on the same connection', ($after // '') eq 'after', $after) if defined $after;

  $calls++;
  my $stats = call('stats', sub { $client->stats() });
  if ($stats) {
    check('stats notifications >= 1', $stats->{notifications} >= 1, $stats->{notifications});
    check('stats calls["echo"] >= 2', ($stats->{calls}{echo} // 0) >= 2, $stats->{calls}{echo} // 'missing');
    check('stats sessions_active >= 1', $stats->{sessions_active} >= 1, $stats->{sessions_active});
  }

  my $farewell = call('goodbye', sub { $client->goodbye() });
  my $elapsed_ms = (time - $started) * 1000;
  if ($farewell) {
    check('goodbye -> Farewell with the same session_id', $farewell->{session_id} eq $session_id,
          $farewell->{session_id});
    check("Farewell.calls counts the session's calls (no hello/goodbye)", $farewell->{calls} == $calls,
          "$farewell->{calls}, expected $calls");
    check("Farewell.duration_ms within the session's time",
          $farewell->{duration_ms} >= 0 && $farewell->{duration_ms} <= $elapsed_ms + 50,
          "$farewell->{duration_ms} ms of " . sprintf('%.0f', $elapsed_ms));
  }
  my $closed = !eval { $client->echo('after goodbye'); 1 };
  check('a call after goodbye fails', $closed, $closed ? describe($@) : 'answered');
  $transport->close();
}

sub echo_types {
  my ($client) = @_;
  my $data = join('', map { chr } 0 .. 255);
  my $value = ThriftHandshake::AllTypes->new({
    id => 'perl-1', flag => 1, small => -128, short_number => 32767, number => -2147483648,
    big_number => '9223372036854775807', real => 0.1, text => encode_utf8('中文 😀'), data => $data,
    color => ThriftHandshake::Color::MAX_COLOR, maybe_number => '-9007199254740993',
    numbers => [1, -1, 2147483647], tags => ['a', 'b'], counts => {'x' => '-9223372036854775808'},
    shape => ThriftHandshake::Shape->new({name => 'circle'}),
    palette => {1 => ThriftHandshake::Color::UNKNOWN_COLOR}, blobs => ["\x00\xff", ''],
  });
  my $back = call('echo_types', sub { $client->echo_types($value) });
  return unless $back;
  check('echo_types returns an AllTypes', ref($back) eq 'ThriftHandshake::AllTypes', ref($back));
  check('echo_types i8/i16/i32 limits', $back->{small} == -128 && $back->{short_number} == 32767
        && $back->{number} == -2147483648, "$back->{small} $back->{short_number} $back->{number}");
  check('echo_types i64 limits (as decimal strings)', $back->{big_number} eq '9223372036854775807'
        && $back->{maybe_number} eq '-9007199254740993' && $back->{counts}{x} eq '-9223372036854775808',
        "$back->{big_number} $back->{maybe_number} $back->{counts}{x}");
  check('echo_types double 0.1 bit for bit', pack('d>', $back->{real}) eq pack('d>', 0.1), $back->{real});
  check('echo_types text', decode_utf8($back->{text}) eq '中文 😀', decode_utf8($back->{text}));
  check('echo_types all 256 byte values', $back->{data} eq $data, length($back->{data}) . ' bytes');
  check('echo_types enum MAX_COLOR', $back->{color} == 2147483647, $back->{color});
  check('echo_types set read as a hash ref', ref($back->{tags}) eq 'HASH'
        && join(',', sort keys %{$back->{tags}}) eq 'a,b', join(',', sort keys %{$back->{tags} // {}}));
  check('echo_types list', join(',', @{$back->{numbers}}) eq '1,-1,2147483647', join(',', @{$back->{numbers}}));
  check('echo_types union', $back->{shape} && ($back->{shape}{name} // '') eq 'circle', $back->{shape}{name});
  check('echo_types map<i32, Color>', ($back->{palette}{1} // 0) == -1, $back->{palette}{1});
  check('echo_types list<binary>', join('|', map { unpack('H*', $_) } @{$back->{blobs}}) eq '00ff|',
        join('|', map { unpack('H*', $_) } @{$back->{blobs}}));
  check('echo_types IDL defaults come back', $back->{greeting} eq 'hello' && $back->{answer} == 42,
        "$back->{greeting} $back->{answer}");
  special_doubles($client);
  minimal_value($client);
}

# NaN, the infinities and -0.0 come back bit for bit (Perl's == says -0.0 == 0.0 and NaN != NaN).
sub special_doubles {
  my ($client) = @_;
  my @cases = map { [$_->[0], unpack('d>', pack('H*', $_->[1]))] }
    (['NaN', '7ff8000000000000'], ['+inf', '7ff0000000000000'], ['-inf', 'fff0000000000000'],
     ['-0.0', '8000000000000000']);
  for my $case (@cases) {
    my ($name, $real) = @$case;
    my $back = call("echo_types real=$name",
                    sub { $client->echo_types(ThriftHandshake::AllTypes->new({id => "d-$name", real => $real})) });
    next unless $back;
    my $bits = unpack('H*', pack('d>', $back->{real}));
    check("echo_types real=$name bit for bit", $bits eq unpack('H*', pack('d>', $real)), $bits);
  }
}

# Only the required id: the optional fields come back unset and the IDL defaults come back.
sub minimal_value {
  my ($client) = @_;
  my $back = call('echo_types minimal', sub { $client->echo_types(ThriftHandshake::AllTypes->new({id => 'min'})) });
  return unless $back;
  check('echo_types minimal: optional fields unset', !defined($back->{shape}) && !defined($back->{note})
        && !defined($back->{maybe_number}), join(' ', map { $_ // 'undef' } @$back{qw(shape note maybe_number)}));
  check('echo_types minimal: IDL defaults', $back->{color} == ThriftHandshake::Color::RED
        && $back->{greeting} eq 'hello' && $back->{answer} == 42, "$back->{color} $back->{greeting} $back->{answer}");
}

# Overloaded needs a full submit queue: a server with room for 2 unfinished requests refuses a third.
sub overloaded_server {
  my ($client, $transport) = connect_to($overload_port);
  return $transport->close() unless call('hello on the small-queue server', sub { $client->hello(client_hello(1, 2)) });
  my @tickets;
  for my $id ('q1', 'q2') {
    my $ack = call("submit $id (fills the queue)", sub { $client->submit(request($id, 'busy', 200)) });
    push @tickets, [$id, $ack->{ticket}] if $ack;
  }
  my $overloaded = raises('submit beyond the queue', 'ThriftHandshake::Overloaded',
                          sub { $client->submit(request('q3', 'busy', 200)) });
  check('submit beyond the queue -> Overloaded', $overloaded->{queued} == 2 && $overloaded->{capacity} == 2,
        "queued=$overloaded->{queued} capacity=$overloaded->{capacity}") if $overloaded;
  for my $ticket (@tickets) {
    my $result = call("get_result of $ticket->[0]", sub { $client->get_result($ticket->[1], 5000) });
    check("accepted submit $ticket->[0] still finishes", $result->{request_id} eq $ticket->[0], $result->{request_id})
      if $result;
  }
  $transport->close();
}

eval {
  first_connection();
  second_connection();
  overloaded_server() if $overload_port;
  1;
} or check('flow completed', 0, describe($@));
print "" . ($checks - $failures) . "/$checks checks passed\n";
exit($failures == 0 && $checks > 0 ? 0 : 1);
