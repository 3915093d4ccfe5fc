"""Every form a user can take, resolved as `docker run -u` resolves it.

The expected values are what Docker gives (umoci 0.4.7's GetExecUser for uid,
gid and supplementary groups, Docker's [gid] + those groups, runc 1.1.5's
HOME); tests/integration/test_runc_differential.py checks the same rules
against runc and umoci themselves, on generated cases.
"""

from __future__ import annotations

import pytest

from juggler.container import users
from juggler.testing.accounts import GROUP as SHARED_GROUP
from juggler.testing.accounts import PASSWD

# The shared accounts, with a comment line in /etc/group (skipped).
GROUP = SHARED_GROUP.replace("wheel:", "# a comment\nwheel:", 1)


@pytest.mark.parametrize(("spec", "uid", "gid", "groups", "home"), [
    # "" is uid 0, with root's groups from /etc/group (not the executor's).
    ("", 0, 0, (0, 10), "/root"),
    ("root", 0, 0, (0, 10), "/root"),
    # A name: its gid first, then every group listing it, once each.
    ("alice", 1000, 1000, (1000, 10, 50), "/home/alice"),
    ("bob", 1001, 1001, (1001, 50), "/home/bob"),
    ("nobody", 65534, 65534, (65534,), "/nonexistent"),
    # A number is a uid, first entry wins; never a name that looks like one.
    ("1000", 1000, 1000, (1000, 10, 50), "/home/alice"),
    ("1002", 1002, 0, (0,), "/"),
    # A uid with no passwd entry: gid 0, no supplementary group, HOME "/".
    ("4321", 4321, 0, (0,), "/"),
    # HOME is the first entry with the uid Docker chose (runc looks it up by uid).
    ("alias", 1000, 50, (50,), "/home/alice"),
    ("nohome", 1004, 1004, (1004,), ""),
    # An explicit group: that gid only, no supplementary groups.
    ("alice:staff", 1000, 50, (50,), "/home/alice"),
    ("alice:50", 1000, 50, (50,), "/home/alice"),
    ("1000:1001", 1000, 1001, (1001,), "/home/alice"),
    ("1000:4000", 1000, 4000, (4000,), "/home/alice"),   # numeric, not in /etc/group
    ("4321:staff", 4321, 50, (50,), "/"),
    ("alice:2000", 1000, 2000, (2000,), "/home/alice"),  # by gid, not the group named 2000
    ("alice:", 1000, 1000, (1000, 10, 50), "/home/alice"),
    (":staff", 0, 50, (50,), "/root"),
])
def test_every_user_form(spec: str, uid: int, gid: int, groups: tuple[int, ...],
                         home: str) -> None:
    u = users.resolve(spec, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == (uid, gid, groups, home)


@pytest.mark.parametrize(("spec", "words"), [
    ("ghost", "no user 'ghost' in the container's /etc/passwd"),
    ("alice:ghosts", "no group 'ghosts' in the container's /etc/group"),
    ("2147483648", "uids and gids must be in range 0-2147483647"),
    ("alice:2147483648", "uids and gids must be in range 0-2147483647"),
])
def test_what_docker_refuses(spec: str, words: str) -> None:
    with pytest.raises(users.UnknownUser, match=words):
        users.resolve(spec, PASSWD, GROUP)


def test_without_files_only_numbers_resolve() -> None:
    assert users.resolve("", "") == users.User(uid=0, gid=0, groups=(0,), home="/")
    assert users.resolve("5:6", "").groups == (6,)
    with pytest.raises(users.UnknownUser):
        users.resolve("root", "")


def test_lines_read_as_go_reads_them() -> None:
    # Blanks around a line are ignored; a field that is no number reads as 0;
    # passwd has no comments (a '#' line is a user), group has.
    passwd = "  app:x:7:x:App:/srv/app:/bin/sh  \n#c:x:8:8::/c:\n"
    group = "# app:x:9:app\nops:x:9:app\n"
    u = users.resolve("app", passwd, group)
    assert (u.uid, u.gid, u.groups, u.home) == (7, 0, (0, 9), "/srv/app")
    assert users.resolve("#c", passwd, group).uid == 8


def test_lookup_reads_the_containers_files(tmp_path) -> None:
    (tmp_path / "passwd").write_text(PASSWD)
    assert users.lookup("alice", str(tmp_path)).groups == (1000,)  # no group file
    (tmp_path / "group").write_text(GROUP)
    assert users.lookup("alice", str(tmp_path)).groups == (1000, 10, 50)


def test_a_kept_answer_is_never_one_for_other_files(tmp_path) -> None:
    """Answers are kept by the files' texts: an edit in place, even one that
    keeps the size and lands within the same clock tick, is read."""
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    first = users.lookup("alice", str(tmp_path))
    assert users.lookup("alice", str(tmp_path)) is first  # kept
    with open(tmp_path / "passwd", "r+") as f:  # same size, same inode
        text = f.read()
        f.seek(0)
        f.write(text.replace(":1000:1000:", ":1001:1000:", 1))
    assert users.lookup("alice", str(tmp_path)).uid == 1001
    (tmp_path / "group").unlink()
    assert users.lookup("alice", str(tmp_path)).groups == (1000,)
