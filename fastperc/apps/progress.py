"""A dependency-free progress line for loops (optimisation steps, image pairs), on stderr.

On a terminal it redraws one line; otherwise (a log file, a pipe, a test) it prints a line at every
tenth of the run, so logs stay short.
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, stream=None, width: int = 24, unit: str = "steps"):
        self.label, self.total, self.width, self.unit = label, total, width, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_tenth = -1

    def update(self, step: int, loss: float | None = None) -> None:
        done = step / self.total if self.total else 1.0
        rate = step / max(time.perf_counter() - self.start, 1e-9)
        filled = int(round(done * self.width))
        line = (f"{self.label} {step:>{len(str(self.total))}}/{self.total} "
                f"|{'#' * filled}{'.' * (self.width - filled)}|{'' if loss is None else f' loss {loss:.4e}'}  "
                f"{rate:.2f} {self.unit}/s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if step >= self.total else ""))
        else:
            tenth = int(done * 10)
            if tenth == self.last_tenth and step < self.total:
                return
            self.last_tenth = tenth
            self.stream.write(line + "\n")
        self.stream.flush()
