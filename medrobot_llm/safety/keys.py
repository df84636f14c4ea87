"""The keys the trust checks rest on: one secret per graph, one key per operator, as files only the user can read.

The graph secret is shared by the supervisor (which mints capabilities and signs heartbeats) and the skill
servers (which verify them); an operator key is shared by one console and the supervisor's keyring, and its
file name is the operator's identity. A key that cannot be loaded is an error that says what to do, never a
reason to run without checks: an open graph is exactly what issue 15 showed an attacker using.

Files hold 32 random bytes as hex. They are created atomically (a temporary file, then a hard link that fails
if the name exists, so two ``keys init`` at once cannot both win) with mode 0600 in a 0700 folder, and loaded
only when they are regular files of this user that nobody else can read.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GRAPH_FILE",
    "KEY_BYTES",
    "KEYS_ENV",
    "OPERATOR_NAME",
    "KeyFileError",
    "KeyInfo",
    "KeyMalformed",
    "KeyMissing",
    "KeyTooOpen",
    "KeyUnreadable",
    "check_folder",
    "create_key",
    "default_dir",
    "default_operator",
    "fingerprint",
    "init_keys",
    "list_keys",
    "load_graph_secret",
    "load_key",
    "load_keyring",
    "load_operator_key",
    "open_own_file",
    "operator_path",
]

KEY_BYTES = 32
#: the folder holding the keys, when ``--dir`` is not given
KEYS_ENV = "MEDROBOT_KEYS"
GRAPH_FILE = "graph.key"
_OPERATOR_PREFIX = "operator-"
_SUFFIX = ".key"
#: an operator's identity is part of a file name and of every audit record: short, plain, no path characters
OPERATOR_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_INIT_HINT = "run `medrobot keys init` (or `medrobot keys init --force` to replace a bad key)"


class KeyFileError(Exception):
    """A key that cannot be used; the message names the file and what to do about it."""

    def __init__(self, path: Path, problem: str, hint: str = _INIT_HINT) -> None:
        super().__init__(f"{path}: {problem}; {hint}")
        self.path = path
        self.problem = problem


class KeyMissing(KeyFileError):
    """No such file (or no such folder)."""


class KeyUnreadable(KeyFileError):
    """Not a regular file, not this user's, or the owner has no read permission."""


class KeyTooOpen(KeyFileError):
    """Readable or writable by the group or others: the key may be known to someone else."""


class KeyMalformed(KeyFileError):
    """Empty, not hex, or not 32 bytes."""


def default_dir() -> Path:
    """``$MEDROBOT_KEYS``, else ``$XDG_CONFIG_HOME/medrobot/keys`` (``~/.config/medrobot/keys``)."""
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "medrobot" / "keys"


