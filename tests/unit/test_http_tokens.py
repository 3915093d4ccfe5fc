"""common/tokens.py: the tokens file (hashes only), lookups, reloads, create."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from juggler.common.tokens import Tokens, TokensError, create, digest, parse


def _file(tmp_path: Path, data: object, name: str = "tokens.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_lookup_finds_the_principal_of_a_token_by_its_hash(tmp_path: Path) -> None:
    p = _file(tmp_path, {"tokens": [
        {"principal": "alice", "sha256": hashlib.sha256(b"s3cret").hexdigest()},
        {"principal": "bob", "sha256": digest("other")}]})
    tokens = Tokens.from_file(p)
    assert tokens is not None
    assert tokens.lookup("s3cret") == "alice"
    assert tokens.lookup("other") == "bob"
    assert tokens.lookup("S3cret") is None
    assert tokens.lookup("") is None
    assert "s3cret" not in p.read_text()


def test_yaml_is_read_too(tmp_path: Path) -> None:
    p = _file(tmp_path, f"tokens:\n  - principal: ops\n    sha256: \"{digest('t')}\"\n",
              "tokens.yaml")
    tokens = Tokens.from_file(p)
    assert tokens is not None and tokens.lookup("t") == "ops"


def test_no_file_means_no_tokens() -> None:
    assert Tokens.from_file(None) is None
    assert Tokens.from_file("") is None


@pytest.mark.parametrize(("data", "says"), [
    ("[1, 2", "not JSON or YAML"),
    ({"tokens": "x"}, '"tokens"'),
    ({"tokens": [{"sha256": digest("x")}]}, "tokens[0]: principal"),
    ({"tokens": [{"principal": "a", "sha256": "abc"}]}, "tokens[0] (a): sha256 must be 64 hex"),
    ({"tokens": [{"principal": "a", "token": "clear"}]}, "holds a token in clear"),
])
def test_a_bad_file_is_refused_saying_where(tmp_path: Path, data: object, says: str) -> None:
    p = _file(tmp_path, data)
    with pytest.raises(TokensError) as e:
        Tokens.from_file(p)
    assert str(p) in str(e.value) and says in str(e.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokensError, match="No such file"):
        Tokens.from_file(tmp_path / "nope.json")


def test_reload_takes_new_tokens_and_keeps_the_old_on_a_bad_file(tmp_path: Path) -> None:
    p = _file(tmp_path, {"tokens": [{"principal": "a", "sha256": digest("one")}]})
    tokens = Tokens.from_file(p)
    assert tokens is not None
    p.write_text(json.dumps({"tokens": [{"principal": "b", "sha256": digest("two")}]}))
    assert tokens.reload()
    assert (tokens.lookup("one"), tokens.lookup("two")) == (None, "b")
    p.write_text("{not: [valid")
    assert not tokens.reload()
    assert tokens.lookup("two") == "b"


def test_create_appends_a_hash_and_returns_the_only_copy_of_the_token(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    first = create(p, "alice")
    second = create(p, "bob")
    assert first != second and len(first) == 64
    assert os.stat(p).st_mode & 0o777 == 0o600
    text = p.read_text()
    assert first not in text and second not in text
    tokens = Tokens.from_file(p)
    assert tokens is not None
    assert (tokens.lookup(first), tokens.lookup(second)) == ("alice", "bob")
    assert parse(text)[0].principal == "alice"
