"""Thrift over HTTP on the asyncio server: the threaded server's tests of it run here unchanged (the
``server`` and ``start_server`` fixtures of tests/on_asyncio.py start the asyncio server), served by the
same sans-IO request parser and HTTP transport over memory."""

from __future__ import annotations

from on_asyncio import server, start_server  # noqa: F401 (fixtures: the threaded tests on the asyncio server)
from test_async_server import event_loop_thread, loop_factory, start_async  # noqa: F401 (fixtures)
from test_http_server import (  # noqa: F401 (run here against the asyncio server)
    test_a_browser_page_does_hello_then_calls_on_one_keep_alive_connection,
    test_a_client_speaking_http_to_a_port_serving_one_wire_learns_why,
    test_a_client_uploading_a_body_over_the_limit_reads_its_413, test_a_get_is_told_what_the_port_serves,
    test_a_json_request_cut_short_is_answered_with_protocol_error, test_a_json_string_over_max_message_bytes_is_refused,
    test_a_one_way_call_is_answered_before_it_runs, test_a_pipelined_hello_over_http_reads_both_replies_in_order,
    test_a_slow_request_is_cut_at_request_timeout, test_a_traceparent_header_gives_each_call_its_trace,
    test_another_origin_is_refused, test_any_origin_when_configured, test_apache_thttpclient_calls_the_one_port,
    test_expect_100_continue_is_answered_before_the_body, test_https_on_the_tls_port,
    test_malformed_requests_get_their_status_and_others_are_served, test_pipelined_requests_are_answered_in_order,
    test_the_cors_preflight_of_an_allowed_origin, test_this_clients_http_keeps_its_session_on_one_connection,
    test_this_clients_trace_context_rides_each_http_request, test_without_hello_the_next_post_is_refused_as_on_any_dialect)
