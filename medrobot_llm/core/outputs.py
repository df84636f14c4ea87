"""The one rule for a file a command writes a recording to (``--mcap``), and the folders any output creates.

A recording goes to a new regular file, or to an empty one nobody is writing (the file ``bringup --mcap`` claims
before its recorder node opens it). Everything else is refused before anything moves: an existing file with
bytes in it (an earlier recording, an audit log, the log being exported), a FIFO (opening it would wait for a
reader), a socket, a device (``/dev/null`` keeps nothing, ``/dev/full`` fails at the first chunk), a directory,
and a symlink (it may point at any of those). The file is held with an exclusive ``flock`` for as long as it is
written, as an audit log is, so a second writer is refused with the holder named instead of interleaving bytes.

Missing parent folders of every output (``--log``, ``--mcap``, ``--record``) are created, and the command says so
(``created_folders`` gives the sentence's subject before anything is created).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

__all__ = ["OutputRefused", "claim_output", "file_kind", "lock_holder", "missing_folders", "same_file"]


class OutputRefused(OSError):
    """A path no recording may be written to; ``strerror`` says why and what to give instead."""


def file_kind(mode: int) -> str:
    """What a file that is no regular file is, for a refusal."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


def claim_output(path: Path) -> int:
    """A descriptor, open for writing and exclusively locked, on a new or empty regular file at ``path``.

    Raises ``OutputRefused`` (an ``OSError``) for every path the module's rule refuses, and ``OSError`` for one
    that cannot be created. Missing parent folders are created."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputRefused(errno.EEXIST, f"it is {file_kind(mode)}; a recording goes to a new regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a symlink put there since the check is refused too; O_NONBLOCK: a FIFO never waits for a reader
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OutputRefused(errno.EEXIST, f"it is {file_kind(st.st_mode)}; a recording goes to a new regular file",
                                str(path))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputRefused(errno.EBUSY, f"it is being written by {lock_holder(fd)}; one process writes a "
                                "recording: give this one its own file", str(path)) from None
        if os.fstat(fd).st_size:
            raise OutputRefused(errno.EEXIST, "it exists and is not empty; a recording never writes over a file "
                                "(an earlier recording, an audit log): give a new file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: by inode when both exist, else by where they resolve to."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def missing_folders(path: Path) -> Path | None:
    """The top-most folder above ``path`` that does not exist yet (creating ``path`` creates it), else None."""
    top = None
    for parent in path.absolute().parents:
        if parent.exists():
            break
        top = parent
    return top


def lock_holder(fd: int) -> str:
    """Who holds the flock on ``fd``'s file, as far as ``/proc/locks`` tells (Linux); a phrase for an error."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return "another process"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == inode and parts[4].isdigit():
            pid = int(parts[4])
            who = "this process" if pid == os.getpid() else "process"
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = ""
            return f"{who} {pid}" + (f" ({cmd.strip()[:120]})" if cmd.strip() else "")
    return "another process"
