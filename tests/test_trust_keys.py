"""Keys on disk: created only-the-user-readable and never overwritten by accident; loaded only when still so.

A key another user can read is a key someone else may hold, so it is refused like a missing one, with a
message that says what to do; nothing here ever falls back to running without keys.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from medrobot_llm.cli import main
from medrobot_llm.safety import keys
from medrobot_llm.safety.keys import (
    GRAPH_FILE,
    KEY_BYTES,
    KeyFileError,
    KeyMalformed,
    KeyMissing,
    KeyTooOpen,
    KeyUnreadable,
    create_key,
    init_keys,
    list_keys,
    load_graph_secret,
    load_key,
    load_keyring,
    load_operator_key,
    operator_path,
)


GOOD = "ab" * KEY_BYTES


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def test_init_creates_0600_files_in_a_0700_folder(folder: Path) -> None:
    infos = init_keys(folder, ["alice", "bob"])
    assert [(i.kind, i.name, i.action) for i in infos] == [
        ("graph", "graph", "created"), ("operator", "alice", "created"), ("operator", "bob", "created")]
    assert _mode(folder) == 0o700
    for path in (folder / GRAPH_FILE, operator_path(folder, "alice"), operator_path(folder, "bob")):
        assert _mode(path) == 0o600
        assert len(bytes.fromhex(path.read_text())) == KEY_BYTES
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no temporary file left behind"
    secrets = {load_graph_secret(folder), load_operator_key("alice", folder), load_operator_key("bob", folder)}
    assert len(secrets) == 3


def test_an_existing_key_is_never_overwritten_without_force(folder: Path) -> None:
    create_key(folder / GRAPH_FILE)
    before = (folder / GRAPH_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        create_key(folder / GRAPH_FILE)
    assert (folder / GRAPH_FILE).read_bytes() == before
    assert [i.action for i in init_keys(folder)] == ["kept"]
    assert (folder / GRAPH_FILE).read_bytes() == before
    assert [i.action for i in init_keys(folder, force=True)] == ["replaced"]
    assert (folder / GRAPH_FILE).read_bytes() != before and _mode(folder / GRAPH_FILE) == 0o600


def test_a_kept_key_that_is_unusable_is_reported_not_hidden(folder: Path) -> None:
    create_key(folder / GRAPH_FILE)
    os.chmod(folder / GRAPH_FILE, 0o644)
    (info,) = init_keys(folder)
    assert info.action == "kept" and "0644" in info.problem


def test_an_existing_folder_of_ours_is_narrowed_to_0700(folder: Path) -> None:
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o777)
    create_key(folder / GRAPH_FILE)
    assert _mode(folder) == 0o700 and _mode(folder / GRAPH_FILE) == 0o600


def test_keys_are_not_created_in_another_users_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder.mkdir(mode=0o755)
    monkeypatch.setattr(keys.os, "geteuid", lambda: os.stat(folder).st_uid + 1)
    with pytest.raises(KeyTooOpen, match="a --dir of your own"):
        create_key(folder / GRAPH_FILE)
    assert not (folder / GRAPH_FILE).exists() and _mode(folder) == 0o755


def test_a_file_that_is_no_identity_is_not_in_the_keyring(folder: Path) -> None:
    init_keys(folder, ["alice"])
    (folder / "operator-Not An Id.key").write_text(GOOD)
    assert list(load_keyring(folder)) == ["alice"]
    assert [i.name for i in list_keys(folder)] == ["graph", "alice"]


def _written(folder: Path, text: str, mode: int = 0o600) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / GRAPH_FILE
    path.write_text(text)
    os.chmod(path, mode)
    return path



@pytest.mark.parametrize(("text", "mode", "error", "words"), [
    (GOOD, 0o644, KeyTooOpen, "mode 0644"),
    (GOOD, 0o640, KeyTooOpen, "mode 0640"),
    (GOOD, 0o604, KeyTooOpen, "chmod 600"),
    (GOOD, 0o620, KeyTooOpen, "group or others"),
    (GOOD, 0o200, KeyUnreadable, "does not let its owner read"),
    ("", 0o600, KeyMalformed, "empty"),
    ("\n  \n", 0o600, KeyMalformed, "empty"),
    ("ab" * (KEY_BYTES - 1), 0o600, KeyMalformed, f"31 bytes, not {KEY_BYTES}"),
    ("ab" * (KEY_BYTES + 1), 0o600, KeyMalformed, "33 bytes"),
    ("zz" * KEY_BYTES, 0o600, KeyMalformed, "hex"),
])
def test_a_key_file_that_cannot_be_trusted_is_a_clear_error(folder: Path, text: str, mode: int,
                                                           error: type[KeyFileError], words: str) -> None:
    path = _written(folder, text, mode)
    with pytest.raises(error, match=words) as exc:
        load_key(path)
    assert str(path) in str(exc.value) and ("medrobot keys init" in str(exc.value) or "chmod" in str(exc.value))


def test_a_good_file_loads(folder: Path) -> None:
    assert load_key(_written(folder, GOOD + "\n")) == bytes.fromhex(GOOD)


def test_missing_file_folder_directory_and_symlink_are_refused(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyMissing, match="medrobot keys init"):
        load_graph_secret(folder)
    real = _written(tmp_path / "elsewhere", GOOD)
    folder.mkdir(mode=0o700)
    (folder / GRAPH_FILE).symlink_to(real)
    with pytest.raises(KeyUnreadable, match="symbolic link"):
        load_graph_secret(folder)
    (folder / "operator-carol.key").mkdir()
    with pytest.raises(KeyUnreadable, match="not a regular file"):
        load_operator_key("carol", folder)


def test_a_key_of_another_user_is_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _written(folder, GOOD)
    monkeypatch.setattr(keys.os, "geteuid", lambda: os.stat(path).st_uid + 1)
    with pytest.raises(KeyTooOpen, match="belongs to uid"):  # the folder is "another user's" too
        load_key(path)
    monkeypatch.setattr(keys, "check_folder", lambda folder: None)  # the file alone
    with pytest.raises(KeyUnreadable, match="not by this user"):
        load_key(path)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_key_in_a_folder_others_may_write_is_refused_saying_the_chmod(folder: Path, mode: int) -> None:
    """Whoever may write the folder can put a key of their own in place of ours, whatever the key file's mode."""
    path = _written(folder, GOOD)
    folder.chmod(mode)
    with pytest.raises(KeyTooOpen, match=f"chmod 700 {folder}"):
        load_key(path)
    folder.chmod(0o700)
    assert load_key(path) == bytes.fromhex(GOOD)


