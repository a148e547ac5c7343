"""The service's settings under their old import path; they live in kgan_service.settings,
which the API and the workers both import. Code still importing ``api.settings`` gets the same
objects (the same cached ``get_settings``)."""

from kgan_service.settings import GiB, MiB, Settings, get_settings

__all__ = ["GiB", "MiB", "Settings", "get_settings"]
