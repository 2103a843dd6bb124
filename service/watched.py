"""A handler watched for the interceptor chain: each service method fills in the ``ServerCall`` being
served (its arguments, timing, outcome, result or error). The gate serves through these copies only
while some interceptor ``observes_handler``; otherwise it calls the handler directly."""

from __future__ import annotations

import copy
import inspect
from contextvars import ContextVar
from time import perf_counter
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from thrift.Thrift import TProcessor

from .contract import MethodInfo
from .interceptors import InterceptorChain, Outcome, ServerCall

__all__ = ["serve_watched", "watched_class", "watched_processor"]

_OK = Outcome.OK  # read for every watched call: a module name is found faster than an enum member

#: The call being served, for the wrapped handler to fill in (a context variable: an asyncio host's
#: pool threads get it with the call's context, and its coroutines each have their own).
_current: ContextVar[Optional[ServerCall]] = ContextVar("thrift_handshake_call", default=None)


def watched_processor(processor: TProcessor, methods: Dict[str, MethodInfo], chain: InterceptorChain) -> TProcessor:
    """A copy of ``processor`` whose handler runs inside ``chain``: each service method of the handler is
    wrapped to announce the call with its arguments, time it and record its result or error."""
    handler = processor._handler  # every generated Processor keeps its handler here
    wrapped = copy.copy(processor)
    wrapped._handler = _InterceptedHandler(handler, {
        name: _wrap(getattr(handler, name), name, info.declared_exceptions, chain)
        for name, info in methods.items() if callable(getattr(handler, name, None))})
    return wrapped


def watched_class(cls: type, methods: Dict[str, MethodInfo], chain: InterceptorChain,
                  hidden_args: Tuple[str, ...], prepare: Optional[Callable[[ServerCall, Tuple[Any, ...]], None]] = None
                  ) -> type:
    """A subclass of ``cls`` (made once per gate) whose service methods run inside ``chain``;
    ``hidden_args``: methods whose arguments interceptors do not see (hello's carry the auth token);
    ``prepare(call, args)`` runs before the chain hears of those (to take what the call may show)."""
    return type(f"Intercepted{cls.__name__}", (cls,), {
        name: _wrap(vars(cls)[name], name, methods[name].declared_exceptions, chain, name in hidden_args,
                    prepare if name in hidden_args else None)
        for name in vars(cls) if name in methods})


class _InterceptedHandler:
    """Stands in for a handler: its service methods wrapped, anything else the handler's own."""

    def __init__(self, handler: Any, methods: Dict[str, Callable[..., Any]]) -> None:
        self.__dict__.update(methods)
        self._handler = handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)


def _wrap(method: Callable[..., Any], name: str, declared: Tuple[type, ...], chain: InterceptorChain,
          hide_args: bool = False, prepare: Optional[Callable[[ServerCall, Tuple[Any, ...]], None]] = None
          ) -> Callable[..., Any]:
    """``method`` (bound, or a function whose first argument is its object) filling in the current
    ``ServerCall`` around the call: the arguments (those after ``skip``), timing, the outcome. A
    coroutine function's call returns an awaitable that fills the call in once it is done."""
    skip = 0 if hasattr(method, "__self__") else 1

    def begin(args: Tuple[Any, ...]) -> ServerCall:
        call = _current.get()
        if not hide_args:
            call.args = args[skip:] if skip else args
        elif prepare is not None:
            prepare(call, args[skip:] if skip else args)
        call.announced = True
        chain.started(call)
        return call

    def failed(call: ServerCall, begun: float, error: BaseException) -> None:
        call.handler_seconds = perf_counter() - begun
        call.outcome = Outcome.DECLARED_ERROR if isinstance(error, declared) else Outcome.FAILED
        call.error = _without_traceback(error) if hide_args else error

    def returned(call: ServerCall, begun: float, result: Any) -> Any:
        call.handler_seconds = perf_counter() - begun
        call.outcome, call.result = _OK, result
        return result

    if inspect.iscoroutinefunction(method):
        async def finish(call: ServerCall, begun: float, awaitable: Awaitable[Any]) -> Any:
            try:
                result = await awaitable
            except BaseException as error:
                failed(call, begun, error)
                raise
            return returned(call, begun, result)

        def intercepted(*args: Any) -> Any:
            call = begin(args)
            return finish(call, perf_counter(), method(*args))
    else:
        def intercepted(*args: Any) -> Any:
            if _current.get() is None:  # served quietly, nothing observes it (``gate._serve_session_quietly``)
                return method(*args)
            call = begin(args)
            begun = perf_counter()
            try:
                result = method(*args)
            except BaseException as error:
                failed(call, begun, error)
                raise
            return returned(call, begun, result)

    intercepted.__name__ = name
    return intercepted


def _without_traceback(error: BaseException) -> BaseException:
    """A copy of ``error`` without its traceback: the frames of a method whose arguments are hidden hold
    them (hello's ClientHello and its auth token), and error trackers record frames' variables."""
    spec = getattr(type(error), "thrift_spec", None)
    try:
        if spec is not None:  # a generated exception: immutable, made again from its fields
            clone = type(error)(**{field[2]: getattr(error, field[2], None) for field in spec if field})
        else:
            clone = copy.copy(error)
    except Exception:  # an exception that cannot be copied: its type and text still say what happened
        return RuntimeError(f"{type(error).__name__}: {error}")
    return clone.with_traceback(None)


def serve_watched(call: ServerCall, serve: Callable[..., Any], processor: TProcessor, *protocols: Any) -> Any:
    """``serve(processor, seqid, iprot, oprot)`` with ``processor`` a watched copy filling in ``call``."""
    token = _current.set(call)
    try:
        return serve(processor, call.seqid, *protocols)
    finally:
        _current.reset(token)  # a pool thread must not keep the last call's arguments and result alive
