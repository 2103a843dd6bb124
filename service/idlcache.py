"""Any Thrift IDL as Python modules and a type model, from the Thrift compiler itself (no IDL parser here).

    idl = load_idl("examples/kvstore/kvstore.thrift")      # compiles (or reuses the cache), imports
    service = idl.service()                                 # the last service of the IDL, or the only one
    module = idl.service_module(service)                    # the generated module: Client, Iface, ...

Two runs of ``thrift -r``:

* ``--gen xml:merge`` on every load: it checks the IDL (a syntax error comes back with the compiler's
  message) and describes everything the generated Python code does not record: which structs are
  unions, which i32 is which enum (through typedefs too), requiredness, method signatures and the
  services' ``extends``. (``--gen json`` of thrift 0.17 writes enum-typed fields as plain ``i32``.)
* ``--gen py`` only when the cache has no entry for that description: the cache folder is
  ``$XDG_CACHE_HOME/thrift-handshake/idl/<key>`` (``~/.cache/...`` without XDG_CACHE_HOME; or
  ``$THRIFT_HANDSHAKE_CACHE``), where key is a hash of the compiler's version and the merged
  description of the IDL and all its includes, so editing an included file makes a new entry.

The compiler is ``thrift`` on PATH (or ``$THRIFT``, a path or a name). Includes are looked up in the
``-I`` folders given, then in the runtime's own IDL folder (``thrift-handshake idl-path``), so
``include "session.thrift"`` needs no ``-I``. Errors are ``IdlError`` (an ``ArgumentError``); a
compiler failure carries all the compiler said, warnings included.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import ArgumentError

__all__ = ["IdlError", "IdlType", "IdlField", "IdlStruct", "IdlMethod", "IdlService", "LoadedIdl", "load_idl",
           "described", "cache_root"]

INSTALL_HINT = "install the Thrift compiler: apt-get install thrift-compiler (or set $THRIFT to its path)"
_NS = "{http://thrift.apache.org/xml/idl}"
_COMPILE_TIMEOUT = 60


class IdlError(ArgumentError):
    """The IDL cannot be used: compiler missing, syntax error, unknown service, clashing module names."""


# ---------------------------------------------------------------------------------------------
# The model (what the compiler's XML says)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdlType:
    """A Thrift type with typedefs resolved.

    kind: bool, i8, i16, i32, i64, double, string, binary, void, list, set, map, enum, struct, union,
    exception. name: "program.Name" for enums and structs; elem (list/set), key and value (map);
    members: an enum's (name, value) pairs in IDL order.
    """

    kind: str
    name: str = ""
    elem: Optional["IdlType"] = None
    key: Optional["IdlType"] = None
    value: Optional["IdlType"] = None
    members: Tuple[Tuple[str, int], ...] = ()

    def __str__(self) -> str:
        if self.kind in ("list", "set"):
            return f"{self.kind}<{self.elem}>"
        if self.kind == "map":
            return f"map<{self.key}, {self.value}>"
        return self.name or self.kind


@dataclass(frozen=True)
class IdlField:
    id: int
    name: str
    type: IdlType
    requiredness: str = "default"  # "required", "optional" or "default"

    def __str__(self) -> str:
        return _field_text(self, lambda name: name)


@dataclass(frozen=True)
class IdlStruct:
    program: str
    name: str
    kind: str  # struct, union or exception
    fields: Tuple[IdlField, ...]


@dataclass(frozen=True)
class IdlMethod:
    name: str
    returns: IdlType
    args: Tuple[IdlField, ...]
    throws: Tuple[IdlField, ...]
    oneway: bool = False

    def signature(self, relative_to: str = "") -> str:
        def short(text: str) -> str:  # "kvstore.Entry" -> "Entry" inside kvstore.thrift
            return text[len(relative_to) + 1:] if relative_to and text.startswith(relative_to + ".") else text

        head = ("oneway " if self.oneway else "") + f"{_type_text(self.returns, short)} {self.name}"
        text = f"{head}({', '.join(_field_text(f, short) for f in self.args)})"
        if self.throws:
            text += f" throws ({', '.join(_field_text(f, short) for f in self.throws)})"
        return text


def _type_text(t: IdlType, short) -> str:
    if t.kind in ("list", "set"):
        return f"{t.kind}<{_type_text(t.elem, short)}>"
    if t.kind == "map":
        return f"map<{_type_text(t.key, short)}, {_type_text(t.value, short)}>"
    return short(t.name) if t.name else t.kind


def _field_text(f: IdlField, short) -> str:
    qualifier = "" if f.requiredness == "default" else f.requiredness + " "
    return f"{f.id}: {qualifier}{_type_text(f.type, short)} {f.name}"


@dataclass(frozen=True)
class IdlService:
    program: str
    name: str
    extends: Optional[str]  # "program.Name"
    methods: Tuple[IdlMethod, ...]

    @property
    def qualified(self) -> str:
        return f"{self.program}.{self.name}"


@dataclass
class _Program:
    name: str
    py_namespace: str
    enums: Dict[str, Tuple[Tuple[str, int], ...]] = field(default_factory=dict)
    typedefs: Dict[str, ElementTree.Element] = field(default_factory=dict)
    struct_kinds: Dict[str, str] = field(default_factory=dict)
    struct_elements: Dict[str, ElementTree.Element] = field(default_factory=dict)
    service_elements: List[ElementTree.Element] = field(default_factory=list)


class _Model:
    """Reads the merged XML document of an IDL and its includes."""

    def __init__(self, xml_text: str, main_program: str) -> None:
        root = ElementTree.fromstring(xml_text)
        self.programs: Dict[str, _Program] = {}
        for document in root.iter(_NS + "document"):
            name = document.get("name")
            py_ns = next((ns.get("value") for ns in document.findall(_NS + "namespace") if ns.get("name") == "py"),
                         None)
            program = self.programs[name] = _Program(name, py_ns or name)
            for child in document:
                tag = child.tag[len(_NS):]
                if tag == "enum":
                    program.enums[child.get("name")] = tuple(
                        (m.get("name"), int(m.get("value"))) for m in child.findall(_NS + "member"))
                elif tag == "typedef":
                    program.typedefs[child.get("name")] = child
                elif tag in ("struct", "union", "exception"):
                    program.struct_kinds[child.get("name")] = tag
                    program.struct_elements[child.get("name")] = child
                elif tag == "service":
                    program.service_elements.append(child)
        if main_program not in self.programs:
            raise IdlError(f"the compiler's description has no program {main_program!r}")
        self.main_program = main_program
        self.structs: Dict[str, IdlStruct] = {}
        for program in self.programs.values():
            for name, element in program.struct_elements.items():
                self.structs[f"{program.name}.{name}"] = IdlStruct(
                    program.name, name, program.struct_kinds[name],
                    tuple(self._field(f, program.name) for f in element.findall(_NS + "field")))
        self.services: Dict[str, IdlService] = {}
        for program in self.programs.values():
            for element in program.service_elements:
                parent = element.get("parent-id")
                extends = f"{element.get('parent-module') or program.name}.{parent}" if parent else None
                methods = tuple(self._method(m, program.name) for m in element.findall(_NS + "method"))
                service = IdlService(program.name, element.get("name"), extends, methods)
                self.services[service.qualified] = service

    def _type(self, element: ElementTree.Element, program: str, depth: int = 0) -> IdlType:
        kind = element.get("type")
        if depth > 50:
            raise IdlError("typedefs nest too deeply")
        if kind in ("list", "set"):
            return IdlType(kind, elem=self._type(element.find(_NS + "elemType"), program, depth + 1))
        if kind == "map":
            return IdlType("map", key=self._type(element.find(_NS + "keyType"), program, depth + 1),
                           value=self._type(element.find(_NS + "valueType"), program, depth + 1))
        if kind == "id":
            module = element.get("type-module") or program
            name = element.get("type-id")
            target = self.programs.get(module)
            if target is None:
                raise IdlError(f"type {module}.{name}: unknown program {module!r}")
            if name in target.enums:
                return IdlType("enum", f"{module}.{name}", members=target.enums[name])
            if name in target.struct_kinds:
                return IdlType(target.struct_kinds[name], f"{module}.{name}")
            if name in target.typedefs:
                return self._type(target.typedefs[name], module, depth + 1)
            raise IdlError(f"type {module}.{name} is not in the compiler's description")
        if kind == "byte":
            kind = "i8"
        return IdlType(kind)

    def _field(self, element: ElementTree.Element, program: str) -> IdlField:
        return IdlField(int(element.get("field-id")), element.get("name"), self._type(element, program),
                        element.get("required") or "default")

    def _method(self, element: ElementTree.Element, program: str) -> IdlMethod:
        returns = element.find(_NS + "returns")
        return IdlMethod(
            element.get("name"),
            self._type(returns, program) if returns is not None else IdlType("void"),
            tuple(self._field(a, program) for a in element.findall(_NS + "arg")),
            tuple(self._field(t, program) for t in element.findall(_NS + "throws")),
            element.get("oneway") == "true",
        )


# ---------------------------------------------------------------------------------------------
# Compiling and caching
# ---------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Where compiled IDLs are kept (see the module docstring)."""
    explicit = os.environ.get("THRIFT_HANDSHAKE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "thrift-handshake" / "idl"


def _compiler() -> str:
    name = os.environ.get("THRIFT") or "thrift"
    path = shutil.which(name)
    if path is None:
        raise IdlError(f"the Thrift compiler ({name!r}) is not on PATH: {INSTALL_HINT}")
    return path


def _run_compiler(compiler: str, args: Sequence[str], idl: Path, what: str) -> None:
    try:
        done = subprocess.run([compiler, *args, str(idl)], capture_output=True, text=True,
                              timeout=_COMPILE_TIMEOUT)
    except OSError as error:
        raise IdlError(f"cannot run the Thrift compiler {compiler}: {error}; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise IdlError(f"the Thrift compiler took more than {_COMPILE_TIMEOUT} s on {idl}") from None
    if done.returncode != 0:
        # the compiler's warnings (such as "Could not find include file") go to stdout, its errors to
        # stderr: the cause is often the warning
        said = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line.strip()]
        message = "\n".join(dict.fromkeys(said)) or f"exit status {done.returncode}"
        if "Could not find include file" in message:
            message += ("\n(give the folder of that file with -I DIR; the runtime's session.thrift is found "
                        "without it)")
        raise IdlError(f"the Thrift compiler rejected {idl} ({what}):\n{message}")


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        raise IdlError(f"cannot run the Thrift compiler {compiler}: {error}; {INSTALL_HINT}") from None


def _include_args(include_dirs: Iterable[str]) -> List[str]:
    """``-I`` for each folder given, then the runtime's own IDL folder: ``include "session.thrift"``
    always finds the session contract this runtime speaks."""
    from .idl import directory

    args: List[str] = []
    for folder in [*include_dirs, str(directory())]:
        args += ["-I", str(folder)]
    return args


def compile_idl(idl_path: "str | os.PathLike[str]", include_dirs: Sequence[str] = ()) -> Tuple[Path, str, str]:
    """Compiles (or finds in the cache) an IDL; returns (cache entry folder, merged XML text, program name)."""
    idl = Path(idl_path)
    if not idl.is_file():
        raise IdlError(f"no such IDL file: {idl}")
    idl = idl.resolve()
    program = idl.name[:-len(".thrift")] if idl.name.endswith(".thrift") else idl.stem
    compiler = _compiler()
    includes = _include_args(include_dirs)
    with tempfile.TemporaryDirectory(prefix="thrift-handshake-xml-") as scratch:
        _run_compiler(compiler, ["-r", "--gen", "xml:merge", *includes, "-out", scratch], idl, "checking it")
        xml_file = Path(scratch) / f"{program}.xml"
        if not xml_file.is_file():
            raise IdlError(f"the Thrift compiler wrote no description of {idl} (expected {xml_file.name})")
        xml_text = xml_file.read_text(encoding="utf-8")
    key = hashlib.sha256("\0".join([_compiler_version(compiler), "py", program, xml_text]).encode()).hexdigest()[:24]
    entry = cache_root() / key
    if not (entry / "complete").is_file():
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entry.parent))
        except OSError as error:
            raise IdlError(f"cannot write the IDL cache in {entry.parent}: {error}; "
                           "point $XDG_CACHE_HOME (or $THRIFT_HANDSHAKE_CACHE) at a writable folder") from None
        try:
            (staging / "gen-py").mkdir()
            _run_compiler(compiler, ["-r", "--gen", "py", *includes, "-out", str(staging / "gen-py")], idl,
                          "generating Python")
            (staging / "model.xml").write_text(xml_text, encoding="utf-8")
            (staging / "source").write_text(str(idl) + "\n", encoding="utf-8")
            (staging / "complete").write_text(key + "\n", encoding="utf-8")
            try:
                os.rename(staging, entry)
            except OSError:  # another process made the same entry meanwhile: theirs is as good
                if not (entry / "complete").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return entry, xml_text, program


