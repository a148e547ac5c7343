"""Visualise options checked when the job is submitted, against the visualisation itself.

Two passes. The values' shapes come from the render function's signature (its type hints):
an int option takes a whole number (never a boolean), a float a finite number, and every
string and list is short. Then the visualisation runs its own checks (``bounded_int``,
``require_images``, ...) against a stand-in for the model that knows only what the model's
row records (k, the kind of data, the item shape) and stops the render at the first thing it
would have to load: the bounds are the visualisation's, for that model, and nothing is
computed. Messages quote at most a short excerpt of a value, never what a client sent whole.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from kgan_core.visualise import VISUALISATIONS, VisualisationError, visualise

MAX_STRING_CHARS = 128
MAX_LIST_ITEMS = 64
EXCERPT_CHARS = 40


class OptionValueError(ValueError):
    """An option value of the wrong type, not finite, or too long; the message is bounded."""


def excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS]}... ({len(text)} characters)"


def _hinted_types(what: str, name: str) -> tuple[type, ...] | None:
    hint = typing.get_type_hints(VISUALISATIONS[what].render).get(name)
    if hint is None:
        return None
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    return tuple(a for a in args if isinstance(a, type))


def _check_scalar(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionValueError(f"option {name!r} must be a finite number, got {value!r}")
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise OptionValueError(f"option {name!r} is a string of {len(value)} characters; at most "
                               f"{MAX_STRING_CHARS} are accepted")


def check_types(what: str, options: dict[str, Any]) -> None:
    for name, value in options.items():
        if isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                raise OptionValueError(f"option {name!r} is a list of {len(value)} items; at most "
                                       f"{MAX_LIST_ITEMS} are accepted")
            for item in value:
                _check_scalar(name, item)
        else:
            _check_scalar(name, value)
        allowed = _hinted_types(what, name)
        if not allowed or value is None and type(None) in allowed:
            continue
        if bool in allowed and isinstance(value, bool):
            continue
        if int in allowed and not isinstance(value, bool) and (
                isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            continue
        if float in allowed and isinstance(value, int | float) and not isinstance(value, bool):
            continue
        if str in allowed and isinstance(value, str):
            continue
        names = " or ".join("null" if t is type(None) else {"int": "a whole number", "float": "a number",
                                                            "bool": "true/false", "str": "a string"}.get(t.__name__,
                                                                                                         t.__name__)
                            for t in allowed)
        raise OptionValueError(f"option {name!r} of {what} must be {names}, got {excerpt(value)}")


class _Loaded(Exception):
    """The render asked for something only the loaded model has: its own checks are done."""


class ModelOutline:
    """What a model's row says about it; anything else stops the render (``_Loaded``)."""

    def __init__(self, k: int, dataset_kind: str, item_shape: list[int], step: int):
        self.k, self.dataset_kind, self.item_shape, self.step = k, dataset_kind, tuple(item_shape), step

    def check_member(self, member: int) -> int:
        if not 0 <= member < self.k:
            raise VisualisationError(f"member must be between 0 and {self.k - 1}, got {member}")
        return member

    def __getattr__(self, name: str):
        raise _Loaded(name)


def check_options(what: str, options: dict[str, Any], *, member: int | None, seed: int,
                  outline: ModelOutline) -> None:
    """Raise OptionValueError or VisualisationError (bounded messages) for options the worker
    would refuse."""
    check_types(what, options)
    try:
        visualise(outline, what, member, seed=seed, **options)
    except _Loaded:
        return
    except VisualisationError as exc:
        message = str(exc)
        if len(message) > 300:
            message = message[:300] + "..."
        raise VisualisationError(message) from None
    except Exception:  # noqa: BLE001 - the stand-in lacks what the render needs: the worker checks the rest
        return
