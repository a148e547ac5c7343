"""What can go wrong when asking for a visualisation. All are ValueErrors whose message says
what to change, so the CLI and the service can show them to the person who asked."""

from __future__ import annotations


class VisualisationError(ValueError):
    """A visualisation cannot be made as asked."""


class UnknownVisualisationError(VisualisationError):
    """No visualisation has that name."""


class LayerNameError(VisualisationError):
    """The critic has no layer (or channel, or unit) with that name or index."""


class OptionError(VisualisationError):
    """An option this visualisation does not take, or a value outside its bounds."""
