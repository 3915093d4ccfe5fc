"""The Python interpreter a test's task without an image runs: the host's own
(/usr/bin/python3, the standard library only).

Not sys.executable: a task on the host's filesystem sees it read-only with a
private /tmp (container/host_view.py), so an interpreter in a checkout's venv
under /tmp (a clean clone in /tmp, as CI makes) is not there for the task.
"""

from __future__ import annotations

import shutil

PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
