"""What can go wrong with a prior, as exceptions whose messages say what to change."""

from __future__ import annotations


class PriorError(ValueError):
    """A prior cannot be trained, loaded or used as asked; the message says what to change."""


class PriorMismatchError(PriorError):
    """The prior was trained for another image size or another encoder."""


class EncoderWeightsMissing(PriorError, FileNotFoundError):
    """The VGG-16 ImageNet weights were asked for and are not on this machine."""