# ---------------------------------------------------------------------------------------------
# Loading the generated code
# ---------------------------------------------------------------------------------------------


def _leaf_packages(gen_dir: Path) -> List[Tuple[str, Path]]:
    """Generated packages that hold code (a ttypes.py), as (dotted name, folder)."""
    leaves = []
    for ttypes in sorted(gen_dir.rglob("ttypes.py")):
        folder = ttypes.parent
        leaves.append((".".join(folder.relative_to(gen_dir).parts), folder))
    return leaves


def _same_files(ours: Path, theirs: Path) -> bool:
    for file in ours.glob("*.py"):
        if file.name == "__init__.py":
            continue
        other = theirs / file.name
        if not other.is_file() or other.read_bytes() != file.read_bytes():
            return False
    return True


def _import_generated(gen_dir: Path) -> None:
    """Puts ``gen_dir`` on sys.path, refusing modules that would shadow (or be shadowed by) other code.

    A generated package whose name is already taken elsewhere (e.g. an IDL that includes the
    runtime's own session.thrift) is fine when the files are the same: the existing modules are used.
    """
    gen_text = str(gen_dir)
    if gen_text in sys.path:
        return  # checked when it was added
    for dotted, folder in _leaf_packages(gen_dir):
        top = dotted.split(".")[0]
        try:
            taken = top in sys.modules or importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            taken = True
        if not taken:
            continue  # ours alone: found through gen_dir once it is on sys.path
        try:
            existing = importlib.import_module(dotted)
        except ImportError:
            raise IdlError(f"the IDL's Python package {dotted!r} would be part of {top!r}, which is already "
                           "installed elsewhere; give the IDL its own 'namespace py'") from None
        where = Path(getattr(existing, "__file__", None) or ".").parent
        if not _same_files(folder, where):
            raise IdlError(f"the IDL's Python module {dotted!r} clashes with a different {dotted!r} already "
                           f"loaded from {where}; give the IDL its own 'namespace py'")
    sys.path.insert(0, gen_text)
    importlib.invalidate_caches()


