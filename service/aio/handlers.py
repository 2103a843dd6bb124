"""A generated processor whose service methods return awaitables, for the asyncio server's gate.

The generated ``Processor`` calls its handler and writes the reply in one go, so it cannot await. Here
each service method of a copy of it is replaced: a coroutine handler's method (``async def``) is served
from the generated ``<method>_args`` / ``<method>_result`` classes on the event loop, without a thread;
any other method runs the generated code unchanged on a bounded pool of threads. The gate
(``SessionProcessor.process_async``) awaits either, inside the same admission and interceptor chain.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import itertools
import logging
import threading
from types import ModuleType
from typing import Any, Awaitable, Callable, Collection, List, Optional, Tuple

from thrift.Thrift import TApplicationException, TMessageType, TProcessor, TType
from thrift.transport.TTransport import TTransportException

from ..contract import MethodInfo, coroutine_methods, describe_service, generated_class
from ..pool import WorkerPool
from ..session import drop_oneway, take_dropped_oneway

__all__ = ["awaiting_processor", "pool_offload", "Offload"]

#: Runs ``serve(*arguments)`` off the loop; the awaitable ends when it has.
Offload = Callable[..., Awaitable[None]]


def awaiting_processor(processor: TProcessor, service: ModuleType, skip: Collection[str],
                       offload: Offload) -> TProcessor:
    """A copy of ``processor`` (``service``'s generated Processor) whose service methods (all but
    ``skip``) return awaitables: a coroutine handler's served on the loop, any other's generated code run
    through ``offload``."""
    methods = describe_service(service)
    served = copy.copy(processor)
    served._processMap = dict(processor._processMap)
    for name in coroutine_methods(processor._handler, processor._processMap) - set(skip):
        served._processMap[name] = _coroutine_serving(name, service, methods[name])
    for name, serve in processor._processMap.items():
        if name not in skip and served._processMap[name] is serve:
            served._processMap[name] = _offloaded(serve, offload)
    return served


def _offloaded(serve: Callable[..., None], offload: Offload) -> Callable[..., Awaitable[None]]:
    def offloaded(processor: TProcessor, seqid: int, iprot: Any, oprot: Any) -> Awaitable[None]:
        return offload(serve, processor, seqid, iprot, oprot)
    return offloaded


class _Completions:
    """Calls finished on pool threads, handed back to one event loop: the loop is woken once for all
    those that finish before it runs them (a wake-up is a system call on each side)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._done: List[Tuple[Callable[..., None], Any, Any]] = []
        self._woken = False

    def put(self, settle: Callable[..., None], reason: Any, error: Any) -> None:
        """On a pool thread: ``settle(reason, error)`` is to run on the loop."""
        with self._lock:
            self._done.append((settle, reason, error))
            if self._woken:
                return
            self._woken = True
        self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            done, self._done, self._woken = self._done, [], False
        for settle, reason, error in done:
            settle(reason, error)


def pool_offload(pool: Callable[[], Optional[WorkerPool]]) -> Offload:
    """An ``Offload`` onto ``pool()``: the call runs in a copy of the caller's context (its session, the
    call interceptors fill in), and a one-way call its handler dropped on the thread is dropped here."""
    completions: List[_Completions] = []  # the loop's (one loop serves the offloads of one server)

    def offload(serve: Callable[..., None], *arguments: Any) -> Awaitable[None]:
        # the context is taken now, while the gate has the call and its session set
        return run(contextvars.copy_context(), serve, arguments)

    async def run(context: contextvars.Context, serve: Callable[..., None], arguments: Tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        if not completions or completions[0].loop is not loop:
            completions[:] = [_Completions(loop)]
        back = completions[0].put
        done = loop.create_future()

        def settle(reason: Optional[str], error: Optional[BaseException]) -> None:
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(reason)

        def task(_: Any) -> None:
            try:
                context.run(serve, *arguments)
            except BaseException as error:
                back(settle, None, error)
            else:
                back(settle, take_dropped_oneway(), None)

        workers = pool()
        if workers is None:
            raise TTransportException(TTransportException.END_OF_FILE, "the server is stopping")
        workers.submit(task, None)
        reason = await done
        if reason is not None:
            drop_oneway(reason)

    return offload


def _coroutine_serving(name: str, service: ModuleType, info: MethodInfo) -> Callable[..., Awaitable[None]]:
    """What the generated ``process_<name>`` does, with the handler's coroutine awaited."""
    args_class = generated_class(service, name, "args")
    fields = [parameter for parameter in inspect.signature(args_class.__init__).parameters if parameter != "self"]

    def serve(processor: TProcessor, seqid: int, iprot: Any, oprot: Any) -> Awaitable[None]:
        args = args_class()
        args.read(iprot)
        iprot.readMessageEnd()
        pending = getattr(processor._handler, name)(*map(getattr, itertools.repeat(args), fields))
        return _reply(pending, info, seqid, oprot)

    return serve


async def _reply(pending: Awaitable[Any], info: MethodInfo, seqid: int, oprot: Any) -> None:
    """Awaits a handler and writes its answer as the generated code would (declared exceptions in their
    result field, anything else INTERNAL_ERROR). Logged on the root logger with the generated code's
    words, so the server's handler-error filter words both alike."""
    if info.oneway:
        try:
            await pending
        except TTransportException:
            raise
        except Exception:
            logging.exception("Exception in oneway handler")
        return
    result: Any = info.result()
    try:
        result.success = await pending
        message_type = TMessageType.REPLY
    except TTransportException:
        raise
    except info.declared_exceptions as error:
        message_type = TMessageType.REPLY
        setattr(result, _field_for(result, error), error)
    except TApplicationException as error:
        logging.exception("TApplication exception in handler")
        message_type, result = TMessageType.EXCEPTION, error
    except Exception:
        logging.exception("Unexpected exception in handler")
        message_type = TMessageType.EXCEPTION
        result = TApplicationException(TApplicationException.INTERNAL_ERROR, "Internal error")
    write_whole = getattr(oprot, "write_whole", None)  # (the accelerated binary protocol's one write)
    if write_whole is None or not write_whole(info.name, message_type, seqid, result):
        oprot.writeMessageBegin(info.name, message_type, seqid)
        result.write(oprot)
        oprot.writeMessageEnd()
    oprot.trans.flush()


def _field_for(result: Any, error: BaseException) -> str:
    """The first result field declared to carry ``error`` (as the generated code's except clauses pick)."""
    for spec in result.thrift_spec:
        if spec is not None and spec[0] != 0 and spec[1] == TType.STRUCT and isinstance(error, spec[3][0]):
            return spec[2]
    raise TypeError(f"{type(error).__name__} is not declared by {type(result).__name__}")
