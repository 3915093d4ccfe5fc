"""Capabilities and no_new_privs: what a container's root may still do.

Every container gets Docker's capability set: its default one (moby's
`oci/caps/defaults.go`: no CAP_SYS_ADMIN — no mount, no pivot_root, no unshare
of new namespaces —, no CAP_SYS_MODULE, no CAP_NET_ADMIN, no CAP_SYS_PTRACE,
...) changed by the task's --cap-add and --cap-drop
(common/task_privileges.py), and nothing more. `drop_to()` runs in the
container's child after its filesystem is built (mounting needs
CAP_SYS_ADMIN) and before the user switch and exec:

    bounding set   ← the set   (PR_CAPBSET_DROP of every other cap; needs SETPCAP)
    eff/prm        ← the set   (capset)
    inheritable    ← ∅         (capset; moby 0d9a37d0c2, Docker 23.0 and
                                20.10.14, CVE-2022-24769)
    ambient        ← ∅         (PR_CAP_AMBIENT_CLEAR_ALL; Docker sets none)

The bounding set is the ceiling an exec can ever regain, even through
setuid-root or file-capability binaries. A task whose user is not root keeps
permitted and effective across setuid(2) (`drop_to`'s `switch`), as moby
configures them since Docker 25 (3aef732e61; from 18.09 to 24 it left them
empty for a non-root user), but execve clears both for a non-root program
without file capabilities (capabilities(7)), so the command runs with
CapEff 0 — on Docker too.

no_new_privs is off unless the task asks (`--security-opt
no-new-privileges`, as Docker): with it, exec no longer changes the user for a
setuid binary, and grants a file-capability binary nothing beyond the
permitted set it had.

Mask arithmetic (`mask`, `names`) is pure so the tests can decode
/proc/<pid>/status lines against the same table.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from juggler.common.task_privileges import DEFAULT, NUMBERS
from juggler.container import syscalls as sc

# capability.h numbering and Docker's default set live with the rules that
# change the set (common/task_privileges.py: --cap-add, --cap-drop).
__all__ = ["DEFAULT", "DEFAULT_MASK", "NUMBERS", "MissingCapabilities", "drop_to", "mask",
           "missing", "names", "set_no_new_privs"]

# The highest capability number any kernel may know; the loop in
# drop_bounding_set stops at the first one this kernel does not.
_MAX_CAP = 63


def mask(caps) -> int:
    """The 64-bit mask of capability names (without the CAP_ prefix)."""
    out = 0
    for name in caps:
        out |= 1 << NUMBERS[name]
    return out


def names(value: int) -> set[str]:
    """Capability names in a mask; unknown bits come out as 'CAP_<n>'."""
    by_number = {n: name for name, n in NUMBERS.items()}
    return {by_number.get(i, f"CAP_{i}") for i in range(64) if value >> i & 1}


DEFAULT_MASK = mask(DEFAULT)  # 0xa80425fb, Docker's CapBnd


def drop_bounding_set(keep: int) -> None:
    # Dropping a capability already gone succeeds; EINVAL means past this
    # kernel's CAP_LAST_CAP (no read first: this runs at every launch).
    for cap in range(_MAX_CAP + 1):
        if keep >> cap & 1:
            continue
        try:
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            break


class MissingCapabilities(PermissionError):
    """The task asks for capabilities the agent itself does not have."""


def missing(keep: int, permitted: int, last_cap: int) -> set[str]:
    """The capabilities of `keep` that a process with `permitted` cannot
    give, among those this kernel knows (numbers up to `last_cap`): runc
    fails to start such a container ("unable to apply caps: operation not
    permitted", measured with runc 1.1.5), and so does `docker run --cap-add
    ALL` on a host whose root lacks one, since moby expands ALL to every
    capability the kernel knows (oci/caps/utils.go GetAllCapabilities)."""
    lacking = keep & ~permitted & ((1 << (last_cap + 1)) - 1)
    return names(lacking)


def _last_cap() -> int:
    cap = 0
    while cap < _MAX_CAP:
        try:
            sc.prctl(sc.PR_CAPBSET_READ, cap + 1)
        except OSError:
            break
        cap += 1
    return cap


def drop_to(keep: int = DEFAULT_MASK, switch: Callable[[], None] | None = None) -> None:
    """Reduce this process to `keep` (see the module docstring for each set).

    `switch` (setgroups, setgid, setuid to the task's user) runs after the
    bounding set is cut and before the other sets are: runc's order
    (bounding set, keepcaps, setuid, clear keepcaps, apply the configured
    sets), so a task that dropped SETUID or SETGID can still become its user,
    and permitted and effective are `keep` for a non-root user as well (moby ≥
    25 configures them for every user). The user's program still starts with
    none (execve clears them for a non-root uid unless the file has
    capabilities), but a file-capability binary keeps its capabilities under
    no_new_privs, as on Docker.

    Raises MissingCapabilities, before changing anything, when `keep` holds
    a capability this process's permitted set lacks (`missing`): the task is
    refused rather than started without it. Capabilities the kernel does not
    know are left out silently (moby never asks for them)."""
    _, permitted, _ = sc.capget()
    if keep & ~permitted and (lacking := missing(keep, permitted, _last_cap())):
        raise MissingCapabilities(
            f"the agent lacks {', '.join('CAP_' + n for n in sorted(lacking))}, which the "
            "task's capabilities (--cap-add) ask for; refused as runc refuses it "
            "(unable to apply caps: operation not permitted)")
    drop_bounding_set(keep)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    if switch is not None:
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
        try:
            switch()
        finally:
            sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    _, permitted, _ = sc.capget()
    keep &= permitted  # only what the kernel does not know (capset never adds to it)
    sc.capset(effective=keep, permitted=keep, inheritable=0)


def set_no_new_privs() -> None:
    """exec will never grant privileges again: a setuid bit changes no user,
    file capabilities give nothing beyond the permitted set (prctl(2))."""
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
