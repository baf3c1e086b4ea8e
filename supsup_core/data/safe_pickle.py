"""Decode a pickle of plain data and NumPy arrays without importing or calling anything.

``pickle.load`` runs whatever a file asks for: a pickle is a program, and its
``GLOBAL`` + ``REDUCE`` opcodes call any importable function.  Datasets that
are only published as pickles (the classic ``mnist.pkl.gz``, CIFAR's "python
version") are therefore read here by a small stack machine of our own that
understands just the opcodes such files use and builds every value itself:

* ``None``, booleans, integers, floats, ``str``, ``bytes``, lists, tuples and dicts;
* NumPy arrays, in the three ways pickles spell them: ``numpy.core.multiarray._reconstruct``
  (or ``numpy._core...``) + ``numpy.ndarray`` + ``numpy.dtype`` with the raw bytes in
  the ``BUILD`` state (protocols 2–4), and ``numpy.core.numeric._frombuffer``
  (or ``numpy._core...``, what NumPy writes for protocol 5);
* ``_codecs.encode(text, "latin1")`` and ``bytes()``, the two ways Python 3 writes
  ``bytes`` at protocol 2.

Protocols 2 to 5 are read (Python 2's cPickle and Python 3's ``pickle.dumps``);
the text opcodes of protocols 0 and 1 are not.

Those globals are recognised by name and *replaced*: nothing is imported or called.
An array is ``numpy.frombuffer`` of its raw bytes with a dtype from a small
allow-list (:data:`ALLOWED_DTYPES`: ``u1 i1 <i2 <i4 <i8 <f4 <f8``) and a shape
whose element count times the item size equals the number of raw bytes.
Python 2 byte strings (``SHORT_BINSTRING``, ``BINSTRING``) become ``bytes``, as
``pickle.load(..., encoding="bytes")`` would give.

Large byte strings (1 MiB and more) that are an array's raw data in its
``BUILD`` state are not copied: the array views the input (read-only for
``bytes`` input), which keeps the input alive as long as the array.  Everywhere
else they become ``bytes`` as usual.

Containers nest at most 64 deep, a container is never filled after it was placed
inside another (so there are no cycles), dict keys are ``str``, ``bytes``,
numbers, ``None`` or tuples of those, and an array dimension is below 2**31: the
result can be hashed, compared and printed without deep recursion.

Anything else — another global, an opcode outside the supported set, a
malformed stream, a declared length beyond the end of the input, more input
bytes or more items than the configured limits, deeper nesting — raises
:class:`~supsup_core.errors.DataError` naming the file and what was found.
Arrays come back read-only when they view immutable ``bytes``.

Examples
--------
>>> import pickle, numpy as np
>>> blob = pickle.dumps({b"data": np.arange(4, dtype=np.uint8), b"labels": [3, 1]}, protocol=2)
>>> out = loads(blob, source="example")
>>> out[b"data"].tolist(), out[b"labels"]
([0, 1, 2, 3], [3, 1])
>>> loads(pickle.dumps(eval, protocol=2), source="evil.pkl")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
supsup_core.errors.DataError: evil.pkl: expected only the globals that rebuild ..., received the global __builtin__.eval at byte 2
"""

from __future__ import annotations

import math
import os
import pickletools
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .untrusted import gunzip, open_regular, read_regular

__all__ = ["ALLOWED_DTYPES", "MAX_BYTES", "MAX_ITEMS", "load", "loads"]

MAX_BYTES = 1 << 30
"""Default ceiling on the (decompressed) pickle size in bytes: 1 GiB (the classic ``mnist.pkl.gz`` holds 220 MB)."""
MAX_ITEMS = 10_000_000
"""Default ceiling on the values the machine creates or stores in containers (CIFAR-100's ``train``: ~150,000)."""
ALLOWED_DTYPES = ("|u1", "|i1", "<i2", "<i4", "<i8", "<f4", "<f8")
"""Array element types an array may have, as ``numpy.dtype.str``: little-endian integers and floats only."""