def test_the_keyring_is_every_operator_or_an_error(folder: Path) -> None:
    with pytest.raises(KeyMissing, match="no such key folder"):
        load_keyring(folder)
    init_keys(folder)
    with pytest.raises(KeyMissing, match="--operator NAME"):
        load_keyring(folder)
    init_keys(folder, ["alice", "bob"])
    assert sorted(load_keyring(folder)) == ["alice", "bob"]
    os.chmod(operator_path(folder, "bob"), 0o644)
    with pytest.raises(KeyTooOpen, match="operator-bob.key"):
        load_keyring(folder)


@pytest.mark.parametrize("name", ["", "Alice", "../graph", "a/b", "-x", "x" * 33, "al ice"])
def test_an_operator_name_is_a_plain_identity(folder: Path, name: str) -> None:
    with pytest.raises(ValueError, match="operator name"):
        operator_path(folder, name)


def test_list_shows_fingerprints_never_keys(folder: Path) -> None:
    init_keys(folder, ["alice"])
    infos = list_keys(folder)
    text = json.dumps([i.to_json() for i in infos])
    assert load_graph_secret(folder).hex() not in text and load_operator_key("alice", folder).hex() not in text
    assert [(i.name, bool(i.fingerprint), i.problem) for i in infos] == [("graph", True, ""), ("alice", True, "")]


# -- the CLI ----------------------------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["keys", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_init_creates_the_files_with_their_modes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "init", "--dir", str(folder), "--operator", "alice")
    assert code == 0 and out["ok"] is True
    assert [(k["name"], k["action"]) for k in out["keys"]] == [("graph", "created"), ("alice", "created")]  # type: ignore[attr-defined]
    assert _mode(folder) == 0o700
    assert _mode(folder / GRAPH_FILE) == 0o600 and _mode(operator_path(folder, "alice")) == 0o600


def test_cli_init_refuses_to_overwrite_without_force(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli(capsys, "init", "--dir", str(folder), "--operator", "alice")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out = _cli(capsys, "init", "--dir", str(folder), "--operator", "alice")
    assert code == 0 and [k["action"] for k in out["keys"]] == ["kept", "kept"]  # type: ignore[attr-defined]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    code, out = _cli(capsys, "init", "--dir", str(folder), "--operator", "alice", "--force")
    assert code == 0 and [k["action"] for k in out["keys"]] == ["replaced", "replaced"]  # type: ignore[attr-defined]
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(after) == set(before) and all(after[n] != before[n] for n in before)


def test_cli_list_fails_on_a_0644_key(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _cli(capsys, "init", "--dir", str(folder), "--operator", "alice")
    assert _cli(capsys, "list", "--dir", str(folder))[0] == 0
    os.chmod(operator_path(folder, "alice"), 0o644)
    code, out = _cli(capsys, "list", "--dir", str(folder))
    assert code == 1 and out["ok"] is False
    assert "0644" in out["keys"][1]["problem"]  # type: ignore[index]


def test_cli_list_without_keys_says_how_to_make_them(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "list", "--dir", str(folder))
    assert code == 1 and "medrobot keys init" in str(out["error"])


def test_cli_default_folder_is_the_environments(folder: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.KEYS_ENV, str(folder))
    code, out = _cli(capsys, "init", "--operator", "alice")
    assert code == 0 and out["dir"] == str(folder) and (folder / GRAPH_FILE).is_file()


def test_cli_rejects_a_bad_operator_name_and_writes_nothing(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "init", "--dir", str(folder), "--operator", "../x")
    assert code == 1 and "operator name" in str(out["error"])
    assert not folder.exists()


def test_cli_list_shows_the_graph_id_files_and_whether_a_bringup_holds_them(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medrobot_llm.safety.graph_id import claim_graph, graph_file

    _cli(capsys, "init", "--dir", str(folder), "--operator", "alice")
    graph_file(folder, 9).write_text(json.dumps({"graph_id": "0123456789abcdef", "pid": 1, "started": "t"}))
    graph_file(folder, 9).chmod(0o600)
    claim = claim_graph(folder, 4)
    try:
        code, out = _cli(capsys, "list", "--dir", str(folder))
    finally:
        claim.release()
    files = {k["name"]: k["state"] for k in out["keys"] if k["kind"] == "graph_id"}  # type: ignore[attr-defined]
    assert code == 0 and files == {
        "ROS_DOMAIN_ID 4": f"graph id {claim.graph.graph_id}, held by bringup pid {os.getpid()} since "
                           f"{claim.graph.started}",
        "ROS_DOMAIN_ID 9": "no running bringup holds it: consoles ignore it"}
    graph_file(folder, 9).chmod(0o666)
    code, out = _cli(capsys, "list", "--dir", str(folder))
    assert code == 1 and "chmod 600" in str(out["keys"])
