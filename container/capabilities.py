"""Capabilities and no_new_privs: what a container's root may still do.

Every container gets Docker's default capability set (moby's
`oci/caps/defaults.go`) and nothing more: no CAP_SYS_ADMIN (no mount, no
pivot_root, no unshare of new namespaces), no CAP_SYS_MODULE, no CAP_NET_ADMIN,
no CAP_SYS_PTRACE, ...  `drop_to()` runs in the container's child after its
filesystem is built (mounting needs CAP_SYS_ADMIN) and before the user switch
and exec:

    bounding set   ← DEFAULT   (PR_CAPBSET_DROP of every other cap; needs SETPCAP)
    eff/prm        ← DEFAULT   (capset)
    inheritable    ← ∅         (capset; Docker ≥ 20.10.14, CVE-2022-24769)
    ambient        ← ∅         (PR_CAP_AMBIENT_CLEAR_ALL)

The bounding set is the ceiling an exec can ever regain, even through
setuid-root or file-capability binaries; no_new_privs additionally makes exec
refuse to grant anything (setuid bits and file caps are ignored). A task whose
user is not root loses its permitted and effective sets at setuid(2)
(PR_SET_KEEPCAPS stays off), so it runs with no effective capability at all.

Mask arithmetic (`mask`, `names`) is pure so the tests can decode
/proc/<pid>/status lines against the same table.
"""

from __future__ import annotations

import errno

from juggler.container import syscalls as sc

# capability.h numbering.
NUMBERS: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
    "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
    "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28,
    "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
    "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

DEFAULT: frozenset[str] = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})

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


def drop_to(keep: int = DEFAULT_MASK) -> None:
    """Reduce this process to `keep` (see the module docstring for each set)."""
    drop_bounding_set(keep)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    _, permitted, _ = sc.capget()
    keep &= permitted  # capset may never add to the permitted set
    sc.capset(effective=keep, permitted=keep, inheritable=0)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)


def set_no_new_privs() -> None:
    """exec will never grant privileges again (setuid bits, file caps ignored)."""
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
