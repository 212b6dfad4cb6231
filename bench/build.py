"""Image build benchmark: what a RUN step costs with its sandbox network (netns, veth, NAT table) against
`--network=none`, with a cache mount, and a rebuild where every step is cached.

Needs root and runc. Builds on the bundled busybox image in a temp store, removed at the end. Prints one
JSON document; figures only.

    .venv/bin/python -m bench.build [--runs 20]
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import parse_flags, report
from images.build import build
from images.busybox import ensure_busybox
from images.store import ImageStore


def main() -> int:
    flags = parse_flags(__doc__, runs=20)
    tmp = Path(tempfile.mkdtemp(prefix="pkbench-build-"))
    try:
        store = ImageStore(tmp / "images")
        base = ensure_busybox(store)
        ctx = tmp / "ctx"
        ctx.mkdir()

        def run_step(run: str) -> list[float]:
            """Seconds of one RUN step (no cache), per sample."""
            (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN {run}\n")
            samples = []
            for _ in range(int(flags.runs)):
                began = time.perf_counter()
                build(store, ctx, no_cache=True, progress=lambda _line: None)
                samples.append(time.perf_counter() - began)
            return samples

        def ms(samples: list[float]) -> dict[str, float]:
            return {"p50_ms": round(1000 * statistics.median(samples), 1), "max_ms": round(1000 * max(samples), 1)}

        none = run_step("--network=none true")
        sandbox = run_step("true")
        cache = run_step("--mount=type=cache,target=/root/.cache true")
        (ctx / "Dockerfile").write_text(f"FROM {base}\nWORKDIR /app\nRUN echo a > a\nRUN echo b > b\n"
                                        "RUN --mount=type=cache,target=/c echo c > c\nENV X=1\nCMD [\"sh\"]\n")
        build(store, ctx, progress=lambda _line: None)
        cached = []
        for _ in range(int(flags.runs)):
            began = time.perf_counter()
            build(store, ctx, progress=lambda _line: None)
            cached.append(time.perf_counter() - began)
        return report({
            "benchmark": "build",
            "runs": int(flags.runs),
            "build_one_run_network_none": ms(none),
            "build_one_run_sandbox_network": ms(sandbox),
            "sandbox_network_cost_ms": round(1000 * (statistics.median(sandbox) - statistics.median(none)), 1),
            "build_one_run_with_cache_mount": ms(cache),
            "rebuild_all_cached_4_steps": ms(cached),
            "note": "each build: FROM the bundled busybox, the RUN in runc over an overlay, a layer written, the "
                    "image committed",
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # every build step unmounts what it mounted


if __name__ == "__main__":
    raise SystemExit(main())