def default_operator() -> str:
    """The login name, as an operator identity when none is given."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        login = ""
    return re.sub(r"[^a-z0-9_.-]", "-", login.lower()).lstrip("-_.")[:32] or "operator"


def operator_path(folder: Path, name: str) -> Path:
    if not OPERATOR_NAME.fullmatch(name):
        raise ValueError(f"operator name {name!r}: use 1-32 lowercase letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return folder / f"{_OPERATOR_PREFIX}{name}{_SUFFIX}"


def fingerprint(key: bytes) -> str:
    """What ``keys list`` shows instead of a key: enough to compare two copies, nothing to sign with."""
    return hashlib.sha256(b"medrobot key fingerprint\0" + key).hexdigest()[:16]


def check_folder(folder: Path) -> None:
    """Refuse a folder another user could write: whoever may write it can rename a file there and put their own in
    its place (a key, or the graph id a console signs for), whatever the file's own mode says."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise KeyMissing(folder, "no such key folder") from None
    except OSError as exc:
        raise KeyUnreadable(folder, f"cannot read the key folder ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise KeyUnreadable(folder, "not a folder", "pass the keys folder")
    if st.st_uid != os.geteuid():
        raise KeyTooOpen(folder, f"the key folder belongs to uid {st.st_uid}, who could swap a key or the graph id "
                         "file in it", "use a keys folder of your own (`medrobot keys init --dir DIR`)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise KeyTooOpen(folder, f"mode {mode:04o} lets the group or others put files in the key folder",
                         f"run `chmod 700 {folder}`, then `medrobot keys list` to check what is in it")


def open_own_file(path: Path, too_open: int, what: str) -> int:
    """An fd on ``path`` if it is a regular file of this user in a folder of this user's, with none of the
    ``too_open`` mode bits; else a ``KeyFileError`` that says what to do. ``what`` names the file in the refusal.
    The caller closes the fd; the checks are on the file opened (``O_NOFOLLOW``), not on whatever the name points
    to a moment later."""
    check_folder(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyMissing(path, f"no such {what}") from None
    except OSError as exc:
        raise KeyUnreadable(path, f"cannot open it ({exc.strerror}; a symbolic link is not followed)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyUnreadable(path, "not a regular file")
        if st.st_uid != os.geteuid():
            raise KeyUnreadable(path, f"owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})",
                                "create your own keys with `medrobot keys init`")
        mode = stat.S_IMODE(st.st_mode)
        if mode & too_open:
            secret = bool(too_open & 0o044)  # a key: whoever read it holds it; a graph id file is only trusted
            raise KeyTooOpen(path, f"mode {mode:04o} lets the group or others {'read or ' if secret else ''}change it",
                             f"run `chmod 600 {path}` if nobody else can have read it, else replace it with "
                             "`medrobot keys init --force`" if secret else
                             f"run `chmod 600 {path}`, and check the id in it is the one your bringup printed")
        if not mode & stat.S_IRUSR:
            raise KeyUnreadable(path, f"mode {mode:04o} does not let its owner read it", f"run `chmod 600 {path}`")
    except BaseException:
        os.close(fd)
        raise
    return fd


def load_key(path: Path) -> bytes:
    """The 32 bytes in ``path``, or a ``KeyFileError`` subclass that says what is wrong and what to do."""
    fd = open_own_file(path, 0o077, "key file")
    try:
        raw = os.read(fd, 4 * KEY_BYTES)
    finally:
        os.close(fd)
    text = raw.decode("ascii", "replace").strip()
    if not text:
        raise KeyMalformed(path, "the file is empty")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyMalformed(path, "the file does not hold a hex key") from None
    if len(key) != KEY_BYTES:
        raise KeyMalformed(path, f"the key is {len(key)} bytes, not {KEY_BYTES}")
    return key


def load_graph_secret(folder: Path | None = None) -> bytes:
    return load_key((folder or default_dir()) / GRAPH_FILE)


def load_operator_key(name: str, folder: Path | None = None) -> bytes:
    return load_key(operator_path(folder or default_dir(), name))


def _operator_files(folder: Path) -> list[tuple[str, Path]]:
    """(identity, path) of the operator keys; a file whose name is no identity is not an operator's key."""
    found = ((p.name[len(_OPERATOR_PREFIX):-len(_SUFFIX)], p) for p in folder.glob(f"{_OPERATOR_PREFIX}*{_SUFFIX}"))
    return sorted((name, path) for name, path in found if OPERATOR_NAME.fullmatch(name))


def load_keyring(folder: Path | None = None) -> dict[str, bytes]:
    """Every operator key in the folder, by identity; any bad file fails the whole keyring (no silent gaps)."""
    folder = folder or default_dir()
    if not folder.is_dir():
        raise KeyMissing(folder, "no such key folder")
    ring = {name: load_key(path) for name, path in _operator_files(folder)}
    if not ring:
        raise KeyMissing(folder, "no operator keys (operator-NAME.key)",
                         "run `medrobot keys init --operator NAME` for each console operator")
    return ring


def _safe_folder(folder: Path) -> None:
    """The folder, 0700 and this user's: created so, or an existing one of ours narrowed to it; never another's."""
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.stat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise KeyUnreadable(folder, "not a folder", "pass another --dir")
    if st.st_uid != os.geteuid():
        raise KeyTooOpen(folder, f"the folder belongs to uid {st.st_uid}, who could swap a key",
                         "pass a --dir of your own")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask; an existing folder may be wider


def create_key(path: Path, *, force: bool = False) -> bytes:
    """A new random key at ``path`` (0600); an existing file is never replaced unless ``force``."""
    _safe_folder(path.parent)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (key.hex() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists, atomically
            except FileExistsError:
                raise FileExistsError(f"{path} exists; not overwritten (--force replaces it, and every holder of "
                                      "the old key then needs the new one)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return key


@dataclass(frozen=True)
class KeyInfo:
    """One key file as ``keys list`` and ``keys init`` report it: never the key itself."""

    kind: str  # "graph" or "operator", or "graph_id" for a bringup's graph id file (``safety.graph_id``)
    name: str  # the operator's identity; "graph" for the graph secret
    path: str
    fingerprint: str = ""
    problem: str = ""
    action: str = ""  # for init: created, replaced or kept
    state: str = ""  # a graph id file's: which running bringup holds it, or that none does

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v or k in ("kind", "name", "path")}


def _info(kind: str, name: str, path: Path, action: str = "") -> KeyInfo:
    try:
        return KeyInfo(kind, name, str(path), fingerprint(load_key(path)), action=action)
    except KeyFileError as exc:
        return KeyInfo(kind, name, str(path), problem=str(exc), action=action)


def list_keys(folder: Path | None = None) -> list[KeyInfo]:
    """The graph secret (reported missing if it is) and every operator key in the folder."""
    folder = folder or default_dir()
    graph = [_info("graph", "graph", folder / GRAPH_FILE)]
    return graph + [_info("operator", name, path) for name, path in _operator_files(folder)]


def init_keys(folder: Path | None = None, operators: list[str] | tuple[str, ...] = (), *,
              force: bool = False) -> list[KeyInfo]:
    """Create the graph secret and the named operators' keys; existing ones are kept unless ``force``.

    A kept file is loaded, so a key that exists but cannot be used (wrong mode, wrong size) is reported with
    its problem rather than hidden behind "kept".
    """
    folder = folder or default_dir()
    wanted = [("graph", "graph", folder / GRAPH_FILE)] + [("operator", n, operator_path(folder, n)) for n in operators]
    out = []
    for kind, name, path in wanted:
        existed = path.exists() or path.is_symlink()
        if existed and not force:
            out.append(_info(kind, name, path, "kept"))
            continue
        create_key(path, force=force)
        out.append(_info(kind, name, path, "replaced" if existed else "created"))
    return out
