"""The structural check of the catalog's LMDB file: the generic page walk lives in `pitr.lmdbpages`
(the live state's database uses it too); this name stays for the catalog's callers."""

from __future__ import annotations

from pitr.lmdbpages import PageDamage, check_pages, newest_meta

__all__ = ["PageDamage", "check_pages", "newest_meta"]
