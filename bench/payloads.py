"""The two workloads' arguments, built with the same values for every system (bench/native/payload.h too).

echo: a 32-byte string. types: ``echo_types(AllTypes)`` with scalars, a 64-byte string, 32 bytes of binary, a
union, a list of 100 i32, a set of 10 strings, maps of 10 entries, nested containers; each system returns it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDL = ROOT / "idl" / "handshake.thrift"
PROTO = Path(__file__).resolve().parent / "bench.proto"
TEXT = "x" * 32


def cache_dir() -> Path:
    """Where built artefacts are kept between runs (~/.cache/thrift-handshake-bench)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "thrift-handshake-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()[:16]


def _fields(point, shape):
    """Keyword arguments of AllTypes, given a system's Point and Shape constructors."""
    points = [point(x=i, y=i) for i in range(3)]
    return dict(
        id="bench", flag=True, small=7, short_number=300, number=70000, big_number=1 << 40, real=3.25,
        text="t" * 64, data=b"d" * 32, color=3, shape=shape(point=point(x=1, y=2, label="p")),
        numbers=list(range(100)), tags={f"tag{i}" for i in range(10)}, counts={f"k{i}": i for i in range(10)},
        groups={"a": points, "b": list(points)}, layers=[{"x": {1, 2, 3}, "y": {4, 5, 6}}],
        palette={1: 1, 2: 2, 3: 3}, blobs=[b"b" * 16, b"b" * 16],
    )


def thrift_all_types():
    """For Apache Thrift's generated code (thrift_handshake_gen), shared by B and P."""
    from thrift_handshake_gen.ttypes import AllTypes, Point, Shape
    return AllTypes(**_fields(Point, Shape))


def load_thriftpy2():
    """The same IDL, loaded by thriftpy2 at run time."""
    import thriftpy2
    return thriftpy2.load(str(IDL), module_name="handshake_thrift", include_dirs=[str(IDL.parent)])


def thriftpy2_all_types(module):
    return module.AllTypes(**_fields(module.Point, module.Shape))


def load_grpc():
    """bench.proto compiled with grpc_tools (cached by content); returns (messages, services) modules."""
    import importlib
    import sys
    source = PROTO.read_bytes()
    import grpc_tools
    out = cache_dir() / f"grpc-{digest(source, grpc_tools.__file__.encode())}"
    if not (out / "bench_pb2_grpc.py").exists():
        from grpc_tools import protoc
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        include = Path(grpc_tools.__file__).parent / "_proto"
        code = protoc.main(["protoc", f"-I{PROTO.parent}", f"-I{include}", f"--python_out={tmp}",
                            f"--grpc_python_out={tmp}", str(PROTO)])
        if code != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {PROTO} (exit {code})")
        try:
            os.rename(tmp, out)
        except OSError:  # another run finished first
            pass
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("bench_pb2"), importlib.import_module("bench_pb2_grpc")


def grpc_all_types(pb):
    fields = _fields(lambda **kw: pb.Point(**kw), lambda point: pb.Shape(point=point))
    fields["tags"] = sorted(fields["tags"])
    fields["groups"] = {key: pb.Points(points=value) for key, value in fields["groups"].items()}
    fields["layers"] = [pb.Layer(sets={key: pb.Ints(values=sorted(value)) for key, value in layer.items()})
                        for layer in fields["layers"]]
    return pb.AllTypes(**fields)
