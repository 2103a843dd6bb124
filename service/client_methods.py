"""A service's methods as the client calls them: arguments by position or by name, bound in IDL order and
checked against the IDL before anything is sent, and the client seen as the service's ``Iface``."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Tuple, Type, TypeVar, cast

from .contract import MethodInfo, describe_service, generated_class
from .errors import ArgumentError
from .values import argument_checker

__all__ = ["PHASE_METHODS", "THRIFT_SERVICE", "ServiceMethods", "TypedView", "bind_arguments", "checker_of", "methods_of"]

#: Methods the client drives itself as phases rather than as ordinary calls.
PHASE_METHODS = {"goodbye": "goodbye() or close()"}

_UNSET = object()  # a parameter no argument was given for
#: The attribute of a written async interface (``aio.stubs``) that names its service module.
THRIFT_SERVICE = "__thrift_service__"
_Iface = TypeVar("_Iface")


@functools.lru_cache(maxsize=None)  # per generated service: describing one walks its generated code
def methods_of(service: ModuleType) -> Dict[str, MethodInfo]:
    """The service's methods (its own and those it extends)."""
    return describe_service(service)


@functools.lru_cache(maxsize=None)
def checker_of(service: ModuleType, name: str) -> Callable[[Tuple[Any, ...]], None]:
    """What checks ``name``'s arguments against the IDL before anything is sent (``values``)."""
    return argument_checker(generated_class(service, name, "args"), name)


@functools.lru_cache(maxsize=None)
def _parameters(service: ModuleType, name: str) -> Optional[Tuple[str, ...]]:
    args_class = generated_class(service, name, "args")
    return None if args_class is None else tuple(spec[2] for spec in getattr(args_class, "thrift_spec") if spec)


def bind_arguments(service: ModuleType, method: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Any, ...]:
    """``args`` and ``kwargs`` as positional arguments in IDL order, bound as Python binds them to the
    ``Iface``'s method; ArgumentError for a name it does not have, or a parameter given twice or not at all."""
    names = _parameters(service, method)
    if names is None:
        raise ArgumentError(f"unknown method {method!r} for service {service.__name__}")
    values: list = [*args, *[_UNSET] * (len(names) - len(args))]
    for key, value in kwargs.items():
        if key not in names:
            raise ArgumentError(f"{method}() has no parameter {key!r}; its parameters: {', '.join(names) or 'none'}")
        index = names.index(key)
        if values[index] is not _UNSET:
            raise ArgumentError(f"{method}() got two values for parameter {key!r}")
        values[index] = value
    missing = [name for name, value in zip(names, values) if value is _UNSET]
    if missing:
        raise ArgumentError(f"{method}() is missing parameter(s) {', '.join(missing)} (None leaves one unset)")
    return tuple(values)


class TypedView:
    """A client seen as its service's ``Iface`` (``Client.typed``): every attribute is a service method,
    also one named like the client's own (``close``, ``phase``, ``call``...); ``goodbye`` stays the phase."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        client = self._client
        if name.startswith("_") or not hasattr(client.service.Iface, name):
            raise AttributeError(f"{client.service.__name__}.Iface has no method {name!r}")
        if name in PHASE_METHODS and client.options.handshake:
            method: Callable[..., Any] = getattr(client, name)
        else:
            method = functools.partial(client.call, name)
        self.__dict__[name] = method
        return method

    def __repr__(self) -> str:
        return f"<{self._client.service.__name__}.Iface of {self._client!r}>"


class ServiceMethods:
    """A client's service methods as attributes (``client.echo("hi")``, i.e. ``client.call("echo", "hi")``)
    and as the generated ``Iface`` (``typed``); the client class provides ``service`` and ``call``."""

    service: ModuleType

    def typed(self, iface: Type[_Iface]) -> _Iface:
        """This client's calls as the generated ``iface`` (e.g. ``Calculator.Iface``), so that an IDE and
        a type checker know its methods: ``client.typed(Calculator.Iface).add(1, 2)`` (awaited with the
        AsyncClient). Every attribute of the view is a service method, even one named like the client's
        own (``close``)."""
        if not (isinstance(iface, type) and issubclass(self.service.Iface, iface)):
            raise TypeError(f"{iface!r} is not the Iface of {self.service.__name__} or of a service it extends")
        return cast(_Iface, TypedView(self))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or not hasattr(self.service.Iface, name):
            raise AttributeError(f"{type(self).__name__} has no attribute or service method {name!r}")
        method = functools.partial(getattr(self, "call"), name)
        self.__dict__[name] = method  # found directly from now on
        return method
