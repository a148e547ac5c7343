"""The engine and sessions under their old import path; they live in kgan_service.db, which the
API and the workers both import. Code still importing ``api.db`` gets the same objects (the same
READ_ONLY context variable that the API's middleware sets)."""

from kgan_service.db import READ_ONLY, SQLITE_POOL_SIZE, Database, make_engine, utcnow

__all__ = ["READ_ONLY", "SQLITE_POOL_SIZE", "Database", "make_engine", "utcnow"]
