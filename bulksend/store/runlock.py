"""The results file's side files, and the lock that makes one run its only writer.

``RESULTS.csv`` has companions: ``.journal`` (and SQLite's ``-wal``/``-shm``),
``.lock``, ``.tmp`` and ``update``'s ``.updates`` (and its ``-wal``/``-shm``).
They are found by the results file's name, so a results file must have exactly
one name, and no side file is ever written through a link (issue 11): links
are refused, side files are created exclusively.

Every file bulksend writes is a plain (regular) file, or does not exist yet
(issue 25): a device, a FIFO, a socket or a folder at an output's name is
refused (``not_plain``, ``output_problem``), before anything is written and
again when the file is opened (a FIFO is opened without waiting for the other
end, a device without becoming the controlling terminal).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import sys
from pathlib import Path

from bulksend.common.errors import AbortError, BulksendError, LockedError, ResultsError
from bulksend.common.portable import posix


def journal_path(results: Path) -> Path:
    return results.with_name(results.name + ".journal")


def journal_files(results: Path) -> tuple[Path, Path, Path]:
    """The journal and SQLite's two working files beside it: these three and the
    results CSV belong together (a journal without its ``-wal`` is an older state)."""
    journal = journal_path(results)
    return journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")


def remove_journal(results: Path) -> None:
    """Delete a results file's journal, with SQLite's WAL and shared-memory files."""
    for path in journal_files(results):
        path.unlink(missing_ok=True)


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


def tmp_path(results: Path) -> Path:
    """Where the results CSV is rewritten before it replaces the file (atomically)."""
    return results.with_name(results.name + ".tmp")


def updates_files(results: Path) -> tuple[Path, Path, Path]:
    """``bulksend update``'s journal of changes (``RESULTS.csv.updates``, as
    tasks/update.py's ``updates_path`` names it) and SQLite's two working files beside it."""
    updates = results.with_name(results.name + ".updates")
    return updates, Path(f"{updates}-wal"), Path(f"{updates}-shm")


def side_files(results: Path) -> list[tuple[str, Path]]:
    """Every file a run writes beside RESULTS.csv, with what it is (for messages)."""
    journal, wal, shm = journal_files(results)
    updates, updates_wal, updates_shm = updates_files(results)
    return [("its journal", journal), ("its journal's -wal", wal), ("its journal's -shm", shm),
            ("its lock", lock_path(results)), ("its rewrite", tmp_path(results)),
            ("its update journal", updates), ("its update journal's -wal", updates_wal),
            ("its update journal's -shm", updates_shm)]


# -- plain files only (issue 25) ----------------------------------------------
# An output that is a device or a FIFO is not a file to overwrite: os.replace
# would put a plain file in place of /dev/null; reading back a device that
# gives zeros never ends; writing to a FIFO waits for a reader forever.

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def not_plain(st: os.stat_result) -> str | None:
    """What the file of ``st`` is when it is not a plain (regular) file, as a
    message says it ("a character device", "a directory", …); None when it is one."""
    if stat.S_ISREG(st.st_mode):
        return None
    return next((kind for test, kind in _KINDS if test(st.st_mode)), "not a file")


def output_problem(path: Path | str) -> str | None:
    """Why ``path`` may not be an output: what is there when it is not a plain
    file (a symbolic link is followed: a link to a device is a device), or None
    when it is a plain file or nothing is there yet. The one rule every file
    bulksend writes meets (issue 25); the caller raises its own error. A path
    that cannot be looked at (no permission on the folder) passes: the write
    says why it fails."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return not_plain(st)


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once (reading), or fails (writing)
_NOCTTY = getattr(os, "O_NOCTTY", 0)  # a terminal device never becomes this process's


# -- one name per file: links are refused, never followed (issue 11) --------
# The lock and the journal are found by the results file's *name*. A second
# name for the same file (a symbolic or a hard link) would give a second lock
# and a second journal, and a second run could send the same rows again. So a
# results file, and every side file, must be a plain file with one name.

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Windows opens a descriptor in text mode unless told otherwise: "\n" would be
# written as "\r\n" and every byte offset the journal keeps would be wrong.
_BINARY = getattr(os, "O_BINARY", 0)


def no_follow() -> int:
    """The ``os.open`` flag that refuses a symbolic link at the last step of the
    path (``O_NOFOLLOW``: the open fails with ELOOP). 0 where there is none
    (Windows, or ``BULKSEND_FORCE_PORTABLE``): there ``check_opened`` looks,
    after the open, whether the name was a link (see common/portable.py)."""
    return getattr(os, "O_NOFOLLOW", 0) if posix() else 0


