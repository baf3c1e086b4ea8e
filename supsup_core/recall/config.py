"""How to recall: :class:`RecallConfig` (checked at construction) and the encode settings a method needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


from hopfield_masks.binary import PerceptronRule
from hopfield_masks.encoding import (
    EncodeSettings,
)

from ..errors import ConfigError
from ..validate import is_int


#: Recall procedures; the first is the default everywhere (library, CLI, demo).
RECALL_METHODS = ("keyed", "dynamics", "score-descent")
#: Most sweeps or steps one recall may run (:attr:`RecallConfig.steps`).
MAX_STEPS = 1_000_000
#: Most extra recalls per task (:attr:`RecallConfig.restarts`).
MAX_RESTARTS = 1_000
_OBJECTIVES = ("H", "G")


def _check_cue(cue: object, method: str) -> str:
    """A cue kind valid for ``method``: ``mean``, ``random``, ``noisy:<p>`` (and ``key`` for keyed)."""
    kinds = ("key", "mean", "random") if method == "keyed" else ("mean", "random")
    ok = isinstance(cue, str) and cue in kinds
    if isinstance(cue, str) and cue.startswith("noisy:") and method != "keyed":
        try:
            ok = 0.0 <= float(cue[len("noisy:"):]) <= 1.0
        except ValueError:
            ok = False
    if not ok:
        noisy = "" if method == "keyed" else " or noisy:<p> with 0 <= p <= 1"
        raise ConfigError("cue", f"{', '.join(kinds)}{noisy} for method {method}", repr(cue))
    return cue


@dataclass(frozen=True)
class RecallConfig:
    """How to recall: method, start, objective and budgets of work, validated at construction.

    Parameters
    ----------
    method : str
        ``"keyed"``, ``"dynamics"`` or ``"score-descent"`` (see the module docstring).
    guided : bool or None
        Output-objective guidance from unlabeled test images of each task;
        ``None``: guided when the bank's data can be rebuilt.
    cue : str or None
        Where recall starts; ``None``: ``"key"`` (the key's own field) for keyed
        recall, ``"mean"`` (the running ±1 sums) otherwise.
    objective : str
        ``"H"`` (entropy) or ``"G"`` (superfluous-neuron logsumexp).
    steps : int or None
        Sweeps (keyed, dynamics) or steps (score-descent), at most :data:`MAX_STEPS`; ``None``: the method's default.
    shortlist : int
        Keyed: candidates scored on every adaptation image after the first narrowing.
    selection : str
        Keyed: how the candidates are narrowed to the shortlist, ``"screen"`` (each
        scored on the first ``screen_images`` adaptation images) or ``"one-shot"``
        (one gradient over their superposition; see :func:`select_candidate`).
    screen_images : int
        Keyed, screening: images each candidate is scored on before the shortlist.
    score_images : int
        Keyed: adaptation images the shortlist is scored on (the first ones; fewer when the task has fewer).
    restarts, restart_noise
        Dynamics and score-descent: extra starts (at most :data:`MAX_RESTARTS`) with that share of the cue's signs
        flipped.
    transductive : bool
        Guide and score on the same test images (the reference's protocol).
    seed : int
        Seeds cues, sweep orders and the adaptation/evaluation split.
    batch_size : int
        Adaptation batch size (images per guidance step).

    Examples
    --------
    >>> RecallConfig().method, RecallConfig().start
    ('keyed', 'key')
    >>> RecallConfig(method="dynamics", steps=0)
    Traceback (most recent call last):
    ...
    supsup_core.errors.ConfigError: steps: expected a number of steps in 1..1,000,000 (or None: the method's default), received 0
    """

    method: str = "keyed"
    guided: bool | None = None
    cue: str | None = None
    objective: str = "H"
    steps: int | None = None
    shortlist: int = 8
    selection: str = "screen"
    screen_images: int = 8
    score_images: int = 256
    restarts: int = 0
    restart_noise: float = 0.2
    transductive: bool = False
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.method not in RECALL_METHODS:
            raise ConfigError("method", f"one of {', '.join(RECALL_METHODS)}", repr(self.method))
        if self.guided is not None and not isinstance(self.guided, bool):
            raise ConfigError("guided", "True, False or None (guided when the data is available)", repr(self.guided))
        if self.cue is not None:
            _check_cue(self.cue, self.method)
        if self.objective not in _OBJECTIVES:
            raise ConfigError("objective", "H or G", repr(self.objective))
        if self.steps is not None and (not is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS):
            raise ConfigError("steps", f"a number of steps in 1..{MAX_STEPS:,} (or None: the method's default)", repr(self.steps))
        if not is_int(self.shortlist) or self.shortlist < 1:
            raise ConfigError("shortlist", "a positive number of candidates", repr(self.shortlist))
        if self.selection not in SELECTIONS:
            raise ConfigError("selection", f"one of {', '.join(SELECTIONS)}", repr(self.selection))
        if not is_int(self.screen_images) or self.screen_images < 2:
            raise ConfigError("screen_images", "an integer >= 2 (batch-statistics models need two images)",
                              repr(self.screen_images))
        if not is_int(self.score_images) or self.score_images < 2:
            raise ConfigError("score_images", "an integer >= 2 (batch-statistics models need two images)",
                              repr(self.score_images))
        if not is_int(self.restarts) or not 0 <= self.restarts <= MAX_RESTARTS:
            raise ConfigError("restarts", f"an integer in 0..{MAX_RESTARTS:,}", repr(self.restarts))
        if self.restarts and self.guided is False:
            raise ConfigError("restarts", "0 for unguided recall (restarts are ranked by the guidance objective)",
                              repr(self.restarts))
        if self.restarts and self.method == "keyed":
            raise ConfigError("restarts", "0 for keyed recall (every task's candidate is already scored)",
                              repr(self.restarts))
        noise = self.restart_noise
        if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and 0.0 < float(noise) <= 1.0):
            raise ConfigError("restart_noise", "a fraction of the cue's signs in (0, 1]", repr(noise))
        if not isinstance(self.transductive, bool):
            raise ConfigError("transductive", "True or False", repr(self.transductive))
        if not is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise ConfigError("seed", "an integer in [0, 2**32)", repr(self.seed))
        if not is_int(self.batch_size) or self.batch_size < 2:
            raise ConfigError("batch_size", "an integer >= 2 (batch-statistics models need two images)",
                              repr(self.batch_size))

    @property
    def start(self) -> str:
        """The cue actually used (``cue``, or the method's default)."""
        return self.cue if self.cue is not None else ("key" if self.method == "keyed" else "mean")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecallConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys are refused)."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", "a mapping of RecallConfig fields", type(data).__name__)
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError("config", f"fields among {sorted(cls.__dataclass_fields__)}", unknown)
        return cls(**dict(data))


def encode_settings_for(method: str, rule: str | None = None, dtype: str = "auto",
                        key_units: int | str = "auto") -> EncodeSettings:
    """How to encode a bank that has no reservoir yet, for recall by ``method``.

    ``rule=None`` picks the rule the method works best with: ``"auto"`` for keyed recall (learned ±1
    couplings where the budget holds them), pseudo-inverse couplings for ``"dynamics"`` and
    ``"score-descent"`` (their sweeps and energy need a Hopfield network).  A perceptron reservoir is
    refused for those two here, before anything is written.
    """
    if method not in RECALL_METHODS:
        raise ConfigError("method", f"one of {', '.join(RECALL_METHODS)}", repr(method))
    if rule is None or (rule == "auto" and method != "keyed"):
        rule = "auto" if method == "keyed" else "pseudo-inverse"
    if rule == PerceptronRule.rule_id and method != "keyed":
        raise ConfigError("rule", f"a Hopfield learning rule for {method} recall (the perceptron rule's reservoir "
                                  "is recalled by key only)", repr(rule))
    return EncodeSettings(rule=rule, dtype=dtype, key_units=key_units)


#: How keyed recall narrows the candidates before scoring the shortlist on every adaptation image.
SELECTIONS = ("screen", "one-shot")
