"""The sandbox behind its HTTP: the store, the faults and the counts, under one configuration.

What the control plane acts on (admin.py over HTTP, ``Sandbox``'s methods from
Python): copies of what happened, the fault settings and their changes, a reset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bulksend.sandbox.config import FAULT_FIELDS, SandboxConfig, config_problems
from bulksend.sandbox.faults import Faults
from bulksend.sandbox.preload import parse_preload
from bulksend.sandbox.stats import CallStats
from bulksend.sandbox.store import Store

__all__ = ["Backend"]


class Backend:
    """``config`` (already checked) in force; ``store``, ``faults`` and ``stats`` under it.

    ``clock`` (seconds, monotonic) drives the rate limit's bucket; tests pass a fake one.
    """

    def __init__(self, config: SandboxConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.store = Store(config, parse_preload(config.preload)[0])
        self.faults = Faults(config, clock)
        self.stats = CallStats()

    def created_copy(self) -> list[dict[str, Any]]:
        """Every request created through the API (``Sandbox.created``); a copy."""
        return [dict(record) for record in self.store.created]

    def stats_copy(self) -> dict[str, Any]:
        """The call counts (``Sandbox.stats``); a copy."""
        return self.stats.copy(len(self.store.created))

    def patches_copy(self) -> list[dict[str, Any]]:
        """Every PATCH /request applied (``Sandbox.patches``); a copy."""
        return [dict(p) for p in self.store.patches]

    def faults_json(self) -> dict[str, Any]:
        """The current fault settings, by name; ``script`` is what remains of it."""
        faults = {name: getattr(self.config, name) for name in sorted(FAULT_FIELDS)}
        faults["script"] = list(self.config.script)
        return faults

    def apply_faults(self, changes: dict[str, Any]) -> None:
        """Change fault settings (any SandboxConfig field but api_key and seed).

        Raises ValueError naming every problem (nothing is changed then). A
        ``preload`` adds its records at once (and at every reset); records an earlier
        preload added stay until the next reset.
        """
        unknown = sorted(set(changes) - FAULT_FIELDS)
        if unknown:
            raise ValueError(
                f"not a fault setting: {', '.join(unknown)} (settable: {', '.join(sorted(FAULT_FIELDS))})"
            )
        updated = dataclasses.replace(self.config, **changes)
        problems = config_problems(updated)
        if problems:
            raise ValueError("; ".join(problems))
        updated.script = list(updated.script)  # consumed as POSTs arrive: our own copy
        if "preload" in changes:
            preloaded = parse_preload(updated.preload)[0]
            self.store.load_preload(preloaded)
            self.store.preloaded = preloaded
        bucket_changed = (updated.rate_limit, updated.burst) != (self.config.rate_limit, self.config.burst)
        if updated.progress_rate != self.config.progress_rate:
            self.store.advance()  # the time so far moves requests at the old rate
        self.config = self.store.config = updated
        if bucket_changed:
            self.faults.refill(updated)

    def reset(self) -> None:
        """Back to the seeded world plus the current preload, counters at 0, the fates'
        stream from its start and a full bucket; the settings (and what remains of the
        script) are kept."""
        self.store.reset()
        self.stats.reset()
        self.faults.reset(self.config)
