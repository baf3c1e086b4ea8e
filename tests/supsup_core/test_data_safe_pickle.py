"""Tests for supsup_core/data/safe_pickle.py: plain-data pickles decode exactly; nothing is ever executed.

``py2_dumps`` below writes pickles the way Python 2's cPickle does at protocol 2 (byte strings as
SHORT_BINSTRING / BINSTRING, arrays through ``numpy.core.multiarray._reconstruct`` with their raw
bytes in the BUILD state, containers memoized with BINPUT); test_data_cifar.py uses it too.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from supsup_core.data import safe_pickle
from supsup_core.data.safe_pickle import ALLOWED_DTYPES, load, loads
from supsup_core.errors import ConfigError, DataError

# -- a Python 2 style writer ------------------------------------------------------------------


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    size = (value.bit_length() + 8) // 8
    return b"\x8a" + bytes([size]) + value.to_bytes(size, "little", signed=True)


def _py2_str(raw: bytes) -> bytes:
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


class _Py2Writer:
    """Emits cPickle protocol-2 opcodes for None, bool, int, float, bytes (py2 str), str (unicode), containers, arrays."""

    def __init__(self) -> None:
        self.memo = 0

    def put(self) -> bytes:
        self.memo += 1
        return b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)

    def tuple(self, items: tuple) -> bytes:
        body = b"".join(self.dump(v) for v in items)
        if not items:
            return b")"
        if len(items) <= 3:
            return body + b"\x85\x86\x87"[len(items) - 1 : len(items)] + self.put()
        return b"(" + body + b"t" + self.put()

    def array(self, array: np.ndarray) -> bytes:
        order, typestr = array.dtype.str[0], array.dtype.str[1:]
        out = b"cnumpy.core.multiarray\n_reconstruct\n" + self.put() + b"cnumpy\nndarray\n" + self.put()
        out += b"K\x00\x85" + self.put() + _py2_str(b"b") + b"\x87R" + self.put()
        out += b"(K\x01" + self.tuple(tuple(array.shape))
        out += b"cnumpy\ndtype\n" + self.put() + _py2_str(typestr.encode()) + b"K\x00K\x01\x87R" + self.put()
        out += b"(K\x03" + _py2_str(order.encode()) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t" + self.put() + b"b"
        out += b"\x89" + _py2_str(np.ascontiguousarray(array).tobytes()) + b"t" + self.put() + b"b"
        return out

    def dump(self, value: object) -> bytes:
        if value is None:
            return b"N"
        if value is True or value is False:
            return b"\x88" if value else b"\x89"
        if isinstance(value, int):
            return _py2_int(value)
        if isinstance(value, float):
            return b"G" + struct.pack(">d", value)
        if isinstance(value, bytes):
            return _py2_str(value) + self.put()
        if isinstance(value, str):
            raw = value.encode("utf-8", "surrogatepass")
            return b"X" + struct.pack("<I", len(raw)) + raw + self.put()
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, tuple):
            return self.tuple(value)
        if isinstance(value, list):
            out = b"]" + self.put()
            for start in range(0, len(value), 1000):  # cPickle batches APPENDS by 1000
                out += b"(" + b"".join(self.dump(v) for v in value[start : start + 1000]) + b"e"
            return out
        if isinstance(value, dict):
            out = b"}" + self.put()
            items = list(value.items())
            for start in range(0, len(items), 1000):
                out += b"(" + b"".join(self.dump(k) + self.dump(v) for k, v in items[start : start + 1000]) + b"u"
            return out
        raise TypeError(type(value).__name__)


def py2_dumps(value: object) -> bytes:
    """``value`` as Python 2's ``cPickle.dumps(value, 2)`` would write it (byte strings are py2 ``str``)."""
    return b"\x80\x02" + _Py2Writer().dump(value) + b"."


# -- comparison and strategies -----------------------------------------------------------------


