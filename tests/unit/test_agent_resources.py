"""What an agent offers: detected amounts and Mesos's default ports, and --resources over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from juggler.agent.resources import detect, resolve
from juggler.common.ranges import Ranges
from juggler.common.resources import ResourceError


def test_an_agent_offers_mesos_s_default_ports(tmp_path: Path) -> None:
    assert detect(tmp_path).ports == Ranges.parse("[31000-32000]")
    assert resolve(None, tmp_path).ports == Ranges.parse("[31000-32000]")
    # A flag without ports keeps them; with ports it replaces them.
    assert resolve("cpus:1", tmp_path).ports == Ranges.parse("[31000-32000]")
    got = resolve("cpus:1;mem:512;disk:1024;ports:[31000-32000,40000-40100]", tmp_path)
    assert str(got) == "cpus:1;disk:1024;mem:512;ports:[31000-32000,40000-40100]"
    assert not resolve("cpus:1;ports:[]", tmp_path).ports


def test_bad_ports_in_the_flag_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="not within 1-65535"):
        resolve("ports:[0-10]", tmp_path)
