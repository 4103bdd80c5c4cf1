"""Progress reporting: JSON lines for the Slicer panel, a line of text for people, or nothing.

JSON mode prints one object per line on stdout: {"stage": "...", "fraction": 0.4}.
"""

from __future__ import annotations

import sys

from .json_output import json_text


class Progress:
    def __init__(self, mode: str = "text", stream=None):
        if mode not in ("json", "text", "none"):
            raise ValueError(f"progress mode must be json, text or none, found '{mode}'")
        self.mode = mode
        self.stream = stream or (sys.stdout if mode == "json" else sys.stderr)

    def __call__(self, stage: str, fraction: float, **details) -> None:
        if self.mode == "json":
            line = json_text({"stage": stage, "fraction": round(float(fraction), 4), **details}, indent=None)
            print(line, file=self.stream, flush=True)
        elif self.mode == "text":
            extra = "".join(f"  {k}={v}" for k, v in details.items())
            print(f"[{fraction:4.0%}] {stage}{extra}", file=self.stream, flush=True)