def same(a: object, b: object) -> bool:
    """Deep equality that also compares types, array dtypes, shapes and bytes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


ARRAY_DTYPES = [np.dtype(d) for d in ALLOWED_DTYPES]
_arrays = st.tuples(
    st.sampled_from(ARRAY_DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), st.booleans()
).flatmap(lambda a: hnp.arrays(a[0], a[1], elements=hnp.from_dtype(a[0], allow_nan=False)).map(
    lambda x, fortran=a[2]: np.asfortranarray(x) if fortran else x))
_keys = st.integers(-1000, 1000) | st.text(max_size=8) | st.binary(max_size=8)
_leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
           | st.text(max_size=12) | st.binary(max_size=12) | _arrays)
plain_values = st.recursive(
    _leaves,
    lambda children: st.lists(children, max_size=4) | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(_keys, children, max_size=4),
    max_leaves=10,
)


class TestRoundTrip:
    @given(value=plain_values, protocol=st.integers(2, 5))
    def test_matches_pickle_dumps(self, value, protocol):
        """Nested dicts/lists/tuples of ints, floats, str, bytes and arrays decode to what pickle.dumps wrote."""
        assert same(loads(pickle.dumps(value, protocol=protocol), source="p"), value)

    @given(value=plain_values)
    def test_matches_python2_cpickle(self, value):
        """The same values written the way Python 2's cPickle writes protocol 2 decode identically."""
        assert same(loads(py2_dumps(value), source="p"), value)

    @pytest.mark.parametrize("protocol", [2, 3, 4, 5])
    def test_edge_values(self, protocol):
        """Empty bytes (protocol 2: bytes()), large ints, shared objects, Fortran and 0-d arrays, big strings."""
        shared = [1, 2]
        value = {b"": b"", "big": 2**200, "neg": -(2**64), "shared": (shared, shared),
                 "f": np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3)), "0d": np.array(7.5),
                 "empty": np.zeros((0, 3), np.uint8), "long": "é" * 300, "raw": bytes(range(256)) * 3}
        out = loads(pickle.dumps(value, protocol=protocol), source="p")
        assert same(out, value)
        assert out["shared"][0] is out["shared"][1]

    def test_arrays_view_the_bytes_read_only(self):
        """An array rebuilt from immutable bytes is read-only (nothing can write into the decoded input)."""
        out = loads(pickle.dumps(np.arange(3, dtype=np.uint8), protocol=4), source="p")
        assert not out.flags.writeable

    @pytest.mark.parametrize("protocol", [2, 3, 4, 5, "py2"])
    def test_large_strings(self, protocol):
        """Byte strings of 1 MiB and more: array data is viewed, not copied; elsewhere they are plain bytes."""
        big = np.arange(300_000, dtype="<f8").reshape(1000, 300)  # 2.4 MB of raw data
        raw = bytes(range(256)) * 5000  # 1.28 MB
        value = {b"array": big, b"bytes": raw, b"in a tuple": (raw, 1), b"in a list": [raw]}
        blob = py2_dumps(value) if protocol == "py2" else pickle.dumps(value, protocol=protocol)
        out = loads(blob, source="p")
        assert same(out, value)
        assert type(out[b"bytes"]) is bytes and type(out[b"in a tuple"][0]) is bytes
        if protocol in (2, "py2", 3, 4):  # protocol 5 arrays are rebuilt from their own buffer object
            assert np.shares_memory(out[b"array"], np.frombuffer(blob, np.uint8)) == (protocol != 2)

    def test_reused_build_state_refused(self):
        """A BUILD state holding a viewed string cannot be smuggled into the result (only a forged pickle does that)."""
        writer = _Py2Writer()
        body = writer.array(np.zeros(300_000, "<f8"))
        blob = b"\x80\x02]" + writer.put() + body + b"a" + b"h" + bytes([writer.memo - 1]) + b"a."
        with pytest.raises(DataError, match="a BUILD state reused elsewhere"):
            loads(blob, source="forged.pkl")

    def test_str_and_bytes_keys(self):
        """A CIFAR-style dict decodes with bytes keys from Python 2 and str keys from Python 3."""
        batch = {"data": np.zeros((2, 3), np.uint8), "labels": [1, 2]}
        assert list(loads(py2_dumps({k.encode(): v for k, v in batch.items()}), source="p")) == [b"data", b"labels"]
        assert list(loads(pickle.dumps(batch, protocol=2), source="p")) == ["data", "labels"]

    def test_deep_nesting_is_capped(self):
        """Containers nest at most 64 deep: 64 decode, 65 or 100,000 raise one DataError (no recursion either way)."""
        def nested(depth: int) -> bytes:
            return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."

        out = loads(nested(64), source="deep")
        for _ in range(63):
            (out,) = out
        assert out == []
        for depth in (65, 100_000):
            with pytest.raises(DataError, match="expected containers nested at most 64 deep") as exc:
                loads(nested(depth), source="deep.pkl")
            one_line_naming(exc, "deep.pkl")

    def test_load_gzip_and_plain(self, tmp_path):
        """load reads a plain pickle, and gunzips a name ending in .gz."""
        value = {b"x": np.arange(5, dtype="<f8")}
        (tmp_path / "a.pkl").write_bytes(pickle.dumps(value, protocol=2))
        (tmp_path / "a.pkl.gz").write_bytes(gzip.compress(pickle.dumps(value, protocol=2)))
        assert same(load(tmp_path / "a.pkl"), value) and same(load(tmp_path / "a.pkl.gz"), value)


