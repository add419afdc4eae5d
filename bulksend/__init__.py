"""bulksend: send Collect document requests to every contact in a spreadsheet.

The Python API (docs/python.md)::

    import bulksend
    run = bulksend.send("contacts.csv", "mapping.yaml", results="contacts-results.csv")
    run.counts, run.exit_status, run.to_pandas()

Names are imported on first use, so ``import bulksend`` (and ``bulksend --help``)
stays cheap: the engine, aiohttp and pandas load only when a run needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bulksend.common.version import __version__

if TYPE_CHECKING:  # the names, for type checkers; `as` marks them re-exported
    from bulksend.api import Contacts as Contacts
    from bulksend.api import MappingSource as MappingSource
    from bulksend.api import init as init
    from bulksend.api import reconcile as reconcile
    from bulksend.api import report as report
    from bulksend.api import send as send
    from bulksend.api import status as status
    from bulksend.api import update as update
    from bulksend.api import validate as validate
    from bulksend.api.answers import Run as Run
    from bulksend.api.answers import Validation as Validation
    from bulksend.api.notify import NotifyWarning as NotifyWarning
    from bulksend.common.errors import AbortError as AbortError
    from bulksend.common.errors import AuthError as AuthError
    from bulksend.common.errors import BulksendError as BulksendError
    from bulksend.common.errors import DeclinedError as DeclinedError
    from bulksend.common.errors import ExitStatus as ExitStatus
    from bulksend.common.errors import InputError as InputError
    from bulksend.common.errors import LockedError as LockedError
    from bulksend.common.errors import MappingError as MappingError
    from bulksend.common.errors import ResultsError as ResultsError
    from bulksend.common.errors import UsageError as UsageError
    from bulksend.common.outcome import Outcome as Outcome
    from bulksend.reading.frames import TypedColumnWarning as TypedColumnWarning
    from bulksend.sending.existing import ExistingError as ExistingError

# public name -> the module that defines it
_LAZY = {
    "send": "bulksend.api",
    "validate": "bulksend.api",
    "status": "bulksend.api",
    "update": "bulksend.api",
    "reconcile": "bulksend.api",
    "report": "bulksend.api",
    "init": "bulksend.api",
    "Run": "bulksend.api.answers",
    "Validation": "bulksend.api.answers",
    "Contacts": "bulksend.api",
    "MappingSource": "bulksend.api",
    "Outcome": "bulksend.common.outcome",
    "TypedColumnWarning": "bulksend.reading.frames",
    "ExitStatus": "bulksend.common.errors",
    "BulksendError": "bulksend.common.errors",
    "UsageError": "bulksend.common.errors",
    "InputError": "bulksend.common.errors",
    "MappingError": "bulksend.common.errors",
    "ResultsError": "bulksend.common.errors",
    "LockedError": "bulksend.common.errors",
    "AuthError": "bulksend.common.errors",
    "AbortError": "bulksend.common.errors",
    "DeclinedError": "bulksend.common.errors",
    "NotifyWarning": "bulksend.api.notify",
    "ExistingError": "bulksend.sending.existing",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bulksend' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
