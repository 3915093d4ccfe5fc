"""Harnesses that the tests and the benchmarks share (real daemons as processes,
a throw-away etcd, an image registry on loopback, a busybox root filesystem).
Nothing here imports pytest: the fixtures built on them live in tests/conftest.py.
"""
