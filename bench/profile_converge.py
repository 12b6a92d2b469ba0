"""Profile a converge from empty: `python -m bench.profile_converge [ROOMS] [OUT]`.

Starts the room server and the operator as in `bench_operator` (own processes, default settings), each
under `cProfile`, posts ROOMS specs of 20 entities + 5 artifacts to `/apply` (32 at a time), and prints
each process's CPU time per room (user + system, so other work on a shared machine does not count).
The two profiles are written to OUT (a folder, `profile/` by default) as `operator.prof` and
`roomserver.prof`, for `python -m pstats`. `BENCH_ARTIFACTS=N` gives each spec N artifacts instead
(0: the 10,000-room fleet's shape). `BENCH_PROFILE=sample` uses `bench.sampling` instead (OUT
gets `operator.txt` and `roomserver.txt`, of the converge only); `BENCH_PROFILE=0` runs both without a
profiler, for the CPU figures alone (cProfile roughly doubles them). `BENCH_LOGS=FOLDER` keeps each
process's output (the room server's access log) there.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

from bench.bench_operator import ARTIFACTS as DEFAULT_ARTIFACTS
from bench.bench_operator import _converge, _cpu_seconds, _free_port, _wait_until_up

ARTIFACTS = int(os.environ.get("BENCH_ARTIFACTS", DEFAULT_ARTIFACTS))


def _threads(process: psutil.Process) -> dict[int, tuple[str, float]]:
    """Each thread's kind (the event loop's, or another) and CPU seconds so far."""
    return {
        thread.id: (
            "loop" if thread.id == process.pid else "other threads",
            thread.user_time + thread.system_time,
        )
        for thread in process.threads()
    }


def _start(args: list[str], profile: Path | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if profile is None:
        prefix = [sys.executable]
    elif os.environ.get("BENCH_PROFILE") == "sample":
        prefix = [sys.executable, "-m", "bench.sampling", str(profile.with_suffix(".txt"))]
    else:
        prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)]
    logs = os.environ.get("BENCH_LOGS")  # a folder: each process's output there (the access logs)
    sink = (
        (Path(logs) / f"{Path(args[-1] if args[-1] != 'serve' else args[0]).name}.log").open("wb")
        if logs
        else None
    )
    return subprocess.Popen(
        [*prefix, *args], env=env, stdout=sink or subprocess.DEVNULL, stderr=sink or subprocess.DEVNULL
    )


def main(rooms: int, out: Path) -> None:
    profiling = os.environ.get("BENCH_PROFILE", "1") != "0"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "seeds").mkdir()
        (tmp / "operator").mkdir()
        for n in range(ARTIFACTS):
            (tmp / "seeds" / f"doc-{n}.md").write_text(f"# Document {n}\n" + "lorem ipsum\n" * 200)
        server_port, operator_port = _free_port(), _free_port()
        server_url, operator_url = f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{operator_port}"
        server = _start(
            ["-m", "roomserver", "serve", "--port", str(server_port), "--data", str(tmp / "rs"),
             "--insecure-no-auth"],
            out / "roomserver.prof" if profiling else None, dict(os.environ),
        )  # fmt: skip
        env = {
            **os.environ,
            "ROOMOP_ROOM_SERVER__BASE_URL": server_url,
            "ROOMOP_API__PORT": str(operator_port),
            "ROOMOP_STORE__URL": f"sqlite:///{tmp / 'operator' / 'operator.db'}",
            "ROOMOP_SEEDS__ROOTS": json.dumps([str(tmp / "seeds")]),
            "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
            "ROOMOP_LOGGING__LEVEL": "warning",
        }
        operator = _start(
            [str(Path(sys.executable).parent / "roomop"), "serve"],
            out / "operator.prof" if profiling else None,
            env,
        )
        try:
            _wait_until_up(server_url, server)
            _wait_until_up(operator_url, operator)
            watched = [psutil.Process(operator.pid), psutil.Process(server.pid)]
            if os.environ.get("BENCH_PROFILE") == "sample":
                for watching in watched:
                    watching.send_signal(signal.SIGUSR1)  # `bench.sampling`: count from here
            before = [_cpu_seconds(p) for p in watched]
            threads_before = [_threads(p) for p in watched]

            async def converge() -> tuple[float, int]:
                limits = httpx.Limits(max_connections=64)
                async with httpx.AsyncClient(base_url=operator_url, timeout=300, limits=limits) as http:
                    return await _converge(http, rooms, artifacts=ARTIFACTS)

            seconds, failures = asyncio.run(converge())
            cpu = [_cpu_seconds(p) - b for p, b in zip(watched, before, strict=True)]
            threads = [_threads(p) for p in watched]
        finally:
            for process in (operator, server):
                process.send_signal(signal.SIGINT)  # uvicorn re-raises it: cProfile still writes
                process.wait(timeout=120)
    print(
        f"{rooms} rooms ({failures} failed) in {seconds:.1f} s; CPU per room: operator"
        f" {cpu[0] / rooms * 1000:.1f} ms, room server {cpu[1] / rooms * 1000:.1f} ms"
        f" (profiler {'on' if profiling else 'off'}, load {os.getloadavg()[0]:.1f})"
    )
    for name, now, then in zip(("operator", "room server"), threads, threads_before, strict=True):
        spent: dict[str, float] = {}
        for tid, (thread, seconds) in now.items():
            spent[thread] = spent.get(thread, 0.0) + seconds - then.get(tid, (thread, 0.0))[1]
        shares = ", ".join(
            f"{t} {s / rooms * 1000:.1f}" for t, s in sorted(spent.items(), key=lambda i: -i[1])
        )
        print(f"  {name} threads, ms/room: {shares}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 100,
        Path(sys.argv[2]) if len(sys.argv) > 2 else Path("profile"),
    )
