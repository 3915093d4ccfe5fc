"""The /etc/passwd and /etc/group that user-resolution tests share: one table of
accounts with every shape runc and Docker resolve differently from a naive
lookup — two names for uid 1000 (`alice`, `alias`, first one wins for HOME), a
name that looks like a uid (`1002`, uid 1003), a group that looks like a gid
(`2000`, gid 2001), an empty home (`nohome`), supplementary groups (`wheel`,
`staff`) and `nobody`/`nogroup`. Used by tests/unit/test_users.py (against
container/users.py) and tests/integration/test_runc_differential.py (the same
files in a container, resolved by runc and by juggler).
"""

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
alias:x:1000:50::/home/alias:/bin/sh
1002:x:1003:1003::/home/odd:/bin/sh
nohome:x:1004:1004:::/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
wheel:x:10:root,alice
staff:x:50:alice,bob
alice:x:1000:alice
bob:x:1001:
nogroup:x:65534:
2000:x:2001:
"""