@dataclass
class LoadedIdl:
    """A compiled IDL: its model, its cache folder, and the generated Python modules."""

    path: Path
    entry: Path
    program: str
    model: _Model

    @property
    def gen_dir(self) -> Path:
        return self.entry / "gen-py"

    # -- services -----------------------------------------------------------------------------

    def services(self) -> List[IdlService]:
        """The services declared in the IDL itself (not its includes), in IDL order."""
        return [s for s in self.model.services.values() if s.program == self.program]

    def service(self, name: Optional[str] = None) -> IdlService:
        """``name`` ("KeyValue" or "kvstore.KeyValue"), or by default the IDL's last service."""
        own = self.services()
        if name is None:
            if not own:
                raise IdlError(f"{self.path} declares no service")
            return own[-1]
        qualified = name if "." in name else f"{self.program}.{name}"
        service = self.model.services.get(qualified)
        if service is None:
            known = ", ".join(s.name for s in own) or "none"
            raise IdlError(f"unknown service {name!r} in {self.path}; its services: {known}")
        return service

    def methods(self, service: IdlService) -> List[Tuple[IdlMethod, IdlService]]:
        """Every method of ``service``, inherited ones after its own, with the service declaring each."""
        found: List[Tuple[IdlMethod, IdlService]] = []
        seen = set()
        current: Optional[IdlService] = service
        while current is not None and current.qualified not in seen:
            seen.add(current.qualified)
            found += [(m, current) for m in current.methods]
            current = self.model.services.get(current.extends) if current.extends else None
        return found

    def method(self, service: IdlService, name: str) -> IdlMethod:
        for method, _ in self.methods(service):
            if method.name == name:
                return method
        known = ", ".join(sorted(m.name for m, _ in self.methods(service)))
        raise IdlError(f"unknown method {name!r} of service {service.name}; known methods: {known}")

    # -- Python -------------------------------------------------------------------------------

    def py_module_name(self, program: str) -> str:
        return self.model.programs[program].py_namespace

    def service_module(self, service: IdlService) -> ModuleType:
        _import_generated(self.gen_dir)
        return importlib.import_module(f"{self.py_module_name(service.program)}.{service.name}")

    def py_class(self, qualified: str) -> type:
        program, _, name = qualified.partition(".")
        _import_generated(self.gen_dir)
        return getattr(importlib.import_module(f"{self.py_module_name(program)}.ttypes"), name)

    def type_hints(self, service: IdlService) -> "Tuple[Dict[type, Dict[str, IdlField]], frozenset]":
        """What jsonargs needs beyond ``thrift_spec``: the IDL field (type, requiredness) of every field of
        every struct and of every ``<method>_args`` class, by generated class; and the union classes."""
        fields: Dict[type, Dict[str, IdlField]] = {}
        unions = set()
        for qualified, struct in self.model.structs.items():
            cls = self.py_class(qualified)
            fields[cls] = {f.name: f for f in struct.fields}
            if struct.kind == "union":
                unions.add(cls)
        for method, owner in self.methods(service):
            module = self.service_module(owner)
            args_class = getattr(module, f"{method.name}_args", None)
            if args_class is not None:
                fields[args_class] = {f.name: f for f in method.args}
        return fields, frozenset(unions)


def described(xml_path: Path, program: str) -> LoadedIdl:
    """An IDL already described by the compiler (``thrift -r --gen xml:merge``), whose Python code is
    installed: its model without running the compiler (``service_module`` and ``type_hints`` need
    ``load_idl``)."""
    return LoadedIdl(xml_path, xml_path.parent, program, _Model(xml_path.read_text(encoding="utf-8"), program))


def load_idl(idl_path: "str | os.PathLike[str]", include_dirs: Sequence[str] = ()) -> LoadedIdl:
    """Compiles ``idl_path`` (cached) and returns its model; modules are imported on first use."""
    entry, xml_text, program = compile_idl(idl_path, include_dirs)
    return LoadedIdl(Path(idl_path), entry, program, _Model(xml_text, program))
