"""Which branch a platform takes: what only POSIX has, or its portable stand-in.

bulksend runs on Linux, macOS and Windows (issue 26). A few things only POSIX
has: ``fcntl.flock``, an event loop's ``add_signal_handler``, ``O_NOFOLLOW``.
Each sits behind one small function with a portable branch, and each of those
functions asks ``posix()`` which branch to take:

- ``store/runlock.py`` ``try_lock``: ``flock``, else filelock's ``lock_descriptor``
  (``LockFileEx`` on Windows); ``no_follow``: ``O_NOFOLLOW``, else a check after
  the open that the name was not a link.
- ``store/results.py`` ``replace_checked``: Windows refuses to replace a file
  another program holds open; the portable branch retries briefly, then says so.
- ``sending/stop.py`` ``route_signals``: the loop's signal handlers, else
  ``signal.signal`` handlers that hand the signal to the loop.

``BULKSEND_FORCE_PORTABLE=1`` is a test hook, read here and nowhere else: it
makes a POSIX machine take the portable branches, so the suite runs them on
Linux (``BULKSEND_FORCE_PORTABLE=1 pytest``; tests/test_portability.py). It is
read at each call, so a test may set it for one run. It changes no outcome: a
run is the same run on either branch.
"""

from __future__ import annotations

import os

FORCE_PORTABLE = "BULKSEND_FORCE_PORTABLE"


def posix() -> bool:
    """True where the POSIX facilities are there and used (Linux, macOS, the
    BSDs); False on Windows, and where ``BULKSEND_FORCE_PORTABLE`` is set to
    anything but "" or "0" (the test hook)."""
    return os.name == "posix" and os.environ.get(FORCE_PORTABLE, "") in ("", "0")
