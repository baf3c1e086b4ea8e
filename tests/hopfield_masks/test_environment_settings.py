"""The environment variables that tune file safety accept their documented forms and refuse anything else clearly.

- ``HOPFIELD_MASKS_LOCK_TIMEOUT``: seconds, a plain number or with an ``s`` (``5``, ``0.5``, ``5s``, ``2.5 s``);
- ``HOPFIELD_MASKS_MAX_ARRAY_BYTES``: a byte size, a number or with a unit (``160MB``, ``160MiB``, ``1e9``);
- anything else: one line naming the variable, what was expected and what was received.
"""

from __future__ import annotations

import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.errors import InvalidArgumentError, StorageFormatError
from hopfield_masks.safety.integrity import max_array_bytes
from hopfield_masks.safety.locking import lock_timeout


@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), ("5s", 5.0), ("0.5", 0.5), ("2.5 s", 2.5), (" 7S ", 7.0),
                                               ("0", 0.0)])
def test_lock_timeout_forms(monkeypatch, text, seconds):
    monkeypatch.setenv("HOPFIELD_MASKS_LOCK_TIMEOUT", text)
    assert lock_timeout() == seconds
    assert lock_timeout(1.5) == 1.5  # an explicit timeout wins


@pytest.mark.parametrize("text", ["5m", "soon", "-1", "nan", "inf", "5 ms", "1e999"])
def test_lock_timeout_refuses_the_rest(monkeypatch, text):
    monkeypatch.setenv("HOPFIELD_MASKS_LOCK_TIMEOUT", text)
    with pytest.raises(InvalidArgumentError, match="HOPFIELD_MASKS_LOCK_TIMEOUT") as info:
        lock_timeout()
    message = str(info.value)
    assert "\n" not in message and "second" in message and repr(text) in message


@pytest.mark.parametrize(("text", "limit"), [("160MB", 160 * 10**6), ("160MiB", 160 << 20), ("1e9", 10**9),
                                             ("4096", 4096), ("2 GiB", 2 << 30)])
def test_max_array_bytes_forms(monkeypatch, text, limit):
    monkeypatch.setenv("HOPFIELD_MASKS_MAX_ARRAY_BYTES", text)
    assert max_array_bytes() == limit


@pytest.mark.parametrize("text", ["lots", "160XB", "0", "-5MB"])
def test_max_array_bytes_refuses_the_rest(monkeypatch, text):
    monkeypatch.setenv("HOPFIELD_MASKS_MAX_ARRAY_BYTES", text)
    with pytest.raises(InvalidArgumentError, match="HOPFIELD_MASKS_MAX_ARRAY_BYTES") as info:
        max_array_bytes()
    assert "\n" not in str(info.value) and repr(text) in str(info.value)


def test_a_ceiling_with_a_unit_is_enforced(tmp_path, monkeypatch):
    """HOPFIELD_MASKS_MAX_ARRAY_BYTES=1KB refuses a 2 kB task naming the ceiling (a unit is no longer ignored)."""
    path = tmp_path / "bank.h5"
    with create_bank(path) as bank:
        bank.write_task("big", {"w": np.ones(16_000, bool)})  # 2000 bytes packed
    monkeypatch.setenv("HOPFIELD_MASKS_MAX_ARRAY_BYTES", "1KB")
    with open_bank(path) as bank, pytest.raises(StorageFormatError, match="MAX_ARRAY_BYTES = 1,000"):
        bank.read_task("big")


def test_a_bad_value_is_refused_when_a_bank_is_opened(tmp_path, monkeypatch):
    """A malformed ceiling is reported as such at open, not as a damaged file."""
    path = tmp_path / "bank.h5"
    with create_bank(path) as bank:
        bank.write_task("t", {"w": np.ones(10, bool)})
    monkeypatch.setenv("HOPFIELD_MASKS_MAX_ARRAY_BYTES", "lots")
    with pytest.raises(InvalidArgumentError, match="HOPFIELD_MASKS_MAX_ARRAY_BYTES: expected"):
        with open_bank(path) as bank:
            bank.read_task("t")
