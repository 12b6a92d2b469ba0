"""Run every benchmark module (`bench/bench_*.py`, each with `run() -> str` returning a Markdown section)
and write the sections, with the machine and the date, to `docs/benchmarks.md`.

`python -m bench NAME...` runs only the named modules (e.g. `bench_roomserver`, or `roomserver`: the
`bench_` prefix may be left out) and keeps the other sections of the file as they were. `bench_replicas`
needs the PostgreSQL server at 127.0.0.1:5432 (`BENCH_REPLICA_ROOMS` sets its fleet, 10,000 by default).
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks.md"
MARK = re.compile(r"^<!-- bench:(\w+) -->$", re.MULTILINE)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{mem}, {system}, Python {platform.python_version()}"


def existing_sections() -> dict[str, str]:
    if not OUT.exists():
        return {}
    text = OUT.read_text()
    marks = list(MARK.finditer(text))
    sections = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections[m.group(1)] = text[m.end() : end].strip("\n")
    return sections


def main(argv: list[str]) -> int:
    names = [name if name.startswith("bench_") else f"bench_{name}" for name in argv] or sorted(
        p.stem for p in (ROOT / "bench").glob("bench_*.py")
    )
    sections = existing_sections()
    stamp = f"_{dt.date.today().isoformat()} on {machine()}_"
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        sections[name] = f"{stamp}\n\n{module.run().strip()}"
    body = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`). Each section says when and where it ran.",
        "",
    ]
    for name in sorted(sections):
        body += [f"<!-- bench:{name} -->", sections[name], ""]
    OUT.write_text("\n".join(body))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
