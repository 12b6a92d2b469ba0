"""RoomSpec loading benchmarks: parse + validate time of generated specs of 100 / 1,000 / 5,000 entities
(and a quarter as many artifacts), as YAML via `load_text` (with libyaml's parser from ruamel.yaml.clibz,
and with the pure-Python fallback), as JSON text via `load_text`, and as an already-parsed JSON body via
`load_data` (what `POST /apply` does with `application/json`).

Each time is the best of a few runs in this process (`BENCH_SPEC_SIZES` overrides the sizes).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from roomoperator.spec import RoomSpec, dump_yaml, load_data, load_text, parsing

SIZES = tuple(int(s) for s in os.environ.get("BENCH_SPEC_SIZES", "100,1000,5000").split(","))


def spec_data(entities: int) -> dict[str, Any]:
    """A valid RoomSpec document with `entities` members and a quarter as many artifacts, as data."""
    members = [
        {
            "id": f"E-member-{i:05d}",
            "kind": "agent" if i % 3 else "human",
            "displayName": f"Member {i}",
            "capabilities": ["read_artifacts", "text.generate"],
            **({"visibility": "owner", "ownerUserId": f"user-{i}"} if i % 5 == 0 else {}),
        }
        for i in range(entities)
    ]
    artifacts = [
        {
            "name": f"doc-{i:05d}.md",
            "type": "document",
            "workspace": "shared",
            "tags": ["bench", f"batch-{i % 10}"],
            **({"dependsOn": [f"doc-{i - 1:05d}.md"]} if i % 4 else {}),
        }
        for i in range(entities // 4)
    ]
    return {
        "apiVersion": "v1",
        "kind": "RoomSpec",
        "metadata": {"name": "bench", "version": 3, "labels": {"team": "bench"}},
        "spec": {
            "roomId": f"bench-{entities}",
            "policies": {"dmVisibilityDefault": "team"},
            "entities": members,
            "artifacts": artifacts,
        },
    }


def best(action: Callable[[], object], *, runs: int) -> float:
    """The fastest of `runs` timed calls, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def pure_python(action: Callable[[], object]) -> Callable[[], object]:
    """`action` run without libyaml's parser, as where ruamel.yaml.clibz is not installed."""

    def run_pure() -> object:
        c_parser, parsing.CParser = parsing.CParser, None
        try:
            return action()
        finally:
            parsing.CParser = c_parser

    return run_pure


def run() -> str:
    rows = []
    for n in SIZES:
        data = spec_data(n)
        yaml_text = dump_yaml(RoomSpec.model_validate(data))
        json_text = json.dumps(data)
        body = json.loads(json_text)
        runs = 5 if n <= 1_000 else 3
        timings = {
            "yaml": best(partial(load_text, yaml_text), runs=runs),
            "pure": best(pure_python(partial(load_text, yaml_text)), runs=min(runs, 3)),
            "json": best(partial(load_text, json_text), runs=runs),
            "data": best(partial(load_data, body), runs=runs),
        }
        rows.append(
            f"| {n:,} | {n // 4:,} | {len(yaml_text) / 1024:,.0f} KiB | {timings['yaml'] * 1000:,.1f} ms "
            f"| {timings['pure'] * 1000:,.1f} ms "
            f"| {len(json_text) / 1024:,.0f} KiB | {timings['json'] * 1000:,.1f} ms "
            f"| {timings['data'] * 1000:,.1f} ms |"
        )
        print(rows[-1], flush=True)
    return "\n".join(
        [
            "## RoomSpec loading",
            "",
            "Parse + validate one generated spec (entities with capabilities, a fifth of them owner-visible;",
            "artifacts with tags and a `dependsOn` chain); best of 3-5 runs. Before the fast paths",
            "(libyaml's parser, stdlib `json` for JSON text), `load_text` took 90 / 509 / 2,284 ms on",
            "the YAML texts and 61 / 372 / 2,186 ms on the JSON ones.",
            "",
            "| entities | artifacts | YAML size | YAML `load_text` | same, pure-Python parser | JSON size "
            "| JSON `load_text` | `load_data` (parsed JSON) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
