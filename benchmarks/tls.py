"""What security costs: master throughput and container start with mutual TLS and access
rules on, side by side with them off, in the same run.

    python benchmarks/tls.py [--quick] [--rounds 5] [--agents 1000] [--tasks 20000]
                             [--launches 50]

(--quick: 100 agents, 2,000 tasks, one round; the defaults are master_throughput's own.)

- Master throughput: benchmarks/master_throughput.py alternately without and with
  `--secure` (every gRPC link — framework, simulated agents — over mutual TLS, the master
  under a rules file that lets each principal do only what it does, so every Subscribe,
  Accept and agent registration is checked), `--rounds` times each; the median launches/s
  of each mode are compared. Target (issue 18): secure ≥ 90 % of plain.
- Container start: benchmarks/container_start.py --secure, whose launches alternate
  between a plain agent and one serving TLS under rules; the p50s are compared. Target:
  ≤ 2 ms added.

The last line is one JSON object:
`{"launches_per_second_ratio": x, "container_start_added_ms": x}`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def last_json(args: list[str]) -> dict[str, Any]:
    """Run a benchmark; its last line's JSON. Exits when it fails, with its output."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"tls: {' '.join(args)} failed (exit {proc.returncode})")
    return json.loads(lines[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 agents, 2,000 tasks, one round")
    p.add_argument("--rounds", type=int, default=None, help="throughput runs of each mode "
                   "(default 5; --quick: 1)")
    p.add_argument("--agents", type=int, default=None, help="default 1,000 (--quick: 100)")
    p.add_argument("--tasks", type=int, default=None, help="default 20,000 (--quick: 2,000)")
    p.add_argument("--launches", type=int, default=50,
                   help="container starts of each side (at least 50)")
    args = p.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.agents = args.agents or (100 if args.quick else 1000)
    args.tasks = args.tasks or (2000 if args.quick else 20000)

    rates: dict[str, list[float]] = {"plain": [], "secure": []}
    p99: dict[str, list[float]] = {"plain": [], "secure": []}
    for i in range(args.rounds):
        for mode in ("plain", "secure"):
            print(f"master throughput, round {i + 1}/{args.rounds}, {mode} …",
                  file=sys.stderr, flush=True)
            r = last_json([str(HERE / "master_throughput.py"), "--agents", str(args.agents),
                           "--tasks", str(args.tasks),
                           *(["--secure"] if mode == "secure" else [])])
            rates[mode].append(r["launches_per_second"])
            p99[mode].append(r["accept_to_running_ms"]["p99"])
    print("container start, plain and secure agents alternating …", file=sys.stderr, flush=True)
    cs = last_json([str(HERE / "container_start.py"), "--launches", str(args.launches),
                    "--secure"])

    plain, secure = statistics.median(rates["plain"]), statistics.median(rates["secure"])
    ratio = secure / plain
    start_plain, start_secure = cs["juggler_ms"]["p50"], cs["juggler_secure_ms"]["p50"]
    added = start_secure - start_plain
    rows = [
        ("launches / s (median)", f"{plain:,.0f}", f"{secure:,.0f}",
         f"ratio {ratio:.2f} (target ≥ 0.90); runs: {rates['plain']} vs {rates['secure']}"),
        ("Accept→RUNNING p99 ms (median)", f"{statistics.median(p99['plain']):.1f}",
         f"{statistics.median(p99['secure']):.1f}", ""),
        ("container start p50 ms", f"{start_plain:.2f}", f"{start_secure:.2f}",
         f"added {added:+.2f} ms (target ≤ 2 ms)"),
        ("container start p99 ms", f"{cs['juggler_ms']['p99']:.2f}",
         f"{cs['juggler_secure_ms']['p99']:.2f}", ""),
    ]
    print(f"security overhead: {args.agents} simulated agents, {args.tasks} tasks, "
          f"{args.rounds} rounds; {cs['launches']} container starts per side")
    print(f"  {'':32}{'plain':>10}{'TLS+rules':>12}")
    for name, a, b, note in rows:
        print(f"  {name:32}{a:>10}{b:>12}  {note}".rstrip())
    print(json.dumps({"launches_per_second_ratio": round(ratio, 3),
                      "container_start_added_ms": round(added, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
