"""Run inside Slicer (CI): the module's ScriptedLoadableModuleTest; exit code 0 only if it passes."""
import traceback

import slicer

try:
    import UncertaintySeg

    UncertaintySeg.UncertaintySegTest().runTest()
    exitCode = 0
except Exception:
    traceback.print_exc()
    exitCode = 1
slicer.util.exit(exitCode)
