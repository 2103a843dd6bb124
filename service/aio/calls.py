"""How ``AsyncClient`` makes a call: its retries, its request written, its reply awaited.

A call checks its phase and arguments, starts (the interceptors' ``call_started``), is encoded and queued
on the connection (``ReplyStream.write``: the requests queued in one turn of the event loop leave
together), then awaits the future its reply completes (``replies``). On the way of a pipelined call this
is one coroutine and a handful of plain calls: each call in flight pays them, so they are kept few
(``bench.aio_client --count-calls``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from ..client_methods import PHASE_METHODS
from ..config import RetryPolicy
from ..errors import ConnectError, ConnectionBroken, ReconnectAsked, RequestEncodingError
from ..interceptors import ClientCall
from ..states import CLIENT_TRANSITIONS, ClientEvent, ClientPhase
from ..timing import Record
from .replies import ReplyPath

__all__ = ["CallPath"]

logger = logging.getLogger(__name__)

#: The phases a call may be made in; a call never moves the phase (checked here, so that a call does not
#: need the state machine's ``apply``).
_CALLABLE = frozenset(phase for phase, moves in CLIENT_TRANSITIONS.items() if ClientEvent.CALL in moves)
assert all(CLIENT_TRANSITIONS[phase][ClientEvent.CALL] is phase for phase in _CALLABLE)

#: A method's facts for its calls: whether it is oneway, and its argument check.
_Method = Tuple[bool, Callable[[Tuple[Any, ...]], None]]


class CallPath(ReplyPath):
    """The calls of ``AsyncClient`` (which provides the connection's steps; ``ReplyPath`` the replies)."""

    _hello_answer: "Optional[asyncio.Task[Any]]"
    _server_hello: Any
    _methods: Dict[str, _Method]
    _connect: Callable[[], Awaitable[Any]]  # a step of AsyncClient's a retry takes

    @property
    def _steps(self) -> asyncio.Lock:
        raise NotImplementedError


    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Calls ``method`` and returns its result (None for oneway/void), as ``Client.call``; any number
        of calls may be awaited at once (``asyncio.gather``). With ``options.retry``, a method it marks
        idempotent is retried as by ``Client``: a broken connection (or a server down or full) is reopened
        once for every call that found it so, with a new session."""
        if kwargs or method in PHASE_METHODS or self.options.retry is not None:
            return self._call(method, args, kwargs)
        return self._call_once(method, args)  # a coroutine less per call

    async def _call(self, method: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        args = self._arguments(method, args, kwargs)
        policy = None if self.options.retry is None else self._retry_policy(method)
        if policy is None:
            return await self._call_once(method, args)
        return await self._retried(method, args, policy)

    async def _retried(self, method: str, args: Tuple[Any, ...], policy: RetryPolicy) -> Any:
        delay = policy.backoff
        for attempt in range(1, policy.attempts + 1):
            try:
                await self._reopen_if_broken()
                return await self._call_once(method, args)
            except (ConnectionBroken, ConnectError) as error:
                if attempt == policy.attempts:
                    raise
                logger.info("%s failed (%s); retry %d of %d in %.2fs", method, error, attempt, policy.attempts - 1,
                            delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _reopen_if_broken(self) -> None:
        """A new connection and session if the client broke or was refused (never if its user closed it)."""
        if self.phase is ClientPhase.BROKEN or self._refused or self._steps.locked():  # locked: another call reopens
            async with self._steps:
                if self.phase is ClientPhase.BROKEN or self._refused:  # not already reopened by another call
                    self._close_stream()
                    self._refused = False
                    await self._connect()

    async def _call_once(self, method: str, args: Tuple[Any, ...]) -> Any:
        if self._resend or (isinstance(self._broken_by, ReconnectAsked) and self.options.reconnect_when_asked):
            await self._follow_reconnect()  # another call was answered "reconnect": one new connection for all
        for again in (False, True):  # again: the server asked to reconnect before running it
            try:
                if self._notice_unheard and self.phase is ClientPhase.BROKEN:  # as the threaded client reads it
                    self._notice_unheard = False
                    raise self._broken_as(method)
                if self._state.phase not in _CALLABLE:
                    raise self._phase_error(f"call {method}")
                if self._idle_limit is not None and time.perf_counter() - self._last_activity >= self._idle_limit:
                    self._check_idle(method)  # breaks the client
                call, future = self._send(method, args, "call", self.options.timeouts.call)
                stream = self._stream
                if future is None or self._hello_answer is not None or stream is None or stream.paused:
                    return await self._reply(call, future)
                try:  # what ``_reply`` does when there is nothing else to wait for (a coroutine less per call)
                    return await future
                except asyncio.CancelledError:
                    self._inflight.abandon(call.seqid)
                    raise
            except ReconnectAsked:  # not run (nor was anything written behind it): any method may be sent again
                if again or not self.options.reconnect_when_asked:
                    raise
                await self._follow_reconnect()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _follow_reconnect(self) -> None:
        """Connects again and says hello, once for every call that found the connection asked to
        reconnect, then sends again the one-way calls the server never read."""
        async with self._steps:
            if isinstance(self._broken_by, ReconnectAsked) and self.phase is ClientPhase.BROKEN:
                start, asked = time.perf_counter(), self._broken_by
                logger.info("%s; reconnecting", asked)
                self._close_stream()
                failure: Optional[BaseException] = None
                try:
                    await self._connect()
                except BaseException as error:  # the calls did not run; each learns why they cannot be sent
                    failure = error
                    raise
                finally:
                    self.timeline.add(Record("reconnect", self._peer, start - self._epoch, time.perf_counter() - start,
                                             error=None if failure is None else repr(failure)))
            resend, self._resend = self._resend, []
            for name, args in resend:
                self._send(name, args, "call", None, oneway=True)  # written, as when first sent

    async def _exchange(self, name: str, args: Tuple[Any, ...], phase: str, timeout: Optional[float]) -> Any:
        """Writes one request and awaits its reply (the heart of every phase)."""
        return await self._reply(*self._send(name, args, phase, timeout))

    def _send(self, name: str, args: Tuple[Any, ...], phase: str, timeout: Optional[float],
              oneway: Optional[bool] = None) -> Tuple[ClientCall, "Optional[asyncio.Future[Any]]"]:
        """Checks the arguments (nothing is written for a wrong one), starts the call for the interceptors,
        encodes and writes the request; for a two-way call (``oneway``: as the IDL says unless given)
        returns the future of its reply."""
        method = self._methods.get(name)
        if method is None:
            method = self._methods[name] = self._codec.method(name)
        method[1](args)
        if oneway is None:
            oneway = method[0]
        inflight = self._inflight
        hello = self._server_hello
        call = ClientCall(name, inflight.next_seqid(), method[0], self._peer, time.perf_counter(), phase,
                          hello and hello.session_id)
        if name != "hello":  # hello's argument carries the auth token
            call.args = args
        if inflight.started is not None:
            inflight.started(call)
        stream = self._stream
        if stream is None or stream.ended:  # a hook closed the connection, or a failure broke it
            refused = self._phase_error(f"call {name}")
            inflight.failed(call, refused)
            raise refused
        data = None
        fast = self._codec.fast_encode
        if fast is not None and call.traceparent is None:  # (tracing.ClientTracing sets it in call_started)
            data = fast(name, args, call.seqid)
        if data is None:
            try:
                data = self._codec.encode(name, args, call.seqid, call.traceparent)
            except Exception as error:  # nothing was written: the connection stays usable
                inflight.failed(call, error)
                raise RequestEncodingError(f"{name}: cannot encode the arguments: {error}") from error
        stream.write(data, not inflight.waiting)  # alone: no other call's reply to wait with
        if oneway:
            self._behind.written(name, args, inflight.waiting)
            inflight.written(call, len(data))
            future = None
        else:  # waits from now
            future = inflight.add(call, len(data), timeout)
        self._last_activity = time.perf_counter()
        return call, future

    async def _reply(self, call: ClientCall, future: "Optional[asyncio.Future[Any]]") -> Any:
        """The reply to a written request (None for oneway), after a pipelined hello's answer (whose
        refusal it raises); cancelling it drops the reply."""
        stream, hello = self._stream, self._hello_answer
        try:
            if stream is not None and stream.paused:
                await stream.drain()
            if hello is not None and call.method != "hello":
                try:
                    await asyncio.shield(hello)
                except Exception:
                    if future is not None and future.done() and not future.cancelled():
                        future.exception()  # failed with the connection: hello's refusal is what is raised
                    raise
            return None if future is None else await future
        except asyncio.CancelledError:
            self._inflight.abandon(call.seqid)
            raise

