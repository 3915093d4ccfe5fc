"""What a task gets when it says nothing, and the bounds of what it may say.

One place for every default and limit the task check (common/task_check.py),
the container spec (container/spec.py), the executor's health checks and its
log files apply, each with where it comes from. Task ids have their own rule
in common/ids.py.

The labels the agent and the executor understand (TaskInfo has no fields for
these yet; a label keeps the wire format unchanged):

    juggler.pids_max      = "<1 to 4194304>"  pids limit of the container's cgroup
    juggler.log_max_bytes = "<bytes, ≥ 1024>"  size at which stdout/stderr rotate
    juggler.log_max_files = "<0 or more>"      rotated files kept per stream
    juggler.interactive   = "true" | "false"   the task's stdin is a pipe fed by attach
    juggler.hold_output   = "<0 to 3600>"      seconds its output waits for an attach
    juggler.cpu_shares    = "<2 to 262144>"    cpu.shares, instead of 1024 × cpus
    juggler.cpu_quota     = "true" | "false"   false: no CFS quota (default true)
    juggler.memory_swap   = "<bytes>" | "-1"   memory + swap (-1: swap unlimited)
    juggler.init          = "true" | "false"   Docker's --init: tini as pid 1
    juggler.no_new_privileges = "true" | "false"  --security-opt no-new-privileges
    juggler.cap_add       = "NET_ADMIN,..."    --cap-add: capabilities, comma-separated
    juggler.cap_drop      = "ALL" | "..."      --cap-drop (common/task_privileges.py)
    juggler.ulimits       = "nofile=1024:2048,..."  --ulimit (common/ulimits.py)

The last three carry Docker's `--cpu-shares` and `--memory-swap`: `docker run
--cpu-shares 256` (no --cpus) is cpu.shares 256 and no CFS quota, where
juggler's cpus resource gives both a weight and a hard cap; a task says
`juggler.cpu_shares=256` and `juggler.cpu_quota=false` for Docker's behaviour.

Any other label starting with `juggler.` is refused (a typo would otherwise be
ignored quietly); labels outside that prefix are the framework's own.
"""

from __future__ import annotations

# -- kill policy --------------------------------------------------------------
# Seconds between SIGTERM and SIGKILL when KillPolicy.grace_period_seconds is
# unset: Mesos's command executor's default (docker stop waits 10 s).
DEFAULT_GRACE_SECONDS = 3.0

# Signal numbers a task may name: 1 to SIGRTMAX (64 on Linux), as Docker's
# ValidSignalForPlatform.
MAX_SIGNAL = 64
# Linux's signal names (without "SIG") and numbers on x86 and arm, the
# architectures juggler runs on (signal(7); moby's signal_linux.go has the
# same map), aliases included. The real-time ones are RTMIN (34, after glibc's
# two) to RTMAX (64), and RTMIN+n / RTMAX-n between.
SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
    "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
    "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31, "RTMIN": 34, "RTMAX": 64,
}

# -- health checks: Mesos's HealthCheck defaults (mesos.proto), for fields left 0
# (except the grace period, below)
HEALTH_DELAY_SECONDS = 15.0
HEALTH_INTERVAL_SECONDS = 10.0
HEALTH_TIMEOUT_SECONDS = 20.0
HEALTH_CONSECUTIVE_FAILURES = 3
# HealthCheck.grace_period_seconds: 0 is the value, not "unset": no grace period.
# Mesos defaults to 10 s and Marathon to 300 s; juggler keeps 0, as before the
# field existed, and the apps service asks for Marathon's 300 s itself.
HEALTH_GRACE_PERIOD_SECONDS = 0.0
HEALTH_HTTP_SCHEMES = ("http", "https")  # Mesos's HTTP check: curl with either
MAX_PORT = 65535  # TCP ports are 1 to 65535

# -- labels ---------------------------------------------------------------------
PIDS_MAX_LABEL = "juggler.pids_max"
# juggler's own default: Docker sets no pids limit, but a task without one can
# exhaust the host's pids with a fork bomb; 4096 is far above what one task runs.
DEFAULT_PIDS_MAX = 4096
# The kernel's PID_MAX_LIMIT on 64-bit (include/linux/threads.h): pids.max
# refuses a larger number.
MAX_PIDS_MAX = 4 * 1024 * 1024