def check_opened(fd: int, path: Path, what: str) -> None:
    """Where the open could not refuse a link (``no_follow()`` is 0): ``path``
    must now name the very file ``fd`` holds, and not be a symbolic link. A
    link planted before (or while) the file was opened is caught here, as
    ELOOP would have caught it; ``fd`` is closed and ResultsError raised."""
    try:
        named = os.lstat(path)
        opened = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise ResultsError(f"{path}: cannot check the {what}: {exc.strerror}") from exc
    # Some file systems give no file number (0): then only the link test applies.
    moved = bool(named.st_ino and opened.st_ino) and (
        (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino))
    if stat.S_ISLNK(named.st_mode) or moved:
        os.close(fd)
        raise ResultsError(f"{path}: the {what} is a symbolic link (or was replaced while it was "
                           "opened); bulksend never writes through a link",
                           hint=f"remove {path} (only the link goes) and rerun")


# Windows' answers when another process holds a file: ERROR_SHARING_VIOLATION
# (32: opened without sharing, as a spreadsheet holds the file it shows) and
# ERROR_LOCK_VIOLATION (33: a locked range).
_HELD_ELSEWHERE = (32, 33)


def storage_error(path: Path | str, exc: OSError | sqlite3.Error, doing: str) -> BulksendError:
    """The error for a file that cannot be written. A full disk (or quota, or an
    I/O error) is an abort, exit 3: free space and rerun, it resumes. Anything
    else (no permission, a folder in the way) is a usage error, exit 2."""
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
        if getattr(exc, "winerror", None) in _HELD_ELSEWHERE:
            return ResultsError(f"{path}: cannot {doing}: another program has it open ({cause})",
                                hint=f"close {path} in the program that shows it (a spreadsheet keeps "
                                "the files it shows), then rerun the same command: it resumes")
    else:
        cause = str(exc)
        full = "full" in cause or "disk I/O" in cause
    if full:
        return AbortError(f"{path}: cannot {doing}: {cause}; nothing more is sent",
                          hint=f"free space on the disk that holds {path}, then rerun the same command: "
                          "it resumes")
    return ResultsError(f"{path}: cannot {doing}: {cause}")