_VIEW_BYTES = 1 << 20  # byte strings from this size on are kept as views until they are known to be array data
_MAX_INT_BYTES = 1024  # LONG1 / LONG4 payloads: an 8,192-bit integer is already absurd in a dataset
_MAX_NDIM = 32  # numpy's own limit on dimensions
_MAX_SIDE = 2**31 - 1  # one array dimension
_MAX_ELEMENTS = 2**40  # elements an array shape may address, zero sides left out (numpy must index them)
_MAX_DEPTH = 64  # containers inside containers: datasets nest 2 or 3 deep
_KEY_TYPES = (str, bytes, int, float, bool, type(None))  # dict keys: these, or a tuple of these
_MAX_GLOBAL_LINE = 256  # GLOBAL's "module\nname\n" lines
_TYPESTR = re.compile(r"[uif][1248]")

# (module, name) -> role; every other global is refused.  Nothing here is ever imported or called.
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",
    ("builtins", "bytes"): "bytes",
}


class _Global:
    """A recognised global, by role (``"reconstruct"``, ``"dtype"`` ...); never resolved to a Python object."""

    __slots__ = ("role", "name")

    def __init__(self, role: str, name: str) -> None:
        self.role, self.name = role, name


class _DtypeSpec:
    """``numpy.dtype(typestr, ...)`` waiting for (then holding) its byte order from ``BUILD``."""

    __slots__ = ("typestr", "dtype")

    def __init__(self, typestr: str) -> None:
        self.typestr = typestr
        self.dtype: np.dtype | None = None


