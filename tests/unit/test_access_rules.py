"""common/access_rules.py: parsing Mesos-style rules and deciding with them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from juggler.common.access_rules import ACTIONS, Rules, RulesError, parse

CONTRACT_EXAMPLE = {
    "permissive": False,
    "run_tasks": [
        {"principals": {"values": ["alice"]}, "users": {"values": ["alice", "nobody"]}},
        {"principals": {"type": "ANY"}, "users": {"type": "NONE"}},
    ],
}


def test_the_contract_example() -> None:
    rules = parse(CONTRACT_EXAMPLE)
    assert rules.check("run_tasks", "alice", "nobody").allowed
    assert rules.check("run_tasks", "alice", "alice").rule == "run_tasks[0]"
    # alice's entry does not name root: skipped, and the ANY/NONE entry refuses.
    root = rules.check("run_tasks", "alice", "root")
    assert not root.allowed and root.rule == "run_tasks[1]"
    assert root.message == ("permission denied: run_tasks refused to principal 'alice' for "
                            "user 'root' (rule run_tasks[1])")
    bob = rules.check("run_tasks", "bob", "bob")
    assert not bob.allowed and bob.rule == "run_tasks[1]"


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_allows_what_its_entry_names_and_nothing_else(action: str) -> None:
    key = ACTIONS[action]
    entry: dict = {"principals": {"values": ["ops"]}}
    if key is not None:
        entry[key] = {"values": ["x"]}
    rules = parse({action: [entry]})
    obj = "x" if key is not None else None
    assert rules.check(action, "ops", obj).allowed
    assert rules.check(action, "ops", obj).rule == f"{action}[0]"
    refused = rules.check(action, "dev", obj)
    assert not refused.allowed and refused.rule == "permissive: false"
    assert refused.message.startswith(f"permission denied: no {action} rule allows "
                                      "principal 'dev'")
    if key is not None:
        assert not rules.check(action, "ops", "y").allowed
    other = next(a for a in ACTIONS if a != action)
    assert not rules.check(other, "ops", "x" if ACTIONS[other] else None).allowed


def test_default_refusal_names_the_object() -> None:
    d = parse({}).check("run_tasks", "bob", "root")
    assert d.message == ("permission denied: no run_tasks rule allows principal 'bob' for "
                         "user 'root' (rule permissive: false)")


def test_entries_are_tried_in_order_first_matching_principal_decides() -> None:
    rules = parse({"register_frameworks": [
        {"principals": {"values": ["alice"]}, "roles": {"type": "NONE"}},
        {"principals": {"type": "ANY"}, "roles": {"type": "ANY"}},
    ]})
    assert not rules.check("register_frameworks", "alice", "web").allowed
    assert rules.check("register_frameworks", "bob", "web").allowed
    # The same entries the other way round: ANY first decides for alice too.
    swapped = parse({"register_frameworks": [
        {"principals": {"type": "ANY"}, "roles": {"type": "ANY"}},
        {"principals": {"values": ["alice"]}, "roles": {"type": "NONE"}},
    ]})
    assert swapped.check("register_frameworks", "alice", "web").allowed


def test_an_entry_whose_values_do_not_match_is_skipped() -> None:
    rules = parse({"permissive": True, "run_tasks": [
        {"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}}]})
    # Skipped, then permissive decides.
    d = rules.check("run_tasks", "alice", "root")
    assert d.allowed and d.rule == "permissive: true"


def test_prefixes_end_in_a_star() -> None:
    rules = parse({"apps_write": [
        {"principals": {"values": ["team-*"]}, "app_ids": {"values": ["/team-a/*", "/exact"]}}]})
    assert rules.check("apps_write", "team-a", "/team-a/web").allowed
    assert rules.check("apps_write", "team-b", "/exact").allowed
    assert not rules.check("apps_write", "team-a", "/exact/more").allowed
    assert not rules.check("apps_write", "team-a", "/team-b/web").allowed
    assert not rules.check("apps_write", "ops", "/team-a/web").allowed
    star = parse({"apps_read": [{"principals": {"values": ["*"]},
                                 "app_ids": {"values": ["*"]}}]})
    assert star.check("apps_read", "anyone", "/anything").allowed
    assert not star.check("apps_read", None, "/anything").allowed  # "*" needs a principal


def test_principals_none_and_any_with_callers_without_a_principal() -> None:
    rules = parse({"view_cluster": [{"principals": {"type": "NONE"}}]})
    assert rules.check("view_cluster", None).allowed
    assert not rules.check("view_cluster", "alice").allowed
    anyone = parse({"view_cluster": [{"principals": {"type": "ANY"}}]})
    assert anyone.check("view_cluster", None).allowed
    assert anyone.check("view_cluster", "alice").allowed
    named = parse({"view_cluster": [{"principals": {"values": ["alice"]}}]})
    assert not named.check("view_cluster", None).allowed
    assert "a caller without a principal" in named.check("view_cluster", None).message


def test_permissive() -> None:
    assert parse({"permissive": True}).check("kill_tasks", "x", "y").allowed
    assert not parse({"permissive": False}).check("kill_tasks", "x", "y").allowed
    assert not parse(None).check("view_cluster", "x").allowed
    denied = parse({"permissive": True, "drain_agents": [
        {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}]})
    assert not denied.check("drain_agents", "ops", "h1").allowed


def test_caller_bugs_raise() -> None:
    with pytest.raises(KeyError):
        parse({}).check("run_task", "x", "y")
    with pytest.raises(ValueError, match="needs its object"):
        parse({}).check("run_tasks", "x")


@pytest.mark.parametrize(("data", "says"), [
    ([], "must be a mapping of actions, not list"),
    ({"run_task": []}, "unknown action 'run_task'"),
    ({"permissive": "yes"}, "permissive must be true or false"),
    ({"run_tasks": {}}, "run_tasks must be a list of entries"),
    ({"run_tasks": ["alice"]}, r"run_tasks\[0\] must be a mapping"),
    ({"run_tasks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]},
     r"run_tasks\[0\]: unknown key 'roles' \(run_tasks entries take 'principals' and 'users'\)"),
    ({"view_cluster": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}]},
     r"view_cluster\[0\]: unknown key 'users'"),
    ({"run_tasks": [{"users": {"type": "ANY"}}]}, r"run_tasks\[0\]: 'principals' is missing"),
    ({"run_tasks": [{"principals": {"type": "ANY"}}]}, r"run_tasks\[0\]: 'users' is missing"),
    ({"run_tasks": [{"principals": {"values": "alice"}, "users": {"type": "ANY"}}]},
     r"run_tasks\[0\]\.principals\.values must be a non-empty list of non-empty strings"),
    ({"run_tasks": [{"principals": {"values": [1]}, "users": {"type": "ANY"}}]},
     r"run_tasks\[0\]\.principals\.values must be"),
    ({"run_tasks": [{"principals": {"values": []}, "users": {"type": "ANY"}}]},
     r"run_tasks\[0\]\.principals\.values must be"),
    ({"run_tasks": [{"principals": {"type": "SOME"}, "users": {"type": "ANY"}}]},
     r"run_tasks\[0\]\.principals\.type must be \"ANY\" or \"NONE\", not 'SOME'"),
    ({"kill_tasks": [{"principals": {"type": "ANY"},
                      "framework_principals": {"type": "ANY", "values": ["a"]}}]},
     r"kill_tasks\[0\]\.framework_principals: give 'values' or 'type', not both"),
    ({"kill_tasks": [{"principals": {"type": "ANY"}, "framework_principals": ["a"]}]},
     r"kill_tasks\[0\]\.framework_principals must be"),
    ({"kill_tasks": [{"principals": {"typ": "ANY"}, "framework_principals": {"type": "ANY"}}]},
     r"kill_tasks\[0\]\.principals: unknown key 'typ'"),
])
def test_bad_files_are_refused_naming_the_bad_key(data: object, says: str) -> None:
    with pytest.raises(RulesError, match=says):
        parse(data)


_names = st.text(alphabet="abc/-", min_size=1, max_size=6)


@given(action=st.sampled_from(sorted(ACTIONS)), principal=st.one_of(st.none(), _names),
       obj=_names, permissive=st.booleans())
def test_without_entries_permissive_decides(action: str, principal: str | None, obj: str,
                                            permissive: bool) -> None:
    rules = Rules(permissive=permissive, entries={})
    d = rules.check(action, principal, obj)
    assert d.allowed is permissive
    assert bool(d.message) is not permissive


@given(action=st.sampled_from(sorted(ACTIONS)), principal=st.one_of(st.none(), _names),
       obj=_names, allow=st.booleans(), rest=st.lists(st.sampled_from(["ANY", "NONE"]),
                                                       max_size=3))
def test_a_leading_any_entry_decides_whatever_follows(action: str, principal: str | None,
                                                     obj: str, allow: bool,
                                                     rest: list[str]) -> None:
    key = ACTIONS[action]
    if key is None and not allow:
        return  # principal-only actions have no NONE object
    first: dict = {"principals": {"type": "ANY"}}
    later = [{"principals": {"type": "ANY"}} for _ in rest]
    if key is not None:
        first[key] = {"type": "ANY" if allow else "NONE"}
        for entry, kind in zip(later, rest, strict=True):
            entry[key] = {"type": kind}
    d = parse({action: [first, *later]}).check(action, principal, obj)
    assert d.allowed is allow and d.rule == f"{action}[0]"


@given(prefix=_names, rest=st.text(alphabet="abc/-", max_size=6), other=_names)
def test_a_star_value_is_a_prefix(prefix: str, rest: str, other: str) -> None:
    rules = parse({"containers_read": [{"principals": {"type": "ANY"},
                                        "names": {"values": [prefix + "*"]}}]})
    assert rules.check("containers_read", "p", prefix + rest).allowed
    assert rules.check("containers_read", "p", other).allowed is other.startswith(prefix)


def test_the_readme_s_rules_file_example_parses() -> None:
    """The example of README.md's "Securing a cluster" is a rules file juggler takes."""
    import json
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Securing a cluster"):]
    block = section[section.index("```json") + len("```json"):]
    example = json.loads(block[:block.index("```")])
    parsed = parse(example)
    assert set(parsed.entries) == set(example)
