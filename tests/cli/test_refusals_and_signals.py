"""How commands refuse and how they end on a signal (cli/_app.py): one line and exit 2 for every refusal (usage
errors included), a JSON error object with --json, integer options bounded before any work, data given explicitly
that cannot be read, library argument names mapped to options (and files never shown as options), and SIGINT or
SIGTERM always ending a command with 130 or 143, even inside Numba's compiler or code that catches the exception."""

from __future__ import annotations

import json
import gc
import signal
import time
import weakref

import numpy as np
import pytest
from typer.testing import CliRunner

import hopfield_masks as hm
from supsup_core.errors import ConfigError
from supsup_store_cli._app import JSON_ERROR_SHAPE, guarded
from supsup_store_cli.app import app

from .refusals import one_error_line

runner = CliRunner()
BIG = str(2**64)


def _files(folder) -> dict:
    """Every file under ``folder`` with its bytes (what a refused command must leave as it was)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def library_bank(tmp_path):
    """A bank of three small tasks written by the library (no model metadata: recall reports bits only)."""
    path = tmp_path / "lib.h5"
    rng = np.random.default_rng(0)
    with hm.create_bank(path, "hdf5-packed") as bank:
        for t in range(3):
            bank.write_task(str(t), {"w": rng.random(40) < 0.5})
    return path


# ---------------------------------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    "args, needles",
    [(["train", "--out", "x.h5", "--bogus"], ["No such option: --bogus", "supsup-store train --help"]),
     (["encode"], ["Missing argument", "supsup-store encode --help"]),
     (["train", "--out", "x.h5", "--tasks", "abc"], ["--tasks: expected an integer, received 'abc'"]),
     (["train", "--out", "x.h5", "--tasks", "0"], ["--tasks: expected an integer in 1..4294967295, received '0'"]),
     (["recall", "--method"], ["--method"]),
     (["nonsense"], ["No such command"])],
    ids=["unknown-option", "missing-argument", "not-an-integer", "out-of-range", "option-without-value", "command"],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, needles):
    line = one_error_line(runner.invoke(app, args))
    assert "╭" not in line and "Usage:" not in line
    for needle in needles:
        assert needle in line, (needle, line)


def test_help_stays_readable():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "Usage" in result.output and "--workers" in result.output
    assert "--json" in runner.invoke(app, ["recall", "--help"]).output


# ---------------------------------------------------------------------------------------------------- --json refusals
def test_a_refusal_with_json_prints_the_error_object(library_bank):
    before = _files(library_bank.parent)
    result = runner.invoke(app, ["recall", str(library_bank), "--json", "--key-units", "99999999999"])
    line = one_error_line(result)
    error = json.loads(result.stdout)["error"]
    assert tuple(error) == JSON_ERROR_SHAPE
    assert error["argument"] == "--key-units" and error["expected"].startswith("auto or a number of units")
    assert error["received"] == "'99999999999'" and error["exit_code"] == 2 and line == f"Error: {error['message']}"
    assert _files(library_bank.parent) == before


def test_an_unknown_rule_names_the_option_and_fills_the_json_fields(library_bank):
    """encode --rule nope: the message named the library argument ('rule: expected ...') and --json printed
    argument/expected/received as null; now it names --rule and fills them, like every other refusal."""
    before = _files(library_bank.parent)
    result = runner.invoke(app, ["encode", str(library_bank), "--budget", "64KB", "--rule", "nope", "--json"])
    line = one_error_line(result)
    error = json.loads(result.stdout)["error"]
    assert line.startswith("Error: --rule: expected one of [") and error["argument"] == "--rule"
    assert error["expected"].startswith("one of [") and error["received"] == "'nope'"
    assert _files(library_bank.parent) == before


def test_json_errors_name_files_and_usage_errors_too(tmp_path):
    missing = runner.invoke(app, ["recall", str(tmp_path / "none.h5"), "--json"])
    one_error_line(missing)
    error = json.loads(missing.stdout)["error"]
    assert error["argument"] == str(tmp_path / "none.h5") and error["expected"] is None and error["type"]
    usage = runner.invoke(app, ["encode", "--json"])  # the bank argument is missing: Click refuses it
    one_error_line(usage)
    assert json.loads(usage.stdout)["error"]["type"] == "UsageError"
    assert runner.invoke(app, ["recall", str(tmp_path / "none.h5")]).stdout == ""  # no --json: nothing on stdout


# ---------------------------------------------------------------------------------------------------- bounds
def test_key_units_too_large_is_refused_and_the_bank_unchanged(library_bank):
    before = _files(library_bank.parent)
    line = one_error_line(runner.invoke(app, ["encode", str(library_bank), "--key-units", BIG]))
    assert line.startswith("Error: --key-units: expected auto or a number of units in 0..1048576, received")
    assert _files(library_bank.parent) == before


@pytest.mark.parametrize(
    "args, option",
    [(["train", "--hidden", BIG], "--hidden"), (["train", "--hidden", "3037000500,3037000500"], "--hidden"),
     (["train", "--output-size", BIG], "--output-size"), (["train", "--tasks", BIG], "--tasks"),
     (["train", "--batches-per-task", BIG], "--batches-per-task"), (["train", "--seed", "-1"], "--seed"),
     (["train", "--workers", "100000"], "--workers"),
     (["recall", "none.h5", "--restarts", "1000000000", "--method", "dynamics"], "--restarts"),
     (["recall", "none.h5", "--steps", BIG], "--steps"), (["recall", "none.h5", "--key-units", BIG], "--key-units"),
     (["demo", "--batches-per-task", BIG], "--batches-per-task")],
    ids=["hidden", "hidden-overflow", "output-size", "tasks", "batches-per-task", "seed", "workers", "restarts",
         "steps", "key-units", "demo-batches"],
)
def test_integer_options_are_bounded_before_any_work(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    if args[0] == "train":
        args = ["train", "--out", "x.h5", "--device", "cpu", *args[1:]]
    if args[0] == "demo":
        args = [*args, "--out", "demo", "--device", "cpu"]
    line = one_error_line(runner.invoke(app, args))
    assert line.startswith(f"Error: {option}: expected"), line
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- explicit data
@pytest.mark.parametrize("data", [["--data-dir", "/nonexistent/idx"], ["--data", "idx:/nonexistent/idx"],
                                  ["--data", "nonsense"]], ids=["data-dir", "data-idx", "data-spec"])
def test_explicit_data_that_cannot_be_read_is_refused(tmp_path, data):
    """recall --data-dir/--data naming data that cannot be used: one line, exit 2, no reservoir encoded."""
    path = tmp_path / "b.h5"
    trained = runner.invoke(app, ["train", "--out", str(path), "--tasks", "1", "--hidden", "8", "--batches-per-task", "2",
                                  "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    before = _files(tmp_path)
    line = one_error_line(runner.invoke(app, ["recall", str(path), "--device", "cpu", *data]))
    assert "nonexistent" in line or "nonsense" in line
    assert _files(tmp_path) == before and hm.encoding.bank_reservoirs(path) == []


# ---------------------------------------------------------------------------------------------------- names
def test_stream_seed_errors_name_stream_seed(tmp_path):
    line = one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--stream-seed", "4294967295",
                                              "--tasks", "3", "--hidden", "8", "--device", "cpu"]))
    assert line.startswith("Error: --stream-seed: expected task + seed")


def test_a_file_named_like_an_option_is_never_shown_as_one(tmp_path, monkeypatch):
    """A bank called 'data' (recall has a --data option) whose metadata is broken: the message names the file."""
    monkeypatch.chdir(tmp_path)
    with hm.create_bank(tmp_path / "data", "hdf5-packed", metadata={"producer": "supsup_core", "model": "oops"}) as bank:
        bank.write_task("0", {"w": np.ones(16, bool)})
    line = one_error_line(runner.invoke(app, ["recall", "data", "--device", "cpu"]))
    assert line.startswith("Error: data: expected a mask bank") and "--data" not in line


def test_non_finite_values_met_during_recall_name_the_bank_not_internal_arguments(library_bank, monkeypatch):
    """A value recall cannot use (e.g. a non-finite field of the reservoir) is said naming the bank; no library
    argument such as external_field reaches the user."""
    from hopfield_masks.errors import InvalidArgumentError

    def broken(self, *args, **kwargs):
        raise InvalidArgumentError("external_field", "finite values", "NaN or infinity")

    reservoir, _ = hm.encode_bank(library_bank, "1MB")
    monkeypatch.setattr(type(reservoir), "recall_keyed", broken)
    line = one_error_line(runner.invoke(app, ["recall", str(library_bank), "--device", "cpu"]))
    assert "external_field" not in line and line.startswith(f"Error: {library_bank}: its reservoir")


# ---------------------------------------------------------------------------------------------------- signals
def test_sigint_inside_numbas_compiler_still_interrupts():
    """Numba's compiler runs Python callbacks from C (llvmlite's object cache, through ctypes), where a raised
    KeyboardInterrupt is printed and swallowed: the command must still end with KeyboardInterrupt (exit 130)."""
    import numba
    from numba.core.registry import cpu_target

    engine = cpu_target.target_context.codegen()._engine._ee
    original = engine._object_cache_notify
    fired: list[int] = []

    def notify(module, buf):
        if not fired:
            fired.append(1)
            signal.raise_signal(signal.SIGINT)  # the handler runs here, inside the ctypes callback
        return original(module, buf)

    @guarded
    def command() -> int:
        compiled = numba.njit(lambda x: x * 2 + 1)
        return int(compiled(20))

    engine._object_cache_notify = notify
    try:
        with pytest.raises(KeyboardInterrupt):
            command()
    finally:
        engine._object_cache_notify = original
    assert fired == [1]


def test_a_signal_whose_exception_was_swallowed_still_ends_the_command():
    @guarded
    def swallows_sigint() -> str:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return "finished"

    @guarded
    def turns_sigterm_into_an_error() -> None:  # e.g. a user's factory caught by `except (Exception, SystemExit)`
        try:
            signal.raise_signal(signal.SIGTERM)
        except SystemExit:
            raise ConfigError("model", "a factory that returns", "SystemExit") from None

    @guarded
    def turns_sigterm_into_exit_1() -> None:  # what Ray's ray.get does with the handler's exception
        try:
            signal.raise_signal(signal.SIGTERM)
        except SystemExit:
            raise SystemExit(1) from None

    with pytest.raises(KeyboardInterrupt):
        swallows_sigint()
    for command in (turns_sigterm_into_an_error, turns_sigterm_into_exit_1):
        with pytest.raises(SystemExit) as exc:
            command()
        assert exc.value.code == 143


@pytest.mark.parametrize("where", ["weakref callback", "__del__"])
def test_a_signal_inside_a_garbage_collector_callback_still_ends_the_command(where, capfd):
    """SIGTERM arriving while the garbage collector runs a weakref callback (WeakValueDictionary's ``remove``, met at
    random instants of ``encode``) or a ``__del__`` was raised there, printed as "Exception ignored" and swallowed: the
    command ran on and committed, then exited 143.  It must be raised once the callback returns, in the command."""

    class Doomed:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    reached: list[str] = []

    @guarded
    def command() -> None:
        if where == "__del__":
            obj = Doomed()
        else:
            obj = type("Obj", (), {})()
            weakref.finalize(obj, signal.raise_signal, signal.SIGTERM)  # run by weakref.finalize.__call__
        del obj
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the held signal is delivered again within about 10 ms
            time.sleep(0.01)
        reached.append("end")  # what the command would have committed

    with pytest.raises(SystemExit) as exc:
        command()
    assert exc.value.code == 143 and reached == []
    assert "Exception ignored" not in capfd.readouterr().err


def test_ctrl_c_before_the_command_installs_its_handlers_is_one_line_and_exit_130(monkeypatch, capsys):
    """SIGINT while Typer builds the command (before guarded() installs the handlers) printed a KeyboardInterrupt
    traceback; main() now ends it with one line on stderr and exit code 130."""
    import typer.main

    from supsup_store_cli import app as app_module

    real_get_command = typer.main.get_command

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Python's default handler: KeyboardInterrupt raised here
        return real_get_command(*args, **kwargs)

    monkeypatch.setattr(typer.main, "get_command", interrupted)
    monkeypatch.setattr("sys.argv", ["supsup-store", "info", "bank.h5"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGINT)
    gc.collect()  # earlier tests' garbage finalised now: a finaliser's note on stderr is not this command's output
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        app_module.main()
    assert exc.value.code == 130
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and "KeyboardInterrupt" not in captured.err, lines
    assert "Interrupted" in lines[0] and captured.out == ""
