"""Launch latency: `juggler run -- true` end to end on a local cluster.

Starts `juggler up` (one master, one agent) in a temporary directory, runs
`juggler run -q -- true` N times (a new framework each time: subscribe, offer,
accept, executor, container, status updates, teardown) and prints the wall
time of each, then the median. Needs root (the agent builds real containers).

    python benchmarks/launch.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    if os.geteuid() != 0:
        print("launch benchmark: needs root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, JUGGLER_HOME=tmp)
        port = free_port()
        up = subprocess.Popen(
            [sys.executable, "-m", "juggler.cli.main", "up", "--agents", "1", "--port", str(port),
             "--metrics-port", str(free_port()), "--work-dir", f"{tmp}/work"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            assert up.stdout is not None
            line = up.stdout.readline()
            if "master at" not in line:
                print(f"juggler up failed: {line}", file=sys.stderr)
                return 1
            juggler = [sys.executable, "-m", "juggler.cli.main", "run", "-q",
                       "--master", f"127.0.0.1:{port}", "--", "true"]
            subprocess.run(juggler, check=True, env=env)  # warm the page cache
            times = []
            print(f"{'run':>4}  {'seconds':>8}")
            for i in range(runs):
                t0 = time.perf_counter()
                subprocess.run(juggler, check=True, env=env)
                times.append(time.perf_counter() - t0)
                print(f"{i + 1:>4}  {times[-1]:8.3f}")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(30)
    median = statistics.median(times)
    print(f"median {median:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
          f"over {runs} runs of `juggler run -- true` (CLI start-up included)")
    print(json.dumps({"runs": runs, "median_seconds": round(median, 4),
                      "min_seconds": round(min(times), 4), "max_seconds": round(max(times), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
