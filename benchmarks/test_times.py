"""Per-file test counts and times from pytest logs written with `--durations=0` (setup, call and
teardown summed; durations under 5 ms are not printed and count as 0). docs/testing.md's table of
every file comes from it:  python benchmarks/test_times.py default.log slow.log"""

from __future__ import annotations

import re
import sys
from collections import defaultdict

LINE = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S+?)::(\S+)")


def per_file(log: str) -> dict[str, tuple[int, float]]:
    """file -> (tests with a call line, seconds)."""
    seconds, tests = defaultdict(float), defaultdict(set)
    for line in open(log, encoding="utf-8"):
        m = LINE.match(line)
        if m:
            seconds[m[3]] += float(m[1])
            if m[2] == "call":
                tests[m[3]].add(m[4])
    return {f: (len(tests[f]), seconds[f]) for f in seconds}


def main(logs: list[str]) -> None:
    tables = [per_file(log) for log in logs]
    files = sorted(set().union(*tables))
    print("| file | " + " | ".join(logs) + " |")
    for f in files:
        cells = [f"{t[f][0]} · {t[f][1]:.0f} s" if f in t else "–" for t in tables]
        print(f"| `{f}` | " + " | ".join(cells) + " |")
    for log, t in zip(logs, tables):
        print(f"{log}: {sum(n for n, _ in t.values())} tests, {sum(s for _, s in t.values()):.0f} s of test time")


if __name__ == "__main__":
    main(sys.argv[1:])