LOG_MAX_BYTES_LABEL = "juggler.log_max_bytes"
# Mesos's LogrotateContainerLogger rotates stdout and stderr at 10 MB by default
# (--max_stdout_size); juggler keeps 2 rotated files of each (its own choice).
DEFAULT_LOG_MAX_BYTES = 10 * 2**20
MIN_LOG_MAX_BYTES = 1024  # juggler's own floor: smaller files would rotate on every line
LOG_MAX_FILES_LABEL = "juggler.log_max_files"
DEFAULT_LOG_MAX_FILES = 2  # 0 keeps no rotated file: a full file is dropped

INTERACTIVE_LABEL = "juggler.interactive"
# juggler's own: the executor leaves the task's pipes unread (the task waits
# in write(2) once a pipe is full) until a client attaches with back-pressure
# or this many seconds pass, so that a client started with the task (`juggler
# run`, `docker run` without -d) misses nothing. Unset or 0: read from the start.
HOLD_OUTPUT_LABEL = "juggler.hold_output"
DEFAULT_HOLD_OUTPUT_SECONDS = 10  # what juggler run and docker run's attach ask for
MAX_HOLD_OUTPUT_SECONDS = 3600
TRUE_WORDS = ("1", "true", "yes", "on")  # a boolean label, any case
FALSE_WORDS = ("0", "false", "no", "off")

# Docker's --cpu-shares: the cgroup's cpu.shares as given, within the kernel's
# MIN_SHARES and MAX_SHARES (2 and 1 << 18; moby's linuxMinCPUShares and
# linuxMaxCPUShares). Unset: 1024 × cpus (container/spec.py).
CPU_SHARES_LABEL = "juggler.cpu_shares"
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144
# false: no CFS quota, the cpus resource a weight only (as `docker run
# --cpu-shares N` without --cpus). Default true: cpus caps the task.
CPU_QUOTA_LABEL = "juggler.cpu_quota"
# Docker's --memory-swap: bytes of memory + swap, at least the memory limit
# (mem), or -1 for unlimited swap; it needs a memory limit. Unset: no swap
# (juggler's own default; Docker's is twice the memory).
MEMORY_SWAP_LABEL = "juggler.memory_swap"
UNLIMITED_SWAP = -1

# Docker's --init: a tiny init (tini) as pid 1 runs the command as its child,
# passes signals on and reaps orphans. Default false, as Docker's.
INIT_LABEL = "juggler.init"
# Docker's --security-opt no-new-privileges: exec never grants privileges
# (setuid bits, file capabilities). Default false, as Docker's.
NO_NEW_PRIVILEGES_LABEL = "juggler.no_new_privileges"
# Docker's --cap-add / --cap-drop on top of Docker's default set; names in
# any case, with or without CAP_, or ALL (common/task_privileges.py).
CAP_ADD_LABEL = "juggler.cap_add"
CAP_DROP_LABEL = "juggler.cap_drop"
# Docker's --ulimit, name=soft[:hard] comma-separated (common/ulimits.py).
# Unset: the agent's own limits, which its tasks inherit.
ULIMITS_LABEL = "juggler.ulimits"

LABEL_PREFIX = "juggler."
LABELS = (CAP_ADD_LABEL, CAP_DROP_LABEL, CPU_QUOTA_LABEL, CPU_SHARES_LABEL, INIT_LABEL,
          HOLD_OUTPUT_LABEL, INTERACTIVE_LABEL, LOG_MAX_BYTES_LABEL, LOG_MAX_FILES_LABEL,
          MEMORY_SWAP_LABEL, NO_NEW_PRIVILEGES_LABEL, PIDS_MAX_LABEL, ULIMITS_LABEL)

# -- syntax ---------------------------------------------------------------------
# A hostname is one DNS label (RFC 1123 §2.1): letters, digits and '-', not at
# either end, 1 to 63 characters (the kernel takes up to 64, HOST_NAME_MAX).
HOSTNAME_MAX = 63
# A user name: the POSIX portable filename characters ([A-Za-z0-9._-]), not
# starting with '-' (POSIX.1-2017, 3.437 User Name), at most 32 characters
# (shadow-utils' useradd and utmp's ut_user). A numeric uid is a uid_t below
# 2**32 - 1, which setuid(2) reads as "no change".
USER_NAME_MAX = 32
MAX_UID = 2**32 - 2
