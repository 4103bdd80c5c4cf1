"""Cost of one parameter change after many visits to the module, with Slicer's own parameterNodeWrapper per release.

Each visit (enter) the Logic returns a new wrapper of the same MRML parameter node. Measured in one run, each in a
fresh scene, after `--visits` visits, with Slicer's code at v5.8.1, v5.10.0 and v5.12.3 (../shared/slicer-python;
qt/ctk are the test stand-ins of Testing/qt_stand_ins.py, so widget writes cost nothing here and what is measured
is the wrapper's own work):

- the peer, Slicer's scripted-module template: exit() unbinds (disconnectGui), enter() binds the new wrapper;
- ours, `PanelBinding`: the same MRML node keeps its one binding.

Printed: wrappers still alive (leaked) and the mean time of one parameter write, and the ratio template / ours.
Grows linearly with visits on 5.8 and 5.10 for the template (one leaked observer per visit); flat for ours.

    python benchmarks/bench_panel_binding.py --visits 200
"""

import argparse
import gc
import sys
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY / "Testing"), str(REPOSITORY / "UncertaintySeg")]


def visitAndMeasure(tag, visits, template, writes=20):
    import slicer
    from slicer_release import slicerRelease
    from test_slicer_releases import standInPanel

    with slicerRelease(tag, slicer.vtkMRMLScene()) as (slicerPackage, qt, ctk, module):
        _, ui = standInPanel(SimpleNamespace(qt=qt, ctk=ctk, slicer=slicerPackage))
        logic, binding, visited = module.UncertaintySegLogic(), module.PanelBinding(), []
        binding.bind(logic.getParameterNode(), ui)
        for _ in range(visits):
            wrapper = logic.getParameterNode()
            if template:
                binding.bind(None, ui)  # exit()
            binding.bind(wrapper, ui)  # enter()
            visited.append(weakref.ref(wrapper))
            del wrapper
        gc.collect()
        bound = binding.parameterNode
        alive = sum(1 for ref in visited if ref() is not None and ref() is not bound)
        started = time.perf_counter()
        for index in range(writes):
            bound.samples = 1 + index % 100
        seconds = (time.perf_counter() - started) / writes
        binding.bind(None, ui)
        return alive, seconds


def main():
    from slicer_release import RELEASES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=200)
    visits = parser.parse_args().visits
    print(f"{'release':9} {'template: leaked, write':>26} {'PanelBinding: leaked, write':>30} {'ratio':>7}")
    for tag in RELEASES:
        (leakedTemplate, template), (leakedOurs, ours) = (visitAndMeasure(tag, visits, template=flag) for flag in (True, False))
        print(f"{tag:9} {leakedTemplate:>10d}, {1000 * template:9.2f} ms {leakedOurs:>14d}, {1000 * ours:9.2f} ms {template / ours:7.1f}x")


if __name__ == "__main__":
    main()