class _View:
    """A large byte string not copied yet: array raw data in a BUILD state views it, anything else copies it."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        self.view = view


def _plain(value: object) -> object:
    """``value``, with a :class:`_View` turned into the ``bytes`` it stands for."""
    return bytes(value.view) if type(value) is _View else value


class _Unbuilt:
    """An ``ndarray`` from ``_reconstruct`` waiting for its ``BUILD`` state; remembers the memo keys that hold it."""

    __slots__ = ("memo_keys",)

    def __init__(self) -> None:
        self.memo_keys: list[int] = []


_MARKERS = (_Global, _DtypeSpec, _Unbuilt, _View)


class _Machine:
    """The stack machine: one instance per decoded pickle."""

    def __init__(self, data: bytes | bytearray | memoryview, source: str, max_items: int) -> None:
        self.view = memoryview(data).cast("B")
        self.source = source
        self.max_items = max_items
        self.pos = 0
        self.op_pos = 0
        self.items = 0
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, object] = {}
        # Nesting depth of every container built here, by id; the entry keeps the container alive, so ids stay unique.
        self.depths: dict[int, tuple[int, object]] = {}
        self.placed: set[int] = set()  # ids of containers already inside another container (they are complete)

    # -- errors and raw reads ----------------------------------------------------------------

    def fail(self, expected: str, received: str) -> DataError:
        return DataError(f"{self.source}: expected {expected}, received {received} at byte {self.op_pos}")

    def take(self, n: int) -> memoryview:
        left = len(self.view) - self.pos
        if n < 0 or n > left:
            raise self.fail("a length within the input", f"a declared length of {n} bytes with only {left} left")
        chunk = self.view[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def count(self, n: int = 1) -> None:
        self.items += n
        if self.items > self.max_items:
            raise self.fail(f"at most {self.max_items:,} values (max_items)", "more")

    def push(self, value: object) -> None:
        self.count()
        self.stack.append(value)

    def pop(self) -> object:
        if not self.stack:
            raise self.fail("a value on the stack", "an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.metastack:
            raise self.fail("a MARK before this opcode", "none")
        items, self.stack = self.stack, self.metastack.pop()
        return items

    # -- nesting ---------------------------------------------------------------------------------

    def depth(self, value: object) -> int:
        """Nesting depth of a container built here (0 for anything else)."""
        entry = self.depths.get(id(value))
        return entry[0] if entry is not None and entry[1] is value else 0

    def nest(self, container: object, children: list | tuple, *, filling: bool = False) -> None:
        """Record ``container``'s depth with ``children`` in it (at most ``_MAX_DEPTH``) and mark them placed.

        ``filling``: the children are added to an existing list or dict, which must not be inside
        another container yet (pickle fills a container before placing it; only a cycle does otherwise).
        """
        if filling and id(container) in self.placed:
            raise self.fail("plain data without cycles", f"a {type(container).__name__} filled after it was placed "
                            "inside another container")
        depth = max(self.depth(container), 1)
        for child in children:
            entry = self.depths.get(id(child))
            if entry is None or entry[1] is not child:
                continue  # not a container
            if child is container:
                raise self.fail("plain data without cycles", f"a {type(container).__name__} that contains itself")
            depth = max(depth, entry[0] + 1)
            self.placed.add(id(child))
        if depth > _MAX_DEPTH:
            raise self.fail(f"containers nested at most {_MAX_DEPTH} deep", "deeper nesting")
        self.depths[id(container)] = (depth, container)

    def text(self, raw: memoryview) -> str:
        try:
            return str(raw, "utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise self.fail("UTF-8 text", f"invalid bytes ({exc.reason})") from None

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> object:
        dispatch = _DISPATCH
        view = self.view
        while True:
            self.op_pos = self.pos
            if self.pos >= len(view):
                raise self.fail("a STOP opcode", "the end of the input")
            code = view[self.pos]
            self.pos += 1
            handler = dispatch.get(code)
            if handler is None:
                known = pickletools.code2op.get(chr(code))
                what = f"the opcode {known.name}" if known is not None else "an unknown opcode"
                raise self.fail("a pickle of plain data and numpy arrays", f"{what} (0x{code:02x})")
            if handler is _Machine.op_stop:
                return self.op_stop()
            handler(self)

    # -- opcodes: framing and constants -----------------------------------------------------------

    def op_proto(self) -> None:
        version = self.uint(1)
        if version > 5:
            raise self.fail("pickle protocol 0 to 5", f"protocol {version}")

    def op_frame(self) -> None:
        size = self.uint(8)
        if size > len(self.view) - self.pos:
            raise self.fail("a frame within the input", f"a frame of {size} bytes with {len(self.view) - self.pos} left")

    def op_stop(self) -> object:
        result = _plain(self.pop())
        if self.stack or self.metastack:
            raise self.fail("one value left at STOP", f"{len(self.stack) + 1} values and {len(self.metastack)} open MARKs")
        if self.pos != len(self.view):
            self.op_pos = self.pos
            raise self.fail("the end of the input after STOP", f"{len(self.view) - self.pos} trailing bytes")
        _check_plain(result, self)
        return result

    def op_none(self) -> None:
        self.push(None)

    def op_true(self) -> None:
        self.push(True)

    def op_false(self) -> None:
        self.push(False)

    def op_binint(self) -> None:
        self.push(int.from_bytes(self.take(4), "little", signed=True))

    def op_binint1(self) -> None:
        self.push(self.uint(1))

    def op_binint2(self) -> None:
        self.push(self.uint(2))

    def _long(self, size: int) -> None:
        if size > _MAX_INT_BYTES:
            raise self.fail(f"an integer of at most {_MAX_INT_BYTES} bytes", f"one of {size} bytes")
        self.push(int.from_bytes(self.take(size), "little", signed=True))

    def op_long1(self) -> None:
        self._long(self.uint(1))

    def op_long4(self) -> None:
        self._long(int.from_bytes(self.take(4), "little", signed=True))

    def op_binfloat(self) -> None:
        self.push(struct.unpack(">d", self.take(8))[0])

    # -- strings -----------------------------------------------------------------------------------

    def op_short_binstring(self) -> None:  # Python 2 str -> bytes (pickle's encoding="bytes")
        self.push(bytes(self.take(self.uint(1))))

    def _big_bytes(self, size: int) -> None:
        chunk = self.take(size)
        self.push(_View(chunk) if size >= _VIEW_BYTES else bytes(chunk))

    def op_binstring(self) -> None:
        self._big_bytes(int.from_bytes(self.take(4), "little", signed=True))

    def op_short_binbytes(self) -> None:
        self.push(bytes(self.take(self.uint(1))))

    def op_binbytes(self) -> None:
        self._big_bytes(self.uint(4))

    def op_binbytes8(self) -> None:
        self._big_bytes(self.uint(8))

    def op_bytearray8(self) -> None:
        self.push(bytearray(self.take(self.uint(8))))

    def op_short_binunicode(self) -> None:
        self.push(self.text(self.take(self.uint(1))))

    def op_binunicode(self) -> None:
        self.push(self.text(self.take(self.uint(4))))

    def op_binunicode8(self) -> None:
        self.push(self.text(self.take(self.uint(8))))

    # -- containers -------------------------------------------------------------------------------

    def op_mark(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def op_empty_tuple(self) -> None:
        self.nest((), ())
        self.push(())

    def _push_tuple(self, items: list) -> None:
        # A BUILD state (the next opcode is BUILD, maybe after a memo put) keeps its large strings as views.
        if not self._build_next():
            items = [_plain(v) for v in items]
        value = tuple(items)
        self.nest(value, value)
        self.push(value)

    def _build_next(self) -> bool:
        view, pos = self.view, self.pos
        if pos < len(view) and view[pos] in _MEMO_PUTS:
            pos += _MEMO_PUTS[view[pos]]
        return pos < len(view) and view[pos] == _BUILD

    def op_tuple(self) -> None:
        self._push_tuple(self.pop_mark())

    def op_tuple1(self) -> None:
        self._push_tuple([self.pop()])

    def op_tuple2(self) -> None:
        second = self.pop()
        self._push_tuple([self.pop(), second])

    def op_tuple3(self) -> None:
        third, second = self.pop(), self.pop()
        self._push_tuple([self.pop(), second, third])

    def op_empty_list(self) -> None:
        value: list = []
        self.nest(value, ())
        self.push(value)

    def op_list(self) -> None:
        value = [_plain(v) for v in self.pop_mark()]
        self.nest(value, value)
        self.push(value)

    def op_empty_dict(self) -> None:
        value: dict = {}
        self.nest(value, ())
        self.push(value)

    def op_dict(self) -> None:
        items = self.pop_mark()
        target: dict = {}
        self._set_items(target, items, filling=False)
        self.push(target)

    def _target(self, kind: type, opcode: str) -> object:
        if not self.stack or not isinstance(self.stack[-1], kind):
            found = type(self.stack[-1]).__name__ if self.stack else "an empty stack"
            raise self.fail(f"a {kind.__name__} under {opcode}", found)
        return self.stack[-1]

    def op_append(self) -> None:
        value = _plain(self.pop())
        target = self._target(list, "APPEND")
        self.nest(target, (value,), filling=True)
        target.append(value)
        self.count()

    def op_appends(self) -> None:
        values = [_plain(v) for v in self.pop_mark()]
        target = self._target(list, "APPENDS")
        self.nest(target, values, filling=True)
        target.extend(values)
        self.count(len(values))

    def _key(self, key: object) -> object:
        """A dict key that hashes without recursion: a str, bytes, number or None, or a tuple of those."""
        key = _plain(key)
        if isinstance(key, _KEY_TYPES) or (isinstance(key, tuple) and all(isinstance(k, _KEY_TYPES) for k in key)):
            return key
        held = f" holding a {type(next(k for k in key if not isinstance(k, _KEY_TYPES))).__name__}" \
            if isinstance(key, tuple) else ""
        raise self.fail("a dict key of str, bytes, int, float, bool, None or a tuple of those",
                        f"a key of type {type(key).__name__}{held}")

    def _set_items(self, target: dict, items: list, *, filling: bool = True) -> None:
        if len(items) % 2:
            raise self.fail("key/value pairs", f"{len(items)} values")
        keys = [self._key(items[i]) for i in range(0, len(items), 2)]
        values = [_plain(items[i]) for i in range(1, len(items), 2)]
        self.nest(target, keys + values, filling=filling)
        for key, value in zip(keys, values):
            target[key] = value
        self.count(len(items) // 2)

    def op_setitem(self) -> None:
        value, key = self.pop(), self.pop()
        self._set_items(self._target(dict, "SETITEM"), [key, value])

    def op_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(self._target(dict, "SETITEMS"), items)

    # -- memo ---------------------------------------------------------------------------------------

    def _put(self, key: int) -> None:
        if not self.stack:
            raise self.fail("a value to memoize", "an empty stack")
        value = self.stack[-1]
        self.memo[key] = value
        if isinstance(value, _Unbuilt):
            value.memo_keys.append(key)
        self.count()

    def op_binput(self) -> None:
        self._put(self.uint(1))

    def op_long_binput(self) -> None:
        self._put(self.uint(4))

    def op_memoize(self) -> None:
        self._put(len(self.memo))

    def _get(self, key: int) -> None:
        if key not in self.memo:
            raise self.fail("a memo key stored earlier", f"key {key}")
        self.push(self.memo[key])

    def op_binget(self) -> None:
        self._get(self.uint(1))

    def op_long_binget(self) -> None:
        self._get(self.uint(4))

    # -- globals, REDUCE and BUILD: recognised by name, built here ----------------------------------

    def _global(self, module: str, name: str) -> None:
        role = _GLOBALS.get((module, name))
        if role is None:
            raise self.fail("only the globals that rebuild numpy arrays or bytes (numpy's _reconstruct, ndarray, dtype, "
                            "_frombuffer; _codecs.encode; bytes)", f"the global {module}.{name}")
        self.push(_Global(role, f"{module}.{name}"))

    def _line(self) -> str:
        end = bytes(self.view[self.pos : self.pos + _MAX_GLOBAL_LINE]).find(b"\n")
        if end < 0:
            raise self.fail(f"a newline within {_MAX_GLOBAL_LINE} bytes in GLOBAL", "none")
        raw = self.take(end + 1)[:-1]
        try:
            return str(raw, "ascii")
        except UnicodeDecodeError:
            raise self.fail("an ASCII module and name in GLOBAL", f"bytes {bytes(raw)!r}") from None

    def op_global(self) -> None:
        module = self._line()
        self._global(module, self._line())

    def op_stack_global(self) -> None:
        name, module = self.pop(), self.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.fail("a module and a name as str in STACK_GLOBAL", f"{type(module).__name__}, {type(name).__name__}")
        self._global(module, name)

    def op_reduce(self) -> None:
        args, func = self.pop(), self.pop()
        if not isinstance(func, _Global):
            raise self.fail("a recognised global under REDUCE", type(func).__name__)
        if not isinstance(args, tuple):
            raise self.fail(f"an argument tuple for {func.name}", type(args).__name__)
        builder = _REDUCERS.get(func.role)
        if builder is None:
            raise self.fail("a callable global under REDUCE", f"{func.name}, which is not called")
        self.push(builder(self, func.name, args))

    def op_build(self) -> None:
        state = self.pop()
        if not self.stack:
            raise self.fail("an object under BUILD", "an empty stack")
        target = self.stack[-1]
        if isinstance(target, _DtypeSpec) and target.dtype is None:
            target.dtype = _dtype_from_state(self, target.typestr, state)
        elif isinstance(target, _Unbuilt):
            array = _array_from_state(self, state)
            self.stack[-1] = array
            for key in target.memo_keys:  # every memo entry that holds the placeholder now holds the array
                if self.memo.get(key) is target:
                    self.memo[key] = array
        else:
            raise self.fail("BUILD on a numpy dtype or array", f"BUILD on {type(target).__name__}")


def _reduce_reconstruct(machine: _Machine, name: str, args: tuple) -> _Unbuilt:
    if len(args) != 3 or not isinstance(args[0], _Global) or args[0].role != "ndarray":
        raise machine.fail(f"{name}(numpy.ndarray, shape, typecode)", f"arguments {_brief(args)}")
    return _Unbuilt()


def _reduce_dtype(machine: _Machine, name: str, args: tuple) -> _DtypeSpec:
    if not 1 <= len(args) <= 3 or not isinstance(args[0], (str, bytes)):
        raise machine.fail(f"{name}(typestr, align, copy)", f"arguments {_brief(args)}")
    typestr = args[0] if isinstance(args[0], str) else args[0].decode("latin-1")
    if not _TYPESTR.fullmatch(typestr):
        raise machine.fail(f"a dtype among {', '.join(ALLOWED_DTYPES)}", f"dtype {typestr!r}")
    return _DtypeSpec(typestr)


def _reduce_encode(machine: _Machine, name: str, args: tuple) -> bytes:
    if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
        raise machine.fail(f"{name}(text, 'latin1')", f"arguments {_brief(args)}")
    try:
        return args[0].encode("latin-1")
    except UnicodeEncodeError:
        raise machine.fail("latin-1 text for _codecs.encode", "characters beyond U+00FF") from None


def _reduce_bytes(machine: _Machine, name: str, args: tuple) -> bytes:
    if args != ():
        raise machine.fail(f"{name}() without arguments", f"arguments {_brief(args)}")
    return b""


def _reduce_frombuffer(machine: _Machine, name: str, args: tuple) -> np.ndarray:
    if len(args) != 4 or not isinstance(args[0], (bytes, bytearray)) or not isinstance(args[1], _DtypeSpec):
        raise machine.fail(f"{name}(buffer, dtype, shape, order)", f"arguments {_brief(args)}")
    buffer, spec, shape, order = args
    if order not in ("C", "F"):
        raise machine.fail("order 'C' or 'F'", repr(order))
    return _make_array(machine, buffer, _built_dtype(machine, spec), shape, fortran=order == "F")


_REDUCERS: dict[str, Callable[[_Machine, str, tuple], object]] = {
    "reconstruct": _reduce_reconstruct,
    "dtype": _reduce_dtype,
    "encode": _reduce_encode,
    "bytes": _reduce_bytes,
    "frombuffer": _reduce_frombuffer,
}


def _dtype_from_state(machine: _Machine, typestr: str, state: object) -> np.dtype:
    """The dtype that ``numpy.dtype.__setstate__`` would make, for simple little-endian numbers only."""
    # state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise machine.fail("a numpy dtype state (3, byteorder, None, None, None, ...)", f"state {_brief(state)}")
    order = state[1].decode("latin-1") if isinstance(state[1], bytes) else state[1]
    if any(part is not None for part in state[2:5]) or (len(state) == 9 and state[8] is not None):
        raise machine.fail("a plain numeric dtype", "a structured or sub-array dtype")
    if order not in ("<", "|", "="):
        raise machine.fail("a little-endian dtype ('<' or '|')", f"byte order {order!r} for {typestr}")
    dtype = np.dtype(("<" if order in ("<", "=") else "|") + typestr)  # typestr matched [uif][1248]
    if dtype.str not in ALLOWED_DTYPES:
        raise machine.fail(f"a dtype among {', '.join(ALLOWED_DTYPES)}", f"dtype {dtype.str}")
    return dtype


def _built_dtype(machine: _Machine, spec: object) -> np.dtype:
    if not isinstance(spec, _DtypeSpec) or spec.dtype is None:
        raise machine.fail("a numpy dtype with its BUILD state", type(spec).__name__)
    return spec.dtype


def _array_from_state(machine: _Machine, state: object) -> np.ndarray:
    """``ndarray.__setstate__``: ``(version, shape, dtype, is_fortran, rawdata)`` (version optional)."""
    if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise machine.fail("an ndarray state (1, shape, dtype, is_fortran, rawdata)", f"state {_brief(state)}")
    shape, spec, fortran, raw = state
    if isinstance(raw, _View):
        raw = raw.view  # the input itself: no copy
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise machine.fail("the array's raw data as bytes", type(raw).__name__)
    if not isinstance(fortran, (bool, int)):
        raise machine.fail("a bool is_fortran", type(fortran).__name__)
    return _make_array(machine, raw, _built_dtype(machine, spec), shape, fortran=bool(fortran))


def _make_array(machine: _Machine, raw: bytes | bytearray | memoryview, dtype: np.dtype, shape: object, *,
                fortran: bool) -> np.ndarray:
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or not all(
            isinstance(side, int) and not isinstance(side, bool) and 0 <= side <= _MAX_SIDE for side in shape):
        raise machine.fail(f"a shape of at most {_MAX_NDIM} ints in [0, 2**31)", f"shape {_brief(shape)}")
    addressed = math.prod(side for side in shape if side)  # numpy indexes these even when another side is 0
    if addressed > _MAX_ELEMENTS:
        raise machine.fail("a shape of at most 2**40 elements (zero sides left out)", f"shape {shape}")
    expected, size = math.prod(shape) * dtype.itemsize, memoryview(raw).nbytes
    if expected != size:
        raise machine.fail(f"{expected} raw bytes for shape {shape} of {dtype.str}", f"{size} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _brief(value: object, levels: int = 3) -> str:
    """A short description of an untrusted value for error messages (types, not contents; ``levels`` tuples deep)."""
    if isinstance(value, tuple):
        if levels <= 0:
            return "(...)"
        inner = ", ".join(_brief(v, levels - 1) for v in value[:6])
        return f"({inner}{', ...' if len(value) > 6 else ''})"
    if isinstance(value, _Global):
        return value.name
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"an int of {len(str(abs(value)))} digits"
    if isinstance(value, (int, float, type(None))) or (isinstance(value, (str, bytes)) and len(value) <= 16):
        return repr(value)
    return type(value).__name__


def _check_plain(result: object, machine: _Machine) -> None:
    """Refuse a result that still holds an unfinished array, a bare dtype or a global (walks without recursion)."""
    pending, seen = [result], set()
    while pending:
        value = pending.pop()
        if isinstance(value, _MARKERS):
            what = {"_Global": "a global that was never called", "_DtypeSpec": "a bare numpy dtype",
                    "_Unbuilt": "an array without its BUILD state",
                    "_View": "a BUILD state reused elsewhere"}[type(value).__name__]
            machine.op_pos = machine.pos
            raise machine.fail("plain data and finished numpy arrays", what)
        if isinstance(value, (list, tuple, dict)) and id(value) not in seen:
            seen.add(id(value))
            if isinstance(value, dict):
                pending.extend(value.keys())
                pending.extend(value.values())
            else:
                pending.extend(value)


_OPCODES = {
    b"\x80": _Machine.op_proto, b"\x95": _Machine.op_frame, b".": _Machine.op_stop,
    b"N": _Machine.op_none, b"\x88": _Machine.op_true, b"\x89": _Machine.op_false,
    b"J": _Machine.op_binint, b"K": _Machine.op_binint1, b"M": _Machine.op_binint2,
    b"\x8a": _Machine.op_long1, b"\x8b": _Machine.op_long4, b"G": _Machine.op_binfloat,
    b"U": _Machine.op_short_binstring, b"T": _Machine.op_binstring,
    b"C": _Machine.op_short_binbytes, b"B": _Machine.op_binbytes, b"\x8e": _Machine.op_binbytes8,
    b"\x96": _Machine.op_bytearray8,
    b"\x8c": _Machine.op_short_binunicode, b"X": _Machine.op_binunicode, b"\x8d": _Machine.op_binunicode8,
    b"(": _Machine.op_mark, b")": _Machine.op_empty_tuple, b"t": _Machine.op_tuple,
    b"\x85": _Machine.op_tuple1, b"\x86": _Machine.op_tuple2, b"\x87": _Machine.op_tuple3,
    b"]": _Machine.op_empty_list, b"l": _Machine.op_list, b"a": _Machine.op_append, b"e": _Machine.op_appends,
    b"}": _Machine.op_empty_dict, b"d": _Machine.op_dict, b"s": _Machine.op_setitem, b"u": _Machine.op_setitems,
    b"q": _Machine.op_binput, b"r": _Machine.op_long_binput, b"\x94": _Machine.op_memoize,
    b"h": _Machine.op_binget, b"j": _Machine.op_long_binget,
    b"c": _Machine.op_global, b"\x93": _Machine.op_stack_global, b"R": _Machine.op_reduce, b"b": _Machine.op_build,
}
_DISPATCH = {code[0]: handler for code, handler in _OPCODES.items()}
_MEMO_PUTS = {ord("q"): 2, ord("r"): 5, 0x94: 1}  # BINPUT, LONG_BINPUT, MEMOIZE: opcode + argument bytes
_BUILD = ord("b")


def _check_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, "a positive integer", repr(value))
    return value


def loads(data: bytes | bytearray | memoryview, *, source: str, max_bytes: int = MAX_BYTES,
          max_items: int = MAX_ITEMS) -> object:
    """Decode one pickle of plain data and NumPy arrays, executing nothing.

    Parameters
    ----------
    data : bytes-like
        The whole pickle (a single ``STOP``, nothing after it).
    source : str
        What the bytes are (a file name), used in every error message.
    max_bytes : int
        Refuse longer input.
    max_items : int
        Refuse input that creates or stores more values than this.

    Returns
    -------
    object
        ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``bytearray``, ``list``,
        ``tuple``, ``dict`` or ``numpy.ndarray``, nested.  An array whose raw data is 1 MiB or
        more views ``data`` instead of copying it: read-only for ``bytes``, sharing memory
        with a ``bytearray`` (copy the array, or pass ``bytes``, to keep them apart).

    Raises
    ------
    DataError
        Naming ``source``, the offending opcode or global and its byte offset.

    Examples
    --------
    >>> import pickle
    >>> loads(pickle.dumps((1, "two", b"three", [4.5]), protocol=4), source="x")
    (1, 'two', b'three', [4.5])
    >>> loads(b"\\x80\\x02K\\x07", source="cut.pkl")
    Traceback (most recent call last):
    ...
    supsup_core.errors.DataError: cut.pkl: expected a STOP opcode, received the end of the input at byte 4
    """
    _check_limit("max_bytes", max_bytes)
    _check_limit("max_items", max_items)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigError("data", "bytes", type(data).__name__)
    size = memoryview(data).nbytes
    if size > max_bytes:
        raise DataError(f"{source}: expected at most {max_bytes:,} bytes of pickle (max_bytes), received {size:,}")
    return _Machine(data, source, max_items).run()


def load(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, max_items: int = MAX_ITEMS) -> object:
    """Decode a pickle file with :func:`loads`; a name ending in ``.gz`` is gunzipped first.

    ``max_bytes`` bounds the decompressed size too (a gzip bomb is refused after
    ``max_bytes`` bytes, not after filling memory).

    Raises
    ------
    DataError
        Naming the file: missing or not a regular file (a FIFO is refused, never waited on), unreadable,
        damaged gzip, too large, or not a plain-data pickle.
    """
    _check_limit("max_bytes", max_bytes)
    path = Path(path).expanduser()
    if path.name.endswith(".gz"):
        with open_regular(path, "a gzipped pickle file") as fh:
            data = gunzip(fh, limit=max_bytes, display=str(path), limit_name="max_bytes")
    else:
        data = read_regular(path, limit=max_bytes, what="a pickle file (max_bytes)")
    return loads(data, source=str(path), max_bytes=max_bytes, max_items=max_items)
