"""Without the avalanche extra, supsup_core.interop.avalanche imports and refuses to build anything, naming the install line."""

from __future__ import annotations

import importlib.util

import pytest

from supsup_core.config import ModelConfig
from supsup_core.errors import ConfigError
from supsup_core.interop import avalanche as sa
from supsup_core.models import build_model
from supsup_core.training import TrainConfig

pytestmark = pytest.mark.skipif(importlib.util.find_spec("avalanche") is not None, reason="avalanche is installed")


@pytest.mark.parametrize(
    "build",
    [
        lambda: sa.SupSupModel(build_model(ModelConfig(hidden=(4,), output_size=3))),
        lambda: sa.SupSupPlugin(sa.AvalancheOptions(TrainConfig())),
        lambda: sa.MaskBankBytes("masks.h5"),
        lambda: sa.avalanche_benchmark(None),
    ],
    ids=["model", "plugin", "metric", "benchmark"],
)
def test_each_piece_names_the_install_line(build):
    """One line: the argument 'avalanche', what to install, and the ImportError received."""
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert message.startswith("avalanche: expected the avalanche-lib package (install: pip install torch==2.14.1")
    assert "supsup-store[avalanche]" in message and "received ImportError" in message and "\n" not in message


def test_options_validate_without_avalanche():
    """The options dataclass is plain Python: it validates with or without Avalanche."""
    with pytest.raises(ConfigError, match="backend: expected one of"):
        sa.AvalancheOptions(TrainConfig(), backend="zip")
