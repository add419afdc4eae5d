"""The names of a request's statuses, as collect-api.md §7 spells them.

Lists (``GET /requests`` and its ``filter``) spell it ``cancelled``; ``PATCH
/request`` takes ``canceled`` (§7, §9). People type either, so both commands
accept both and each sends the spelling its endpoint documents. A team's own
statuses are written ``custom:NAME``, so that a typo (``cancled``) is an error
rather than a new status.
"""

from __future__ import annotations

from bulksend.common.errors import UsageError

LIST_STATUSES = ("pending", "completed", "due", "waiting", "archived", "cancelled", "error")  # §7
PATCH_STATUSES = ("pending", "completed", "waiting", "canceled", "archived")  # §7 PATCH /request
CUSTOM = "custom:"


def _read(name: str, *, cancelled: str) -> tuple[str, str, str]:
    """``name`` stripped; lower-cased with either spelling of cancelled as
    ``cancelled`` spells it; and the NAME of ``custom:NAME`` (else "")."""
    text = name.strip()
    if text.startswith(CUSTOM) and text[len(CUSTOM):]:
        return text, text, text[len(CUSTOM):]
    lowered = text.lower()
    return text, cancelled if lowered in ("canceled", "cancelled") else lowered, ""


def list_status(name: str, *, param: str, custom: frozenset[str] = frozenset()) -> str:
    """A status as lists spell it: ``canceled`` -> ``cancelled``, ``custom:X`` -> ``X``;
    ``custom``: other names accepted as they are (custom statuses seen in a file).

    Raises ``UsageError`` naming ``param`` for an unknown name."""
    text, lowered, custom_name = _read(name, cancelled="cancelled")
    if custom_name:
        return custom_name
    if lowered in LIST_STATUSES:
        return lowered
    if text in custom:
        return text
    raise UsageError(f"{param}: unknown status {text!r}",
                     hint=f"known: {', '.join(LIST_STATUSES)}; a status of your team's own: custom:NAME")


def patch_status(name: str) -> str:
    """A status as PATCH /request takes it: ``cancelled`` -> ``canceled``, ``custom:X`` -> ``X``.

    Raises ``UsageError`` for an unknown name and for ``due`` and ``error``,
    which Collect sets by itself (§7 lists neither among PATCH's statuses)."""
    text, lowered, custom_name = _read(name, cancelled="canceled")
    if custom_name:
        return custom_name
    if lowered in PATCH_STATUSES:
        return lowered
    if lowered in ("due", "error"):
        raise UsageError(f"--status {text}: Collect sets {lowered} by itself; PATCH /request cannot",
                         hint="a request becomes due when its --due-date passes; to send an error "
                              "request's message again: --status pending --send-reopen-message")
    raise UsageError(f"--status: unknown status {text!r}",
                     hint=f"one of {', '.join(PATCH_STATUSES)} (or cancelled), "
                          "or custom:NAME for your team's own")
