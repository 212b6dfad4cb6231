"""Build progress as `docker build --progress=plain` (BuildKit) shows it.

    #3 [builder 2/4] RUN make
    #3 0.412 cc -o app app.c
    #3 DONE 1.3s

    #4 [builder 3/4] COPY conf/ conf/
    #4 CACHED

One numbered vertex per filesystem step (FROM, RUN, COPY, ADD, WORKDIR; metadata instructions such as ENV
are not steps), the step's output prefixed with the seconds since it began, `CACHED` for a layer reused
from the build cache, `DONE <seconds>` or `ERROR: <reason>`, and a total at the end.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from images.errors import ImageError

Output = Callable[[str], None]


class Step:
    def __init__(self, number: int, out: Output):
        self.number = number
        self.out = out
        self.began = time.monotonic()
        self.cached = False

    def log(self, line: str) -> None:
        """A line of the step's own output (a RUN's stdout/stderr, a pull's progress)."""
        self.out(f"#{self.number} {time.monotonic() - self.began:.3f} {line}")

    def note(self, line: str) -> None:
        """A sub-task line without a timestamp, e.g. `writing image sha256:... done`."""
        self.out(f"#{self.number} {line}")


class Progress:
    def __init__(self, out: Output):
        self.out = out
        self.began = time.monotonic()
        self.count = 0
        self.finished = 0

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Step]:
        self.count += 1
        step = Step(self.count, self.out)
        self.out(f"#{step.number} {title}")
        try:
            yield step
        except ImageError as e:
            self.out(f"#{step.number} ERROR: {e}")
            raise
        self.finished += 1
        self.out(f"#{step.number} CACHED" if step.cached else
                 f"#{step.number} DONE {time.monotonic() - step.began:.1f}s")
        self.out("")

    def total(self) -> None:
        self.out(f"[+] Building {time.monotonic() - self.began:.1f}s ({self.finished}/{self.count}) FINISHED")
