"""Apache Thrift's ``ThriftTest`` service (test/ThriftTest.thrift), served by thrift-handshake for the cross test.

A guest of the runtime, like the demo service: ``serve --handler handler:ThriftTestHandler --handler
handler:SecondServiceHandler --default-service ThriftTest --path interop/crosstest --path GEN --no-hello`` (or
``--hello optional``), where GEN holds the Python code generated from Apache's
ThriftTest.thrift (``interop/crosstest/build.sh py`` makes it; Apache's IDL and code are never committed).
Each method does what the IDL's comments ask of it, which is what Apache's TestClients check.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Set

from thrift.Thrift import TException
from ThriftTest import SecondService, ThriftTest
from ThriftTest.ttypes import Insanity, Numberz, Xception, Xception2, Xtruct, Xtruct2

logger = logging.getLogger(__name__)

#: testOneway sleeps at most this long (the clients ask for 1 s; a bad peer must not hold a thread longer).
MAX_ONEWAY_SLEEP = 3.0


class ThriftTestHandler(ThriftTest.Iface):
    """Echoes what it is given, and answers testMapMap, testInsanity, testMulti and the exception tests
    with the values the IDL's comments name."""

    def testVoid(self) -> None:
        logger.debug("testVoid()")

    def testString(self, thing: str) -> str:
        return thing

    def testBool(self, thing: bool) -> bool:
        return thing

    def testByte(self, thing: int) -> int:
        return thing

    def testI32(self, thing: int) -> int:
        return thing

    def testI64(self, thing: int) -> int:
        return thing

    def testDouble(self, thing: float) -> float:
        return thing

    def testBinary(self, thing: bytes) -> bytes:
        return thing

    def testStruct(self, thing: Xtruct) -> Xtruct:
        return thing

    def testNest(self, thing: Xtruct2) -> Xtruct2:
        return thing

    def testMap(self, thing: Dict[int, int]) -> Dict[int, int]:
        return thing

    def testStringMap(self, thing: Dict[str, str]) -> Dict[str, str]:
        return thing

    def testSet(self, thing: Set[int]) -> Set[int]:
        return thing

    def testList(self, thing: List[int]) -> List[int]:
        return thing

    def testEnum(self, thing: int) -> int:
        return thing

    def testTypedef(self, thing: int) -> int:
        return thing

    def testMapMap(self, hello: int) -> Dict[int, Dict[int, int]]:
        return {-4: {-4: -4, -3: -3, -2: -2, -1: -1}, 4: {1: 1, 2: 2, 3: 3, 4: 4}}

    def testInsanity(self, argument: Insanity) -> Dict[int, Dict[int, Insanity]]:
        return {1: {Numberz.TWO: argument, Numberz.THREE: argument}, 2: {Numberz.SIX: Insanity()}}

    def testMulti(self, arg0: int, arg1: int, arg2: int, arg3: Dict[int, str], arg4: int, arg5: int) -> Xtruct:
        return Xtruct(string_thing="Hello2", byte_thing=arg0, i32_thing=arg1, i64_thing=arg2)

    def testException(self, arg: str) -> None:
        if arg == "Xception":
            raise Xception(errorCode=1001, message=arg)
        if arg == "TException":
            raise TException("This is a TException")  # reaches the client as TApplicationException

    def testMultiException(self, arg0: str, arg1: str) -> Xtruct:
        if arg0 == "Xception":
            raise Xception(errorCode=1001, message="This is an Xception")
        if arg0 == "Xception2":
            raise Xception2(errorCode=2002, struct_thing=Xtruct(string_thing="This is an Xception2"))
        return Xtruct(string_thing=arg1)

    def testOneway(self, secondsToSleep: int) -> None:
        time.sleep(min(max(secondsToSleep, 0), MAX_ONEWAY_SLEEP))


class SecondServiceHandler(SecondService.Iface):
    """The second service of Apache's multiplexed cells."""

    def secondtestString(self, thing: str) -> str:
        return f'testString("{thing}")'
