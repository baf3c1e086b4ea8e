"""Model factories a user would write, named on the command line as ``tests.cli.factories:NAME``."""

from __future__ import annotations

from torch import nn


def digits_mlp() -> nn.Module:
    """An MLP for 8x8 digits, with biases (dropped over a seeded base)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 20))


def wider_digits_mlp() -> nn.Module:
    """The same but 64 hidden units: another architecture."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 20))


def small_cnn() -> nn.Module:
    """A CNN with BatchNorm for 3-channel images of any size."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def nothing_to_mask() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.ReLU())


def with_embedding() -> nn.Module:
    return nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4, 2))


def not_a_module():
    return "a string"


def units_mlp() -> nn.Module:
    """HopSupSup's shape for 8x8 digits: the BatchNorm carries the per-unit masks (--scenario hopsupsup)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64, bias=False), nn.BatchNorm1d(64, affine=False), nn.SiLU(),
                         nn.Linear(64, 10, bias=False))


def head_first() -> nn.Module:
    """A module that registers its 10-way head before its 64-to-128 body: its output width is not the last layer's."""

    class HeadFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(128, 10)
            self.body = nn.Linear(64, 128)

        def forward(self, x):
            return self.head(self.body(x.flatten(1)).relu())

    return HeadFirst()


def raises() -> nn.Module:
    raise RuntimeError("the factory broke")


def exits() -> nn.Module:
    raise SystemExit(0)
