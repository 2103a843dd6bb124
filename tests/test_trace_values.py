"""The trace table and summary print each number in its own column and label: T_s is the server's time,
network the round trip minus T_s, T_e the decode, R and S the throughputs (test_timeline.py checks that
the labels are there; this checks the values under them)."""

from __future__ import annotations

import re

import pytest

from thrift_handshake.demo import SERVER_TIMED
from thrift_handshake.timing import Record, Timeline, format_summary, format_table
from thrift_handshake_gen.ttypes import Request

#: A process() call as the client records it: 0.5 ms to send 63 bytes, 23.5 ms until the first reply
#: byte, 1 ms to read and decode 169 bytes; the server reports 20 ms of its own (T_s).
CALL = Record("call", "process", start=0.010, duration=0.025, bytes_out=63, bytes_in=169,
              send=0.0005, wait=0.0235, receive=0.001, server_us=20_000)
CONNECT = Record("connect", "127.0.0.1:9090", start=0.0001, duration=0.0002)


def rows(table: str) -> "list[list[str]]":
    """The table's cells, by the header's column starts (cells may be empty)."""
    lines = table.splitlines()
    header, body = lines[0], lines[2:]
    # columns are padded to their widest cell and joined by two spaces ("start ms" is one column)
    starts = [0] + [m.end() for m in re.finditer(r"  +", header)]
    cells = []
    for line in [header, *body]:
        padded = line.ljust(len(header) + 200)
        cells.append([padded[a:b].strip() for a, b in zip(starts, starts[1:] + [None])])
    return cells


def detail(row: "list[str]") -> "dict[str, str]":
    return dict(part.split("=", 1) for part in row[-1].split() if "=" in part)


def test_the_record_splits_the_round_trip():
    assert CALL.round_trip == pytest.approx(0.024)
    assert CALL.network == pytest.approx(0.004)  # round trip 24 ms - T_s 20 ms
    assert CALL.request_throughput == pytest.approx(63 / 0.0005)
    assert CALL.response_throughput == pytest.approx(169 / 0.001)
    assert CALL.ok and not CALL._replace(error="boom").ok


def test_network_is_never_negative_and_unknown_without_the_server_time():
    slow_server = CALL._replace(server_us=30_000)  # T_s longer than the measured round trip (clock skew)
    assert slow_server.network == 0.0
    assert CALL._replace(server_us=None).network is None
    assert CALL._replace(wait=None).round_trip is None and CALL._replace(wait=None).network is None
    assert CALL._replace(send=None).round_trip is None


def test_throughputs_need_bytes_and_time():
    assert CALL._replace(bytes_out=0).request_throughput is None
    assert CALL._replace(send=0.0).request_throughput is None
    assert CALL._replace(send=None).request_throughput is None
    assert CALL._replace(bytes_in=0).response_throughput is None
    assert CALL._replace(receive=None).response_throughput is None


def test_table_puts_each_number_under_its_label():
    table = rows(format_table([CONNECT, CALL]))
    assert table[0] == ["phase", "name", "start ms", "ms", "bytes out", "bytes in", "detail"]
    assert table[1][:6] == ["connect", "127.0.0.1:9090", "0.100", "0.200", "0", "0"]
    request, response = table[2], table[3]
    assert request[:6] == ["request", "process", "10.000", "0.500", "63", ""]
    assert detail(request) == {"R": "0.13"} and request[-1] == "R=0.13 MB/s"
    assert response[:6] == ["response", "process", "10.500", "24.500", "", "169"]  # starts after the send
    assert detail(response) == {"wait": "23.500", "T_e": "1.000", "T_s": "20.000", "network": "4.000",
                                "S": "0.17"}
    assert response[-1].index("wait=") < response[-1].index("T_e=") < response[-1].index("T_s=") \
        < response[-1].index("network=") < response[-1].index("S=")


