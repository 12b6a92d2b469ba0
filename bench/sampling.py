"""A small sampling profiler: `python -m bench.sampling OUT (-m MODULE | SCRIPT) ARGS...`.

Runs the module or script with a thread that looks at the main thread's stack every millisecond and, at
exit, writes to OUT (counting from the last SIGUSR1, if any) the functions seen most: `self` (on top of the
stack) and `total` (anywhere on it), as shares of the samples taken while the thread was not waiting in
`select`, and the innermost module of the project on each stack. Unlike `cProfile` it adds little CPU and
is not misled by greenlets (SQLAlchemy's asyncio) or coroutines suspended mid-call; it is biased towards
calls that release the GIL (system calls), so read their share as an upper bound.
"""

from __future__ import annotations

import runpy
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

_IDLE = ("selectors.py", "select")
_OWN = ("roomoperator/", "roomserver/", "src/roomcontract")


def _key(frame: FrameType) -> tuple[str, str]:
    code = frame.f_code
    parts = Path(code.co_filename).parts
    short = (
        "/".join(parts[-3:])
        if "site-packages" not in parts
        else "/".join(parts[parts.index("site-packages") + 1 :])
    )
    return short, f"{code.co_name}:{code.co_firstlineno}"


class Sampler:
    def __init__(self, thread_id: int) -> None:
        self.thread_id = thread_id
        self.own: Counter[tuple[str, str]] = Counter()
        self.total: Counter[tuple[str, str]] = Counter()
        self.inner: Counter[str] = Counter()  # the innermost frame of the project's own code, by module
        self.samples = self.idle = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.001):
            frame = sys._current_frames().get(self.thread_id)
            if frame is None:
                continue
            top = _key(frame)
            if top[0].endswith(_IDLE[0]) and top[1].startswith(_IDLE[1]):
                self.idle += 1
                continue
            self.samples += 1
            self.own[top] += 1
            seen, inner = set(), None
            while frame is not None:
                key = _key(frame)
                seen.add(key)
                if inner is None and key[0].startswith(_OWN):
                    inner = key[0]
                frame = frame.f_back
            self.inner[inner or "(no project frame)"] += 1
            self.total.update(seen)

    def reset(self, *_: object) -> None:
        """Forget what was sampled so far (SIGUSR1: the start-up is done)."""
        self.own.clear()
        self.total.clear()
        self.inner.clear()
        self.samples = self.idle = 0

    def write(self, out: Path) -> None:
        lines = [f"{self.samples} busy samples, {self.idle} idle", "", "self %  total %  function"]
        for key, count in self.total.most_common(150):
            own, total = self.own[key] / self.samples * 100, count / self.samples * 100
            lines.append(f"{own:6.1f} {total:7.1f}  {key[0]} {key[1]}")
        lines += ["", "by the innermost module of the project on the stack:"]
        for module, count in self.inner.most_common(40):
            lines.append(f"{count / self.samples * 100:6.1f}  {module}")
        lines += ["", "by self time:"]
        for key, count in self.own.most_common(60):
            lines.append(f"{count / self.samples * 100:6.1f}  {key[0]} {key[1]}")
        out.write_text("\n".join(lines) + "\n")


def main() -> None:
    out, rest = Path(sys.argv[1]), sys.argv[2:]
    sampler = Sampler(threading.main_thread().ident or 0)
    threading.Thread(target=sampler.run, daemon=True).start()
    signal.signal(signal.SIGUSR1, sampler.reset)
    sys.setswitchinterval(0.001)
    started = time.process_time()
    try:
        if rest[0] == "-m":
            sys.argv = [rest[1], *rest[2:]]
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = rest
            runpy.run_path(rest[0], run_name="__main__")
    finally:
        sampler.stopped.set()
        sampler.write(out)
        print(f"sampled: {time.process_time() - started:.1f} s CPU", file=sys.stderr)


if __name__ == "__main__":
    main()
