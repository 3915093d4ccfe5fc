"""juggler: a Mesos-style cluster manager.

The code lives in top-level folders of the repository, each mapped to one
subpackage of this namespace by pyproject.toml (master/ → juggler.master, ...).

gRPC's fork handlers are turned off (GRPC_ENABLE_FORK_SUPPORT=false, unless
the environment says otherwise) before any juggler module imports grpc: with
them on, a child that a process with live channels forks (subprocess with
user=, group= or preexec_fn, which cannot use vfork: `juggler up` restarting a
daemon, the agent entering a container) restarts gRPC's poller before its
exec and now and then aborts there ("ev_epoll1_linux.cc Check failed:
next_worker->initialized_cv"; grpc/grpc#43055): 13 of 1,500 such children
with grpcio 1.85 and channels pinging every 0.1 s, none with them off. No
juggler child uses gRPC after a fork: each one execs, or (executors) speaks
only over its own socket.
"""

import os as _os

_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
