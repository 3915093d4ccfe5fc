"""`juggler roles`, `juggler weights`, `juggler quota` without a master: what
the commands parse and refuse (exit 2, nothing sent), what they send, how they
show a master's refusal (exit 1, its message) and the tables they print.
The same commands against real processes: tests/integration/test_roles_cli.py."""

from __future__ import annotations

import grpc
import pytest

from juggler.cli import main as cli_main
from juggler.cli import operator, roles
from juggler.v1 import common_pb2, operator_pb2


class Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


VIEWS = [
    operator_pb2.RoleView(role="dev", weight=3, quota=[
        common_pb2.Resource(name="cpus", scalar=0), common_pb2.Resource(name="mem", scalar=8192)],
        allocated=[common_pb2.Resource(name="cpus", scalar=0.5)],
        frameworks=["f1", "f2"]),
    operator_pb2.RoleView(role="*", weight=1),
]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """The Operator calls the commands make; GetRoles answers VIEWS."""
    calls: list[tuple[str, object]] = []

    def call(master: str, method: str, request: object, timeout: float = 10.0) -> object:
        calls.append((method, request))
        if method == "GetRoles":
            return operator_pb2.GetRolesResponse(roles=VIEWS)
        return None

    monkeypatch.setattr(operator, "call", call)
    monkeypatch.setenv("JUGGLER_MASTER", "127.0.0.1:1")
    return calls


def test_parse_weights() -> None:
    assert roles.parse_weights(["dev=3", "*=0.5", "a.b-c=1e3"]) == {
        "dev": 3.0, "*": 0.5, "a.b-c": 1000.0}
    assert roles.parse_weights([]) == {}


@pytest.mark.parametrize(("pairs", "match"), [
    (["dev"], "is not ROLE=WEIGHT"),
    (["dev=x"], "is not a number"),
    (["dev="], "is not a number"),
    (["dev=0"], "positive"),
    (["dev=-2"], "positive"),
    (["dev=nan"], "positive"),
    (["dev=inf"], "positive"),
    (["=3"], "is not valid"),
    (["bad role=3"], "is not valid"),
    (["dev=1", "dev=2"], "given twice"),
])
def test_parse_weights_refuses(pairs: list[str], match: str) -> None:
    with pytest.raises(roles.UsageError, match=match):
        roles.parse_weights(pairs)


def test_parse_limit_keeps_zero_amounts() -> None:
    assert roles.parse_limit("cpus:4; mem:8192 ;") == {"cpus": 4.0, "mem": 8192.0}
    assert roles.parse_limit("cpus:0;disk:0.5") == {"cpus": 0.0, "disk": 0.5}


@pytest.mark.parametrize(("text", "match"), [
    ("", "gives no amount"),
    (";", "gives no amount"),
    ("cpus", "is not NAME:AMOUNT"),
    ("gpus:1", "unknown resource"),
    ("cpus:-1", "negative"),
    ("cpus:nan", "finite"),
    ("mem:1e999", "finite"),
    ("mem:8G", "is not a number"),
    ("cpus:1;cpus:2", "given twice"),
])
def test_parse_limit_refuses(text: str, match: str) -> None:
    with pytest.raises(roles.UsageError, match=match):
        roles.parse_limit(text)


@pytest.mark.parametrize("argv", [
    ["weights", "dev=0"],
    ["weights", "dev"],
    ["quota", "dev", "cpus:-1"],
    ["quota", "dev", "cpus:1", "--remove"],
    ["quota", "--remove"],
    ["quota", "bad role", "cpus:1"],
])
def test_bad_input_exits_2_before_calling_the_master(
        sent: list, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(argv) == 2
    assert sent == []
    err = capsys.readouterr().err
    assert err.startswith(f"juggler {argv[0]}: ") and len(err.splitlines()) == 1, err


def test_weights_sends_every_pair_at_once(sent: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["weights", "dev=3", "ops=0.5"]) == 0
    [(method, request)] = sent
    assert method == "UpdateWeights" and dict(request.weights) == {"dev": 3.0, "ops": 0.5}
    assert capsys.readouterr().out.splitlines() == ["dev: weight 3", "ops: weight 0.5"]


def test_quota_sends_the_limit_with_its_zero_amounts(sent: list,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["quota", "dev", "mem:8192;cpus:0"]) == 0
    [(method, request)] = sent
    assert method == "UpdateQuota" and request.role == "dev" and not request.remove
    assert [(r.name, r.scalar) for r in request.limit] == [("cpus", 0.0), ("mem", 8192.0)]
    assert capsys.readouterr().out.strip() == "dev: quota cpus:0;mem:8192"


def test_quota_remove(sent: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["quota", "dev", "--remove"]) == 0
    [(method, request)] = sent
    assert method == "UpdateQuota" and request.remove and not request.limit
    assert capsys.readouterr().out.strip() == "dev: quota removed"


@pytest.mark.parametrize("argv", [["weights", "dev=3"], ["quota", "dev", "cpus:1"], ["roles"]])
def test_a_refusal_exits_1_with_the_masters_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: list[str]) -> None:
    def call(*args: object, **kwargs: object) -> object:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "role dev: not allowed here")

    monkeypatch.setattr(operator, "call", call)
    monkeypatch.setenv("JUGGLER_MASTER", "127.0.0.1:1")
    assert cli_main.main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        f"juggler {argv[0]}: role dev: not allowed here")


def test_no_master_exits_1(monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    def call(*args: object, **kwargs: object) -> object:
        raise operator.NoMaster(["127.0.0.1:1"], "connection refused")

    monkeypatch.setattr(operator, "call", call)
    assert cli_main.main(["weights", "--master", "127.0.0.1:1"]) == 1
    assert "cannot reach a leading master" in capsys.readouterr().err


def test_tables(sent: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["roles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ROLE", "WEIGHT", "QUOTA", "ALLOCATED", "OFFERED", "FRAMEWORKS"]
    assert lines[1].split() == ["*", "1", "-", "-", "-", "-"]
    assert lines[2].split() == ["dev", "3", "cpus:0;mem:8192", "cpus:0.5", "-", "f1,f2"]
    # Columns line up.
    assert lines[0].index("WEIGHT") == lines[2].index("3")

    assert cli_main.main(["weights"]) == 0
    assert [x.split() for x in capsys.readouterr().out.splitlines()] == [
        ["ROLE", "WEIGHT"], ["*", "1"], ["dev", "3"]]

    assert cli_main.main(["quota"]) == 0  # only roles with a limit
    assert [x.split() for x in capsys.readouterr().out.splitlines()] == [
        ["ROLE", "QUOTA", "ALLOCATED", "OFFERED"], ["dev", "cpus:0;mem:8192", "cpus:0.5", "-"]]

    assert cli_main.main(["quota", "*"]) == 0  # one role, limit or not
    assert [x.split() for x in capsys.readouterr().out.splitlines()] == [
        ["ROLE", "QUOTA", "ALLOCATED", "OFFERED"], ["*", "-", "-", "-"]]
    assert all(method == "GetRoles" for method, _ in sent)


def test_amounts_are_exact_to_the_thousandth() -> None:
    assert roles.amounts([common_pb2.Resource(name="mem", scalar=1048576),
                          common_pb2.Resource(name="cpus", scalar=0.125)]) == \
        "cpus:0.125;mem:1048576"
    assert roles.amounts([]) == "-"
