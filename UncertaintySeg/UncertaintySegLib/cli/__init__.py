"""The command line, `uncertaintyseg <command>`: one file per command and the shared argument groups.
Nothing outside this package imports it; the Slicer panel runs it as a separate process.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