def refuse_link(path: Path, what: str, hint: str) -> None:
    """Raise ResultsError when ``path`` is a symbolic link, a file with more
    than one name (``st_nlink`` > 1), or anything but a plain file (a device, a
    FIFO, a folder: issue 25). A missing file passes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ResultsError(f"{path}: cannot check the {what}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise ResultsError(f"{path}: the {what} is a symbolic link (to {os.readlink(path)}); "
                           "bulksend never writes through a link", hint=hint)
    kind = not_plain(st)
    if kind is not None:
        raise not_plain_error(path, what, kind)
    if st.st_nlink > 1:
        raise ResultsError(f"{path}: the {what} has {st.st_nlink} names (hard links); bulksend "
                           "needs it to have one, or two runs could each think it is theirs", hint=hint)


def not_plain_error(path: Path | str, what: str, kind: str) -> ResultsError:
    """The error for a file bulksend would write that is ``kind`` ("a FIFO (named pipe)", …)."""
    return ResultsError(f"{path}: the {what} is {kind}, not a plain file; bulksend writes only plain files",
                        hint=f"pass another path, or remove {path} if it is not meant to be there")


def check_no_links(results: Path) -> None:
    """The results file and every side file beside it: plain files with one name."""
    real = os.path.realpath(results)
    refuse_link(results, "results file",
                f"pass the file's own path (--results {real})" if real != os.path.abspath(results)
                else "pass a results file with one name (copy it, then remove the extra names)")
    for what, path in side_files(results):
        refuse_link(path, f"results file's {what.removeprefix('its ')} file",
                    f"remove {path} (only the link goes), check who made it, and rerun")


def _check_one_name(fd: int, path: Path, what: str) -> os.stat_result:
    st = os.fstat(fd)
    kind = not_plain(st)
    if kind is not None:
        os.close(fd)
        raise not_plain_error(path, what, kind)
    if st.st_nlink > 1:
        os.close(fd)
        raise ResultsError(f"{path}: the {what} has {st.st_nlink} names; bulksend never writes through "
                           "a link", hint=f"remove {path} and rerun")
    return st


def _open_plain(path: Path, flags: int, what: str, mode: int) -> int:
    """``os.open`` that cannot hang on a FIFO or take a terminal (O_NONBLOCK,
    O_NOCTTY), then fstat: a file that is not plain is closed and refused
    (ResultsError); a plain one is put back in blocking mode."""
    try:
        fd = os.open(path, flags | _NONBLOCK | _NOCTTY | _CLOEXEC | _BINARY, mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO no one reads (or a device that is not there)
            raise not_plain_error(path, what, output_problem(path) or "not a file") from None
        raise
    try:
        kind = not_plain(os.fstat(fd))
        if kind is not None:
            raise not_plain_error(path, what, kind)
        if _NONBLOCK and sys.platform != "win32":  # Windows has no O_NONBLOCK on files (_NONBLOCK is 0)
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_nofollow(path: Path, flags: int, what: str, mode: int = 0o666) -> tuple[int, os.stat_result]:
    """``os.open`` that never follows a symbolic link, and refuses a file with
    other names or that is not a plain file (a device, a FIFO): (fd, its stat).
    Raises ResultsError, or AbortError when the disk is full (see ``storage_error``)."""
    follow = no_follow()
    try:
        fd = _open_plain(path, flags | follow, what, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ResultsError(f"{path}: the {what} is a symbolic link; bulksend never writes through a link",
                               hint=f"remove {path} (only the link goes) and rerun") from None
        raise storage_error(path, exc, f"open the {what}") from exc
    if not follow:
        check_opened(fd, path, what)
    return fd, _check_one_name(fd, path, what)


def open_to_read(path: Path, what: str) -> int:
    """A plain file opened to read (a symbolic link followed): its descriptor.
    ResultsError for a device, a FIFO or a folder (read, a device that gives
    zeros never ends: issue 25); OSError when it cannot be opened."""
    return _open_plain(path, os.O_RDONLY, what, 0)


def create_exclusive(path: Path, what: str) -> int:
    """A new file at ``path``, created here (O_EXCL, never through a link). One
    left there (by a killed run, or planted) is removed first: unlinking a
    name never touches the file a link points to."""
    follow = no_follow()
    for _ in range(3):
        try:
            # O_EXCL never creates through a link (POSIX: EEXIST; Windows:
            # the name exists); the check after the open is for the portable branch.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | follow | _CLOEXEC | _BINARY, 0o666)
            if not follow:
                check_opened(fd, path, what)
            return fd
        except FileExistsError:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # Windows: another program holds the old one open
                raise storage_error(path, exc, f"remove the old {what}") from exc
        except OSError as exc:
            raise storage_error(path, exc, f"create the {what}") from exc
    raise ResultsError(f"{path}: the {what} keeps coming back as another file; refusing to write it",
                       hint="check what else writes in this folder")


def try_lock(fd: int) -> bool:
    """Take the lock of the open file ``fd`` for this process: True when taken,
    False when another process holds it. The lock dies with its process (a
    killed run never blocks the next), and is released when ``fd`` is closed.

    POSIX: ``flock`` on the whole file. Elsewhere (Windows, or
    ``BULKSEND_FORCE_PORTABLE``): filelock's ``lock_descriptor``, the primitive
    its ``FileLock`` takes (``LockFileEx`` on byte 0 on Windows, ``flock``
    elsewhere), so no hand-made Windows lock. Raises OSError when the file
    system has no locks at all."""
    if sys.platform != "win32" and posix():
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    from filelock import lock_descriptor

    return lock_descriptor(fd, blocking=False)


def _holder(fd: int) -> str:
    """The process id the lock's holder wrote, or "". It is written after a
    blank first byte: Windows' lock covers byte 0, which no other process may
    read while it is held."""
    for start in (0, 1):
        with contextlib.suppress(OSError):
            os.lseek(fd, start, os.SEEK_SET)
            return os.read(fd, 32).decode("ascii", "replace").strip()
    return ""


class RunLock:
    """One run per results file, held through ``try_lock``: the lock dies with
    its process, so a lock left by a killed run never blocks the next one.

    The lock file is opened without following a link and must have one name;
    once it is held, the results file and its side files are checked the same
    way (``check_no_links``), so a second name for the results file cannot get
    a second lock. Raises LockedError when another run holds it, ResultsError
    for a link, AbortError when the disk is full."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.path = lock_path(results)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd, _ = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, "lock file", 0o644)
        try:
            taken = try_lock(fd)
        except OSError as exc:
            os.close(fd)
            raise storage_error(self.path, exc, "lock the lock file") from exc
        if not taken:
            other = _holder(fd)
            os.close(fd)
            who = f" (pid {other})" if other else ""
            raise LockedError(
                f"{self.results}: another bulksend run is using this results file{who}",
                hint="wait for it to finish, or pass a different --results file",
            ) from None
        try:
            check_no_links(self.results)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f" {os.getpid()}".encode())
        except OSError as exc:
            os.close(fd)
            raise storage_error(self.path, exc, "write the lock file") from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            # The file stays: removing it would race with a run that is opening it.


def hold_output(output: Path, results: Path, what: str = "-o") -> RunLock | None:
    """Take ``output`` as a file a command writes besides the ``results`` it
    reads (``status -o``): its lock, held (release it after the write); None
    when ``output`` is ``results`` itself (its own lock is the one held).

    Another run's results file is never written over (issue 25): ResultsError
    when ``output`` has a journal (a send's, or update's), LockedError when
    another run holds its lock, ResultsError for a link or a file that is not
    plain (see ``check_no_links``)."""
    with contextlib.suppress(OSError):
        if os.path.samefile(output, results):
            return None
    for side in (journal_path(output), updates_files(output)[0]):
        if os.path.lexists(side):
            raise ResultsError(
                f"{output}: {what} is another run's results file (it has {side.name}); refusing to "
                "write over it", hint=f"pass a new file to {what}, or leave {what} out to write into "
                f"{results} itself")
    lock = RunLock(output)
    try:
        lock.acquire()
    except LockedError as exc:
        raise LockedError(f"{output}: {what}: another bulksend run is using this file; refusing to write "
                          "over it", hint=f"pass another file to {what}") from exc
    return lock