def test_table_rows_for_calls_without_server_time_errors_or_reply():
    failed = Record("call", "fail", start=0.002, duration=0.001, bytes_out=20, bytes_in=30, send=0.0002,
                    wait=0.0005, receive=0.0003, error="RemoteApplicationError('x')")
    oneway = Record("call", "notify", start=0.003, duration=0.0001, bytes_out=40, send=0.0001)
    closed = Record("disconnect", "close", start=0.004, duration=0.00005, error="reset")
    timed_out = Record("call", "echo", start=0.005, duration=0.2, error="CallTimeout('echo')")  # nothing measured
    table = rows(format_table([failed, oneway, closed, timed_out]))
    assert detail(table[2]) == {"wait": "0.500", "T_e": "0.300", "S": "0.10"}
    assert table[2][-1].endswith("RemoteApplicationError('x')")
    assert table[3][:6] == ["request", "notify", "3.000", "0.100", "40", ""]
    assert table[4][:6] == ["response", "notify", "3.100", "0.000", "", "0"] and table[4][-1] == ""
    assert table[5] == ["disconnect", "close", "4.000", "0.050", "0", "0", "reset"]
    assert table[6][:6] == ["request", "echo", "5.000", "", "0", ""]
    assert table[7] == ["response", "echo", "5.000", "0.000", "", "0", "CallTimeout('echo')"]


def test_throughputs_are_printed_in_megabytes_per_second():
    # exact binary values at a rounding edge: 2.125 and 2.375 MB/s print as 2.12 and 2.38 (half to even)
    call = Record("call", "echo", start=0.0, duration=1.0, bytes_out=1_062_500, bytes_in=1_187_500, send=0.5,
                  wait=0.0, receive=0.5)
    table = rows(format_table([call]))
    assert table[1][-1] == "R=2.12 MB/s"
    assert detail(table[2])["S"] == "2.38"


def test_summary_adds_up_the_calls_and_splits_each_server_timed_one():
    other = Record("call", "echo", start=0.05, duration=0.002, bytes_out=37, bytes_in=31, send=0.0005,
                   wait=0.001, receive=0.0005)
    failed = other._replace(name="fail", error="boom", bytes_out=1000)
    instant = other._replace(name="ping", bytes_out=0, bytes_in=0, send=0.0, wait=0.0, receive=0.0)
    hello = other._replace(phase="handshake", name="hello", bytes_out=5000)  # a phase, not a call
    summary = format_summary([CONNECT, hello, other, instant, CALL, failed]).splitlines()
    assert summary[0] == "calls: 3, 100 bytes out, 200 bytes in"
    assert summary[1].endswith("= 100 B / 1.000 ms = 0.10 MB/s")
    assert summary[2].endswith("= 200 B / 1.500 ms = 0.13 MB/s")
    assert summary[3] == "process: call time 25.000 ms = T_s 20.000 ms + network 4.000 ms + T_e 1.000 ms"
    assert len(summary) == 4, "only calls with a server time get a split"
    assert format_summary([CONNECT]) == "no calls recorded"


def test_a_real_call_prints_its_own_numbers(connect):
    client = connect(server_timed_methods=SERVER_TIMED)
    client.process(Request(request_id="v", payload="x" * 500, work_ms=20))
    record = client.timeline.calls("process")[-1]
    response = [row for row in rows(format_table(client.timeline)) if row[:2] == ["response", "process"]][0]
    values = detail(response)
    assert float(values["T_s"]) == pytest.approx(record.server_us / 1e3, abs=0.001)
    assert float(values["network"]) == pytest.approx(record.network * 1e3, abs=0.001)
    assert float(values["T_e"]) == pytest.approx(record.receive * 1e3, abs=0.001)
    assert float(values["wait"]) == pytest.approx(record.wait * 1e3, abs=0.001)
    assert float(values["T_s"]) >= 20.0  # the work itself, as the server measured it
    assert int(response[5]) == record.bytes_in


def test_timeline_keeps_order_filters_calls_and_drops_the_oldest():
    timeline = Timeline(maxlen=4)
    hello = CALL._replace(phase="handshake", name="hello")
    for record in [CONNECT, hello, CALL, CALL._replace(name="add"), CALL._replace(name="echo")]:
        timeline.add(record)
    assert len(timeline) == 4 and timeline[0] is hello
    assert [r.name for r in timeline.calls()] == ["process", "add", "echo"]
    assert [r.name for r in timeline.calls("echo")] == ["echo"]
    assert [r.name for r in timeline] == ["hello", "process", "add", "echo"]


def test_a_timeline_keeps_the_last_1000_records_by_default():
    timeline = Timeline()
    for n in range(1001):
        timeline.add(CALL._replace(start=float(n)))
    assert len(timeline) == 1000 and timeline[0].start == 1.0
