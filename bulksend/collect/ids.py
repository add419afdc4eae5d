"""Collect's ids as bulksend takes them: what may stand in a URL path.

A module of its own, with no HTTP client behind it, so that ``init`` and the
preflight can check an id without loading aiohttp.
"""

from __future__ import annotations

import re

# Collect's ids are 17 letters and digits (collect-api.md §1); bulksend takes
# letters, digits, "-" and "_", 1 to 64 of them: nothing that could change the
# path of a URL it is put in ("../team", "x?y=1", "#frag", "%2e%2e") (issue 25).
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_id(text: str) -> bool:
    """Whether ``text`` may stand as an id in a URL path (``/campaigns/{id}``):
    letters, digits, ``-`` and ``_`` only, 1 to 64 of them."""
    return _ID.fullmatch(text) is not None
