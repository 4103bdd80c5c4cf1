"""`python -m UncertaintySegLib.cli ...` (how the Slicer panel runs the command line)."""

import sys

from .main import main

sys.exit(main())
