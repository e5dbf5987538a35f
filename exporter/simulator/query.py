"""FastAPI's query validation and error answers as the simulated 0.16.8 gives them, and its list paging."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx2


class Reply(Exception):
    """Raised to answer early with an error status (the body mimics FastAPI's)."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def invalid(name: str, kind: str, msg: str, raw: str, **ctx: Any) -> Reply:
    detail = {"type": kind, "loc": ["query", name], "msg": msg, "input": raw} | ({"ctx": ctx} if ctx else {})
    return Reply(422, {"detail": [detail]})


def integer(q: httpx2.QueryParams, name: str, default: int, hi: int | None = None) -> int:
    """``Query(default, ge=1, le=hi)`` as FastAPI validates it."""
    raw = q.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?\d+", raw.strip()):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        raise invalid(name, "int_parsing", msg, raw)
    value = int(raw)
    if value < 1:
        raise invalid(name, "greater_than_equal", "Input should be greater than or equal to 1", raw, ge=1)
    if hi is not None and value > hi:
        raise invalid(name, "less_than_equal", f"Input should be less than or equal to {hi}", raw, le=hi)
    return value


def boolean(q: httpx2.QueryParams, name: str) -> bool | None:
    raw = q.get(name)
    if raw is None:
        return None
    if raw.lower() in ("1", "true", "t", "yes", "y", "on"):
        return True
    if raw.lower() in ("0", "false", "f", "no", "n", "off"):
        return False
    raise invalid(name, "bool_parsing", "Input should be a valid boolean, unable to interpret input", raw)


def page(
    n: int, find: Callable[[str], int | None], q: httpx2.QueryParams, inverted: bool, unknown: str | None
) -> range:
    """Indexes into a list of ``n`` rows sorted oldest first, in the requested order, after the cursors.

    Normal lists: ``after=X`` keeps the rows following X in that order (the next page), ``before=X``
    the preceding ones. ``inverted`` swaps them (runs on 0.14+, docs/letta-api.md §1.2). The limit is applied by the
    caller to the front of this list, as SQL does. An unknown cursor is ignored, or 404s if ``unknown``.
    """
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        choices = "'asc' or 'desc'"
        raise invalid("order", "literal_error", f"Input should be {choices}", order, expected=choices)
    desc = order == "desc" and q.get("ascending", "").lower() != "true"  # deprecated flag overrides order
    lo, hi = 0, n
    for name in ("after", "before"):
        cursor = q.get(name)
        at = None if cursor is None else find(cursor)
        if at is None:
            if cursor is not None and unknown is not None:
                raise Reply(404, {"detail": f"NOT_FOUND: {unknown} with id {cursor} not found"})
        elif ((name == "after") != inverted) == desc:  # rows following X in a desc list: the older ones
            hi = min(hi, at)
        else:
            lo = max(lo, at + 1)
    return range(hi - 1, lo - 1, -1) if desc else range(lo, hi)
