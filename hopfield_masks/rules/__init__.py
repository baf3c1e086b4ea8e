"""Learning rules and their registry.

Rules are looked up by id, so configurations and files can name them as
text.  The contract every rule follows is the docstring of
:mod:`hopfield_masks.rules.base`.

========================  ==========================================  ======================
id                        rule                                        capacity (N units)
========================  ==========================================  ======================
``hebbian``               ``W += x xᵀ / N``, zero diagonal             ``N / (2 ln N)``
``storkey``               Storkey (1997), exact local fields           ``N / sqrt(2 ln N)``
``storkey-reference``     the reference code's simplified variant      ``N / sqrt(2 ln N)``
``pseudo-inverse``        incremental projection rule                  ``N - 1``
========================  ==========================================  ======================

Examples
--------
>>> available_rules()
['hebbian', 'pseudo-inverse', 'storkey', 'storkey-reference']
>>> get_rule("storkey")
StorkeyRule()
>>> get_rule({"id": "pseudo-inverse", "tol": 0.001})
PseudoInverseRule(tol=0.001)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import InvalidArgumentError, RegistryError, UnknownRuleError
from .base import LearningRule
from .hebbian import HebbianRule
from .pseudo_inverse import PseudoInverseRule
from .storkey import StorkeyRule
from .storkey_reference import StorkeyReferenceRule

__all__ = [
    "LearningRule",
    "HebbianRule",
    "StorkeyRule",
    "StorkeyReferenceRule",
    "PseudoInverseRule",
    "register_rule",
    "get_rule",
    "available_rules",
]

#: Lower-case words of letters and digits joined by single hyphens, e.g. "storkey-reference".
_ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_REGISTRY: dict[str, type[LearningRule]] = {}


def register_rule(cls: type[LearningRule]) -> type[LearningRule]:
    """Register a :class:`LearningRule` subclass under its ``rule_id`` (usable as a class decorator).

    Raises
    ------
    RegistryError
        ``cls`` is not a concrete LearningRule subclass, its id is malformed, or the id is taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, LearningRule)) or getattr(cls, "__abstractmethods__", None):
        raise RegistryError(f"rule: expected a concrete LearningRule subclass, received {cls!r}")
    rule_id = getattr(cls, "rule_id", None)
    if not isinstance(rule_id, str) or not _ID_PATTERN.match(rule_id):
        raise RegistryError(
            f"rule_id: expected lower-case words joined by '-' (e.g. 'my-rule'), received {rule_id!r}"
        )
    if rule_id in _REGISTRY:
        raise RegistryError(f"rule_id: expected an unused id, received {rule_id!r} (already {_REGISTRY[rule_id].__name__})")
    _REGISTRY[rule_id] = cls
    return cls


def available_rules() -> list[str]:
    """Sorted ids of the registered rules."""
    return sorted(_REGISTRY)


def _rule_class(rule_id: str) -> type[LearningRule]:
    """The class registered under ``rule_id``; :class:`UnknownRuleError` lists the ids otherwise."""
    try:
        return _REGISTRY[rule_id]
    except KeyError:
        raise UnknownRuleError(rule_id, available_rules()) from None


def get_rule(rule: str | LearningRule | Mapping) -> LearningRule:
    """Return a rule instance from an id, a :meth:`~LearningRule.to_dict` mapping, or an instance (returned as is).

    Raises
    ------
    UnknownRuleError
        No rule is registered under the id (the message lists the available ids).
    InvalidArgumentError
        ``rule`` is of another type, or the mapping's arguments do not fit the rule.
    """
    if isinstance(rule, LearningRule):
        return rule
    if isinstance(rule, str):
        return _rule_class(rule)()
    if isinstance(rule, Mapping):
        return LearningRule.from_dict(dict(rule))
    raise InvalidArgumentError("rule", "a rule id, a rule dict or a LearningRule", type(rule).__name__)


for _cls in (HebbianRule, StorkeyRule, StorkeyReferenceRule, PseudoInverseRule):
    register_rule(_cls)
del _cls