# -- hostile input ------------------------------------------------------------------------------


class _Payload:
    """Pickles to ``func(*args)``: what an attacker puts in a file."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker) -> dict[str, _Payload]:
    """Three payloads that each create ``marker`` when unpickled by pickle.loads."""
    return {
        "os.system": _Payload(os.system, f"touch '{marker}'"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", str(marker)]),
    }


def one_line_naming(exc: pytest.ExceptionInfo, name: str) -> str:
    """The error message, after checking it is one line that names ``name``."""
    message = str(exc.value)
    assert "\n" not in message and name in message, message
    return message


class TestHostile:
    @pytest.mark.parametrize("protocol", [2, 3, 4, 5])
    @pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
    def test_code_execution_refused_and_nothing_runs(self, tmp_path, name, protocol):
        """A pickle that calls os.system / eval / Popen is refused naming the global; the file it would create never appears."""
        marker = tmp_path / "pwned"
        blob = pickle.dumps(_payloads(marker)[name], protocol=protocol)
        with pytest.raises(DataError, match="received the global") as exc:
            loads(blob, source="evil.pkl")
        one_line_naming(exc, "evil.pkl")
        assert not marker.exists()

    @pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
    def test_the_payloads_are_real(self, tmp_path, name):
        """Control: pickle.loads of the same bytes does create the file, so the test above proves something."""
        marker = tmp_path / "pwned"
        result = pickle.loads(pickle.dumps(_payloads(marker)[name], protocol=2))  # our own payload, in tmp_path
        if isinstance(result, subprocess.Popen):
            result.wait()
        assert marker.exists()

    def test_hidden_global_refused(self, tmp_path):
        """A forbidden global deep inside an otherwise plain structure is refused too."""
        marker = tmp_path / "pwned"
        blob = pickle.dumps({"data": [1, 2, {"x": _payloads(marker)["os.system"]}]}, protocol=2)
        with pytest.raises(DataError, match="system"):
            loads(blob, source="nested.pkl")
        assert not marker.exists()

    @pytest.mark.parametrize(("value", "found"), [
        (np.array([1, None], dtype=object), "dtype 'O8'"),
        (np.array([1.0], dtype=">f8"), "byte order '>'"),
        (np.zeros(2, dtype=[("a", "<i4")]), "dtype 'V4'"),
        (np.array(["a"]), "dtype 'U1'"),
        (np.array([True]), "dtype 'b1'"),
    ])
    def test_dtypes_outside_the_allow_list(self, value, found):
        """Object, big-endian, structured, unicode and bool arrays are refused, naming what was found."""
        with pytest.raises(DataError, match=found):
            loads(pickle.dumps(value, protocol=2), source="p")

    def test_raw_length_must_match_shape(self):
        """Raw data shorter than shape x itemsize is refused."""
        blob = pickle.dumps(np.arange(4, dtype=np.uint8), protocol=3)
        assert blob.count(b"C\x04\x00\x01\x02\x03") == 1
        with pytest.raises(DataError, match=r"expected 4 raw bytes for shape \(4,\) of \|u1, received 3 bytes"):
            loads(blob.replace(b"C\x04\x00\x01\x02\x03", b"C\x03\x00\x01\x02"), source="p")

    @pytest.mark.parametrize(("blob", "found"), [
        (b"\x80\x04\x8c\xffab", "declared length of 255 bytes with only 2 left"),
        (b"\x80\x02T\xff\xff\xff\xff.", "declared length of -1 bytes"),
        (b"\x80\x02B\x00\x00\x00\x10.", "declared length of 268435456 bytes"),
        (b"\x80\x02\xff.", r"an unknown opcode \(0xff\)"),
        (b"(i os\nsystem\n.", "the opcode INST"),
        (b"\x80\x02cos\nsystem\n.", "the global os.system"),
        (b"\x80\x02K\x07", "received the end of the input"),
        (b"\x80\x02K\x07.junk", "4 trailing bytes"),
        (b"\x80\x02K\x01K\x02.", "2 values"),
        (b"\x80\x06N.", "protocol 6"),
        (b"\x80\x02e.", "a MARK before this opcode"),
        (b"\x80\x02a.", "an empty stack"),
        (b"\x80\x02h\x05.", "key 5"),
        (b"\x80\x02}]K\x01s.", "a key of type list"),
        (b"\x80\x02}K\x01b.", "BUILD on dict"),
        (b"\x80\x02cnumpy\nndarray\n.", "a global that was never called"),
        (b"\x80\x02cnumpy\nndarray\n)R.", "numpy.ndarray, which is not called"),
        (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R.",
         "an array without its BUILD state"),
        (b"\x80\x02cnumpy\ndtype\nU\x02f4\x85R.", "a bare numpy dtype"),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.", "'rot13'"),
        (b"\x80\x02cbuiltins\nbytes\nK\x05\x85R.", r"bytes\(\) without arguments"),
        (b"\x80\x02\x8b\x00\x10\x00\x00" + b"\x01" * 4096 + b".", "an integer of at most 1024 bytes"),
        (b"\x80\x02c" + b"a" * 300 + b".", "a newline within 256 bytes"),
    ])
    def test_malformed_streams(self, blob, found):
        """Truncations, bad lengths, unknown or unsupported opcodes, stray values: one-line DataErrors."""
        with pytest.raises(DataError, match=found) as exc:
            loads(blob, source="bad.pkl")
        one_line_naming(exc, "bad.pkl")

    def test_deep_tuple_key_neither_crashes_nor_recurses(self):
        """A dict key nested 200,000 tuples deep (CPython's tuple hash recursion used to kill the process) is refused."""
        code = ("from supsup_core.data.safe_pickle import loads\n"
                "try:\n    loads(b'\\x80\\x02}' + b')' + b'\\x85' * 200000 + b'Ns.', source='deepkey.pkl')\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
        out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (out.returncode, out.stderr[-500:])
        assert out.stdout.startswith("DataError deepkey.pkl: expected containers nested at most 64 deep"), out.stdout

    @pytest.mark.parametrize(("blob", "found"), [
        (b"\x80\x02}" + b")\x85\x85" + b"Ns.", "a key of type tuple holding a tuple"),
        (b"\x80\x02}" + b"]\x85" + b"Ns.", "a key of type tuple holding a list"),
        (b"\x80\x02}" + b"}" + b"Ns.", "a key of type dict"),
        (b"\x80\x02}" + b"\x96\x01\x00\x00\x00\x00\x00\x00\x00x" + b"Ns.", "a key of type bytearray"),
        (b"\x80\x02}" + b"cnumpy\nndarray\n" + b"Ns.", "a key of type _Global"),
    ])
    def test_dict_keys_are_scalars_or_flat_tuples(self, blob, found):
        """A key is a str, bytes, number, None or a flat tuple of those: anything deeper is refused before hashing."""
        with pytest.raises(DataError, match="expected a dict key of str, bytes, int, float, bool, None or a tuple of "
                                            f"those, received {found}"):
            loads(blob, source="keys.pkl")
        assert loads(b"\x80\x02}" + b"K\x01U\x01a\x86" + b"Ns.", source="ok") == {(1, b"a"): None}

    def test_argument_description_is_bounded(self):
        """A deep tuple given to a global is described in a few levels, never by unbounded recursion."""
        reconstruct = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n"
        with pytest.raises(DataError, match=r"received arguments \(\(\(\(\.\.\.\)\)\)\)"):
            loads(reconstruct + b")" + b"\x85" * 40 + b"\x85R.", source="args.pkl")
        with pytest.raises(DataError, match="nested at most 64 deep"):  # was RecursionError
            loads(reconstruct + b")" + b"\x85" * 5000 + b"\x85R.", source="args.pkl")

    @pytest.mark.parametrize(("blob", "found"), [
        (b"\x80\x02]q\x00h\x00a.", "a list that contains itself"),
        (b"\x80\x02]q\x00]q\x01h\x00aa.", "a list filled after it was placed inside another container"),
        (b"\x80\x02}q\x00K\x01]q\x01sh\x01K\x02a.", "a list filled after it was placed"),
        (b"\x80\x02}q\x00K\x01h\x00s.", "a dict that contains itself"),
    ])
    def test_cycles_refused(self, blob, found):
        """A container holding itself, or filled after being placed in another (only cycles do that), is refused."""
        with pytest.raises(DataError, match=f"expected plain data without cycles, received {found}"):
            loads(blob, source="cycle.pkl")

    @pytest.mark.parametrize(("shape", "found"), [
        ((0, 10**30), r"shape \(0, an int of 31 digits\)"),
        ((0, 2**31), r"shape \(0, 2147483648\)"),
        ((2**31, 0), r"shape \(2147483648, 0\)"),
        ((0, 2**30, 2**30, 2**30), r"expected a shape of at most 2\*\*40 elements"),
    ])
    def test_zero_size_arrays_with_huge_sides(self, shape, found):
        """A zero-size array passes the byte count, but every side is below 2**31 and the other sides are bounded."""
        blob = pickle.dumps(np.zeros((0, 7), np.uint8), protocol=2)
        old = b"K\x00K\x07\x86"
        assert blob.count(old) == 1
        new = b"(" + b"".join(_py2_int(side) for side in shape) + b"t"
        with pytest.raises(DataError, match=found) as exc:
            loads(blob.replace(old, new), source="zero.pkl")
        one_line_naming(exc, "zero.pkl")

    def test_max_items(self):
        """More values than max_items is refused."""
        blob = pickle.dumps(list(range(100)), protocol=2)
        assert loads(blob, source="p", max_items=500) == list(range(100))
        with pytest.raises(DataError, match="max_items"):
            loads(blob, source="p", max_items=50)

    def test_max_bytes(self, tmp_path):
        """loads and load refuse input beyond max_bytes; a gzip bomb stops at the limit."""
        blob = pickle.dumps(b"x" * 1000, protocol=3)
        with pytest.raises(DataError, match="max_bytes"):
            loads(blob, source="p", max_bytes=100)
        (tmp_path / "bomb.pkl.gz").write_bytes(gzip.compress(b"\x80\x03B" + b"\x00" * 20_000_000))
        with pytest.raises(DataError, match=r"bomb.pkl.gz: expected at most 1,000,000 bytes .*once decompressed"):
            load(tmp_path / "bomb.pkl.gz", max_bytes=1_000_000)
        (tmp_path / "big.pkl").write_bytes(blob)
        with pytest.raises(DataError, match="big.pkl"):
            load(tmp_path / "big.pkl", max_bytes=100)

    def test_load_errors_name_the_file(self, tmp_path):
        """A missing file or a damaged gzip stream raises DataError naming the file."""
        with pytest.raises(DataError, match="missing.pkl: expected a pickle file"):
            load(tmp_path / "missing.pkl")
        (tmp_path / "d.pkl.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 20)
        with pytest.raises(DataError, match="d.pkl.gz"):
            load(tmp_path / "d.pkl.gz")

    def test_bad_arguments(self):
        """Non-bytes data and non-positive limits raise ConfigError naming the argument."""
        with pytest.raises(ConfigError, match="data"):
            loads("text", source="p")
        with pytest.raises(ConfigError, match="max_items"):
            loads(b"N.", source="p", max_items=0)

    def test_never_imports_what_a_pickle_names(self):
        """A global naming an importable but unloaded module is refused without importing the module."""
        code = ("import sys; from supsup_core.data.safe_pickle import loads\n"
                "try:\n    loads(b'\\x80\\x02cantigravity\\nfly\\n)R.', source='p')\n"
                "except Exception as exc:\n    print(type(exc).__name__, 'antigravity' in sys.modules)\n")
        out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["DataError", "False"]

    def test_module_exports(self):
        """The public names are the loaders, the limits and the dtype allow-list."""
        assert set(safe_pickle.__all__) == {"ALLOWED_DTYPES", "MAX_BYTES", "MAX_ITEMS", "load", "loads"}
