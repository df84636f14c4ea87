"""Which graph a ROS console signs for, as its bringup comes and goes (``backends.ros.graph_follow``); no DDS here.

A console that read its graph id once signed for a graph that was not there when it was started before its
bringup, or kept across a restart; one that believed any file signed for a copied keys folder's graph, or for one
another user wrote (``tests/test_ros_attacks4.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medrobot_llm.backends.ros.env import graph_identity
from medrobot_llm.backends.ros.graph_follow import FollowedGraph
from medrobot_llm.safety.graph_id import claim_graph, graph_file
from medrobot_llm.safety.keys import KeyTooOpen

DOMAIN = 7
DOMAIN_ONLY = graph_identity(DOMAIN)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    return keys


def test_a_console_started_before_its_bringup_follows_it_and_a_restart(folder: Path) -> None:
    graph = FollowedGraph(folder, DOMAIN)
    assert graph.current() == DOMAIN_ONLY
    first = claim_graph(folder, DOMAIN)
    assert graph.current() == graph_identity(DOMAIN, first.graph.graph_id)
    first.release()
    second = claim_graph(folder, DOMAIN)
    try:
        assert graph.current() == graph_identity(DOMAIN, second.graph.graph_id)
    finally:
        second.release()
    assert graph.current() == DOMAIN_ONLY


def test_a_file_nobody_holds_gives_no_id_and_the_log_says_graph_id(folder: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    graph_file(folder, DOMAIN).write_text(json.dumps({"graph_id": "0123456789abcdef", "pid": 1, "started": "t"}))
    graph_file(folder, DOMAIN).chmod(0o600)
    with caplog.at_level(logging.WARNING):
        graph = FollowedGraph(folder, DOMAIN)
    assert graph.current(reread=True) == DOMAIN_ONLY
    assert "--graph-id" in caplog.text and "no running medrobot bringup holds" in caplog.text
    assert caplog.text.count("no running medrobot bringup holds") == 1  # a re-read that changes nothing is quiet
    claim = claim_graph(folder, DOMAIN)  # a bringup takes the stale file over
    try:
        assert graph.current(reread=True) == graph_identity(DOMAIN, claim.graph.graph_id)
    finally:
        claim.release()


def test_an_id_given_by_hand_is_kept_and_the_file_never_read(folder: Path) -> None:
    claim = claim_graph(folder, DOMAIN)
    try:
        graph = FollowedGraph(folder, DOMAIN, "fedcba9876543210")
        assert graph.current(reread=True) == graph_identity(DOMAIN, "fedcba9876543210")
        assert "restart the console with the id" in graph.hint()
    finally:
        claim.release()
    with pytest.raises(ValueError, match="16 lowercase hex"):
        FollowedGraph(folder, DOMAIN, "../etc")


def test_a_file_another_user_could_write_stops_the_console_at_start_and_is_not_followed_later(folder: Path) -> None:
    path = graph_file(folder, DOMAIN)
    path.write_text(json.dumps({"graph_id": "0123456789abcdef", "pid": 1, "started": "t"}))
    path.chmod(0o666)
    with pytest.raises(KeyTooOpen, match="chmod 600"):
        FollowedGraph(folder, DOMAIN)
    path.unlink()
    graph = FollowedGraph(folder, DOMAIN)
    claim = claim_graph(folder, DOMAIN)
    try:
        path.chmod(0o666)
        assert graph.current() == DOMAIN_ONLY
        path.chmod(0o600)
        assert graph.current() == graph_identity(DOMAIN, claim.graph.graph_id)
    finally:
        claim.release()
