"""Readers and copiers of untrusted files, and sizes from untrusted arguments: checked before anything is followed,
copied or allocated.

- The repack copy (any append that deletes or replaces) checks every object it would copy -- links, external
  storage, declared sizes, recursively -- and refuses before writing anything; the bank and the linked file stay
  as they were.
- ``Reservoir.from_file`` (and a bank's reservoir attachment) refuses links, external storage and impossible
  declared sizes, and bounds what the couplings become in memory (sign couplings unpack 16-fold) like a declared
  array; ``HopfieldNetwork.from_arrays`` checks the couplings' shape before it allocates.
- Network sizes and byte budgets are bounded against the per-array ceiling and this process's memory.

Readers that would allocate gigabytes on a bad file run in ``untrusted_worker.py`` under a memory limit.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hopfield_masks import budget as budget_module
from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.budget import parse_budget
from hopfield_masks.capacity import capacity_sweep, check_sweep_size
from hopfield_masks.encoding import EncodeSettings, encode_bank, read_bank_reservoir
from hopfield_masks.errors import BudgetError, InvalidArgumentError, StorageFormatError
from hopfield_masks.network import HopfieldNetwork, coupling_nbytes, pack_sign_couplings, unpack_sign_couplings
from hopfield_masks.reservoir import Reservoir

WORKER = Path(__file__).with_name("untrusted_worker.py")
ROOT = Path(__file__).parents[2]
MEMORY_LIMIT = 1536 << 20  # the reading process: the library plus h5py/NumPy need about 0.4 GiB
HEBBIAN = {"id": "hebbian"}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_worker(arguments: list[str]) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, str(WORKER), *arguments], capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_memory, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {row["scenario"]: row for row in rows}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_bank(path: Path) -> None:
    rng = np.random.default_rng(0)
    with create_bank(path, "hdf5-packed", metadata={"seed": 0}) as bank:
        for i in range(3):
            bank.write_task(str(i), {"fc": rng.random((12, 10)) < 0.3, "out": rng.random(7) < 0.5})
        bank.write_attachment("notes", lambda g: g.create_dataset("values", data=np.arange(16, dtype=np.float32)))


def other_file(folder: Path) -> Path:
    """An innocent file that hostile links point into."""
    path = folder / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("grp").create_dataset("data", data=np.full(15, 255, np.uint8))
        f.create_dataset("secret", data=np.arange(10, dtype=np.uint8))
    return path


def reservoir_attrs(size: int, dtype: str, length: int, *, key_units: int = 0, n_tasks: int = 0) -> dict:
    """The attributes of a reservoir group (format 2) of one rule, one layer of ``length`` entries."""
    return {"kind": "reservoir", "format_version": 2, "rule": json.dumps({"id": "hebbian"}), "dtype": dtype,
            "network_size": size, "mask_layout": json.dumps({"names": ["w"], "shapes": [[length]]}),
            "block_layout": json.dumps({"length": length, "block_size": size - key_units, "pad_mode": "wrap"}),
            "n_tasks": n_tasks, "budget": 0, "key_units": key_units, "key_seed": 0}


def fill_sign_reservoir(group: h5py.Group, size: int, *, compress: bool = False) -> None:
    """One sign network of ``size`` units (all couplings -1): ``N(N-1)/16`` bytes of bits that unpack to ``N**2``
    bytes; ``compress``: gzip, about 1000-fold (what a compressed dataset may claim)."""
    group.attrs.update(reservoir_attrs(size, "sign", size))
    width, step = coupling_nbytes(size, "sign") - 4, 1 << 20
    options = {"chunks": (1, min(step, width)), "compression": "gzip", "compression_opts": 9} if compress else {}
    ds = group.create_dataset("couplings", shape=(1, width), dtype=np.uint8, **options)
    zeros = np.zeros((1, min(step, width)), np.uint8)
    for start in range(0, width, step):
        ds[:, start:start + step] = zeros[:, :min(step, width - start)]
    group.create_dataset("scales", data=np.ones(1, np.float32))
    group.create_dataset("spin_sums", data=np.zeros(size, np.int32))


def saved_reservoir(path: Path, *, key_units: int = 0) -> Path:
    res = Reservoir(MaskLayout(("w",), ((10,),)), 8, "hebbian", key_units=key_units)
    res.store({"w": np.arange(10) % 3 == 0})
    res.save(path)
    return path


# ------------------------------------------------------------------------------------------------ repack
def _link_attachment(f: h5py.File, other: Path) -> str:
    f["attachments"]["evil"] = h5py.ExternalLink(str(other), "/grp")
    return "/attachments/evil"


def _soft_attachment(f: h5py.File, other: Path) -> str:
    f["attachments"]["alias"] = h5py.SoftLink("/tasks")
    return "/attachments/alias"


def _link_task(f: h5py.File, other: Path) -> str:
    f["tasks"]["x"] = h5py.ExternalLink(str(other), "/secret")
    return "/tasks/x"


def _nested_link(f: h5py.File, other: Path) -> str:
    f["attachments"]["notes"].create_group("inner")["deep"] = h5py.ExternalLink(str(other), "/grp/data")
    return "/attachments/notes/inner/deep"


def _external_storage(f: h5py.File, other: Path) -> str:
    raw = other.with_name("secret.bin")
    raw.write_bytes(bytes(range(16)))
    f["attachments"].create_group("raw").create_dataset("data", shape=(16,), dtype=np.uint8, external=[(str(raw), 0, 16)])
    return "/attachments/raw/data"


def _other_tool_group(f: h5py.File, other: Path) -> str:
    f.create_group("extra")["evil"] = h5py.ExternalLink(str(other), "/grp")
    return "/extra/evil"


HOSTILE = {"external link in /attachments": _link_attachment, "soft link in /attachments": _soft_attachment,
           "external link in /tasks": _link_task, "external link inside an attachment": _nested_link,
           "external storage in an attachment": _external_storage, "external link in another tool's group": _other_tool_group}


class TestRepack:
    @pytest.mark.parametrize("craft", HOSTILE.values(), ids=HOSTILE.keys())
    def test_an_append_that_repacks_refuses_links_and_external_storage(self, tmp_path, craft):
        """Deleting a task repacks the bank: an object from outside it is refused (naming bank and object) before
        anything is written; the bank, the linked file and the folder stay as they were."""
        path, other = tmp_path / "bank.h5", other_file(tmp_path)
        make_bank(path)
        with h5py.File(path, "r+") as f:
            where = craft(f, other)
        before, folder = (sha(path), sha(other)), sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(StorageFormatError) as info:
            with open_bank(path, "a") as bank:
                bank.delete_task("0")
        assert str(path) in str(info.value) and where in str(info.value) and "\n" not in str(info.value)
        assert (sha(path), sha(other)) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == folder  # no temporary file left behind

    def test_encoding_twice_never_copies_a_linked_attachment_into_the_bank(self, tmp_path):
        """``encode`` run twice replaces the reservoir (a repack): a linked attachment is refused, nothing copied."""
        path, other = tmp_path / "bank.h5", other_file(tmp_path)
        make_bank(path)
        encode_bank(path, "64KB", EncodeSettings(rule="hebbian"))
        with h5py.File(path, "r+") as f:
            _link_attachment(f, other)
        before = sha(path), sha(other)
        with pytest.raises(StorageFormatError, match="external link"):
            encode_bank(path, "64KB", EncodeSettings(rule="hebbian"))
        assert (sha(path), sha(other)) == before

    def test_a_clean_bank_still_repacks(self, tmp_path):
        """The checks refuse nothing a bank itself writes: delete, encode twice, read back."""
        path = tmp_path / "bank.h5"
        make_bank(path)
        encode_bank(path, "64KB", EncodeSettings(rule="hebbian"))
        encode_bank(path, "64KB", EncodeSettings(rule="hebbian"))
        with open_bank(path, "a") as bank:
            bank.delete_task("0")
        with open_bank(path) as bank:
            assert bank.tasks() == ["1", "2"] and bank.attachments() == ["notes", "reservoir-64000"]
        assert read_bank_reservoir(path, "64KB").n_tasks == 3


# ------------------------------------------------------------------------------------------------ reservoir files
class TestReservoirFiles:
    def test_external_storage_is_refused(self, tmp_path):
        """A reservoir dataset whose bytes live in another file is never read."""
        path = saved_reservoir(tmp_path / "res.h5")
        raw = tmp_path / "scales.bin"
        raw.write_bytes(np.ones(2, np.float32).tobytes())
        with h5py.File(path, "r+") as f:
            del f["scales"]
            f.create_dataset("scales", shape=(2,), dtype=np.float32, external=[(str(raw), 0, 8)])
        with pytest.raises(StorageFormatError, match="external files") as info:
            Reservoir.from_file(path)
        assert str(path) in str(info.value)

    @pytest.mark.parametrize("kind", ["soft", "external"])
    def test_links_are_never_followed(self, tmp_path, kind):
        """A soft or external link in a reservoir file is refused, naming the file and the link."""
        path = saved_reservoir(tmp_path / "res.h5")
        with h5py.File(path, "r+") as f:
            if kind == "soft":
                f.move("spin_sums", "hidden")
                f["spin_sums"] = h5py.SoftLink("/hidden")
            else:
                source = tmp_path / "source.h5"
                with h5py.File(source, "w") as g:
                    g.create_dataset("spin_sums", data=f["spin_sums"][()])
                del f["spin_sums"]
                f["spin_sums"] = h5py.ExternalLink(str(source), "/spin_sums")
        with pytest.raises(StorageFormatError, match=f"/spin_sums is an? {kind}"):
            Reservoir.from_file(path)

    def test_deeply_nested_json_attribute_is_one_error(self, tmp_path):
        """A layout attribute nested 100,000 deep: a StorageFormatError, not a RecursionError."""
        path = saved_reservoir(tmp_path / "res.h5")
        with h5py.File(path, "r+") as f:
            f.attrs["mask_layout"] = "[" * 100_000 + "]" * 100_000
        with pytest.raises(StorageFormatError, match="malformed reservoir attributes"):
            Reservoir.from_file(path)

    def test_sign_couplings_are_bounded_before_they_are_unpacked(self, tmp_path, monkeypatch):
        """Sign couplings unpack to 16 times their stored bytes: that must fit the per-array ceiling too."""
        path = tmp_path / "res.h5"
        with h5py.File(path, "w") as f:
            fill_sign_reservoir(f, 2048)  # 262 kB of bits, 4.2 MB unpacked
        monkeypatch.setenv("HOPFIELD_MASKS_MAX_ARRAY_BYTES", str(1 << 20))
        with pytest.raises(StorageFormatError, match="couplings take 4,194,304 B in memory.*per-array ceiling"):
            Reservoir.from_file(path)
        monkeypatch.delenv("HOPFIELD_MASKS_MAX_ARRAY_BYTES")
        assert Reservoir.from_file(path).network_size == 2048  # under the default ceiling it reads

    def test_readers_within_a_memory_limit(self, tmp_path):
        """Files and arguments that would make a reader allocate gigabytes: one HopfieldMasksError each, within 1.5 GiB.

        Declared float32 couplings of 60000² (13.4 GiB, nothing stored); a sign reservoir file of 8192 units and a
        bank's sign reservoir of 8192 units under a 16 MiB ceiling (4.2 MB of bits, 67 MB unpacked; the old reader's
        index arrays took 8 bytes per coupling more); a keyed reservoir claiming 10**12 tasks (recall of every task);
        from_arrays with size 10**6; a reservoir of 10**6-unit networks; a capacity sweep of 100,000 units.
        """
        declared = tmp_path / "declared.h5"
        with h5py.File(declared, "w") as f:
            f.attrs.update(reservoir_attrs(60_000, "float32", 60_000))
            f.create_dataset("couplings", shape=(1, 60_000, 60_000), dtype=np.float32)  # no storage written
            f.create_dataset("scales", data=np.ones(1, np.float32))
            f.create_dataset("spin_sums", data=np.zeros(60_000, np.int32))
        sign = tmp_path / "sign.h5"
        with h5py.File(sign, "w") as f:
            fill_sign_reservoir(f, 8192)
        bank = tmp_path / "bank.h5"
        make_bank(bank)
        with open_bank(bank, "a") as b:
            b.write_attachment("reservoir-1000", lambda g: fill_sign_reservoir(g, 8192))
        tasks = saved_reservoir(tmp_path / "tasks.h5", key_units=3)
        with h5py.File(tasks, "r+") as f:
            f.attrs["n_tasks"] = 10**12
        outcomes = run_worker([f"from_file:{declared}", f"from_file:{sign}:{16 << 20}", f"bank_reservoir:{bank}:{16 << 20}",
                               f"recall_keyed:{tasks}", "from_arrays:-", "reservoir_size:-", "capacity:-"])
        assert len(outcomes) == 7, outcomes
        for scenario, row in outcomes.items():
            assert row["outcome"] == "error", row
            assert "\n" not in row["message"], row
            path = scenario.split(":")[1]
            if path != "-":
                assert path in row["message"] or scenario.startswith("recall_keyed"), row
        assert "declares 14,400,000,000 B" in outcomes[f"from_file:{declared}"]["message"]
        for scenario in (f"from_file:{sign}:{16 << 20}", f"bank_reservoir:{bank}:{16 << 20}"):
            assert "couplings take 67,108,864 B in memory" in outcomes[scenario]["message"], outcomes[scenario]
        assert outcomes[f"recall_keyed:{tasks}"]["message"].startswith("tasks: ")
        assert outcomes["from_arrays:-"]["message"].startswith("arrays['couplings']: expected shape (1000000, 1000000)")
        assert outcomes["reservoir_size:-"]["message"].startswith("network_size: ")
        assert outcomes["capacity:-"]["message"].startswith("size: ")

    @pytest.mark.slow
    def test_sign_reservoir_of_100000_units_under_the_default_ceiling(self, tmp_path):
        """625 MB of bits (stored gzip-compressed, 0.6 MB) would unpack to 10 GB -- above the default 8 GiB
        ceiling -- plus 80 GB of index arrays in the old reader: refused before unpacking, within 1.5 GiB."""
        sign = tmp_path / "sign.h5"
        with h5py.File(sign, "w") as f:
            fill_sign_reservoir(f, 100_000, compress=True)
        row = run_worker([f"from_file:{sign}"])[f"from_file:{sign}"]
        assert row["outcome"] == "error" and str(sign) in row["message"], row
        assert "couplings take 10,000,000,000 B in memory" in row["message"], row


# ------------------------------------------------------------------------------------------------ networks
class TestNetworks:
    def test_from_arrays_checks_the_shape_before_allocating(self):
        """A size that disagrees with the couplings: refused before any matrix of that size exists."""
        with pytest.raises(InvalidArgumentError, match=r"expected shape \(4096, 4096\)"):
            HopfieldNetwork.from_arrays({"couplings": np.zeros((2, 2), np.int8)},
                                        {"rule": HEBBIAN, "dtype": "sign", "size": 4096, "n_stored": 0, "scale": 1.0})

    def test_sign_matrices_round_trip_through_packed_bits(self):
        """Packing and unpacking keep every coupling (rows of every length, the lower triangle mirrored)."""
        rng = np.random.default_rng(3)
        for n in (2, 3, 9, 64, 257):
            q = np.triu(rng.choice(np.array([-1, 1], np.int8), size=(n, n)), 1)
            q = q + q.T
            bits = pack_sign_couplings(q)
            assert bits.size == coupling_nbytes(n, "sign") - 4
            assert np.array_equal(bits, np.packbits(q[np.triu_indices(n, 1)] > 0))  # the format's bit order
            assert np.array_equal(unpack_sign_couplings(bits, n), q)
            net = HopfieldNetwork.from_arrays({"couplings": q}, {"rule": HEBBIAN, "dtype": "sign", "size": n,
                                                                 "n_stored": 1, "scale": 0.5})
            assert net.frozen and np.array_equal(net.couplings, q)

    @pytest.mark.parametrize("change", ["asymmetric", "diagonal", "zero"])
    def test_from_arrays_still_refuses_bad_sign_matrices(self, change):
        q = np.ones((5, 5), np.int8) - np.eye(5, dtype=np.int8)
        if change == "asymmetric":
            q[0, 4] = -1
        elif change == "diagonal":
            q[2, 2] = 1
        else:
            q[1, 3] = q[3, 1] = 0
        with pytest.raises(InvalidArgumentError, match="arrays\\['couplings'\\]"):
            HopfieldNetwork.from_arrays({"couplings": q}, {"rule": HEBBIAN, "dtype": "sign", "size": 5,
                                                           "n_stored": 0, "scale": 1.0})


# ------------------------------------------------------------------------------------------------ sizes and budgets
class TestSizesAndBudgets:
    @pytest.mark.parametrize("budget", ["1e30", 10**400, 1e30, "1e400"], ids=["text", "int", "float", "inf"])
    def test_a_budget_no_process_can_hold_is_refused_when_parsed(self, budget):
        with pytest.raises(BudgetError, match=r"^--budget: expected a byte budget this process can hold"):
            parse_budget(budget, name="--budget")

    def test_a_reservoir_that_would_not_fit_while_built_is_refused_naming_the_budget(self, monkeypatch):
        """1MB of sign bits keyed over 4096 entries: two 2805-unit networks, 79 MB with their float32
        accumulators -- refused, naming the budget, when the process can hold 50 MB."""
        monkeypatch.setattr(budget_module, "memory_limit", lambda: 50_000_000)
        with pytest.raises(BudgetError, match=r"^budget: expected a value whose working memory fits .*'1MB'"):
            Reservoir.from_budget("1MB", MaskLayout(("w",), ((4096,),)), "hebbian", key_units="auto")

    def test_a_huge_budget_sizes_nothing(self):
        with pytest.raises(BudgetError, match="^budget: "):
            Reservoir.from_budget("1e30", MaskLayout(("w",), ((300,),)), "hebbian")

    @pytest.mark.parametrize("size", [2**64, 10**9])
    def test_sweep_sizes_are_bounded_before_any_work(self, size):
        with pytest.raises(InvalidArgumentError, match=r"^size: expected a value whose largest array fits"):
            capacity_sweep(size, "hebbian", [0.01])
        with pytest.raises(InvalidArgumentError, match="^size: "):
            check_sweep_size(size)

    def test_a_reservoir_network_size_is_bounded(self):
        with pytest.raises(InvalidArgumentError, match="^network_size: "):
            Reservoir(MaskLayout(("w",), ((100,),)), 2**40, "hebbian")


def test_networks_with_infinite_couplings_are_refused():
    """An inf coupling (symmetric, with a valid checksum in a file) would reach recall's fields: refused on load."""
    from hopfield_masks.errors import InvalidArgumentError
    from hopfield_masks.network import HopfieldNetwork

    net = HopfieldNetwork(8, "hebbian")
    arrays, attrs = net.to_arrays()
    couplings = arrays["couplings"].copy()
    couplings[1, 2] = couplings[2, 1] = np.inf
    with pytest.raises(InvalidArgumentError, match="finite couplings"):
        HopfieldNetwork.from_arrays({"couplings": couplings}, attrs)
