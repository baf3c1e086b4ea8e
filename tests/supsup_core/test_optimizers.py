"""ScoreOptimizer: the same parameters as torch.optim, bit for bit, for every optimiser TrainConfig names."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from supsup_core.errors import ConfigError
from supsup_core.training.config import TrainConfig
from supsup_core.training.optimizers import ScoreOptimizer
from supsup_core.training.trainer import make_optimizer

CONFIGS = [
    TrainConfig(optimizer="rmsprop", lr=1e-4, momentum=0.0, weight_decay=0.0),
    TrainConfig(optimizer="rmsprop", lr=1e-3, momentum=0.5, weight_decay=1e-4),
    TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
    TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0),
    TrainConfig(optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=1e-4),
    TrainConfig(optimizer="adam", lr=1e-2, momentum=0.0, weight_decay=0.0),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.optimizer}-m{c.momentum}-wd{c.weight_decay}")
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), skip=st.integers(0, 4))
def test_steps_equal_torch_optim_bit_for_bit(config, seed, skip):
    """Ten steps on two tensors (one skipping a step without a gradient) give exactly torch.optim's values."""
    g = torch.Generator().manual_seed(seed)
    start = [torch.randn(7, 5, generator=g), torch.randn(11, generator=g)]
    grads = [[torch.randn(t.shape, generator=g) for t in start] for _ in range(10)]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    a, b = ScoreOptimizer(ours, config), make_optimizer(theirs, config)
    for step, gs in enumerate(grads):
        for opt, params in ((a, ours), (b, theirs)):
            opt.zero_grad(set_to_none=True)
            for i, (p, grad) in enumerate(zip(params, gs)):
                if not (i == 1 and step == skip):  # a parameter without a gradient this step is left alone
                    p.grad = grad.clone()
            opt.step()
        for p, q in zip(ours, theirs):
            assert torch.equal(p, q)


def test_bad_arguments_name_what_was_expected():
    """No tensors, or something other than a TrainConfig, raise ConfigError naming the argument."""
    with pytest.raises(ConfigError, match="params"):
        ScoreOptimizer([], CONFIGS[0])
    with pytest.raises(ConfigError, match="config"):
        ScoreOptimizer([torch.nn.Parameter(torch.zeros(1))], {"optimizer": "sgd"})


def test_building_one_does_not_import_dynamo():
    """The point of the module: a training process never pays torch._dynamo's import (checked in a fresh process)."""
    import subprocess
    import sys

    code = ("import sys, torch; from supsup_core.training.optimizers import ScoreOptimizer; "
            "from supsup_core.training.config import TrainConfig; p = torch.nn.Parameter(torch.zeros(3)); "
            "o = ScoreOptimizer([p], TrainConfig()); p.grad = torch.ones(3); o.step(); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
