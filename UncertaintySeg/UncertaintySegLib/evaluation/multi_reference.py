"""`evaluate` with several annotators: one `--ref` per annotator, agreement and D²_GED files.

`--ref` is repeated, one file or folder per annotator (`--ref rater1 --ref rater2`), each matched
to cases by file name as a single `--ref` is. The first `--ref` is the reference of every
calibration, segmentation and error-confidence metric, so those are what one `--ref` gives.
With two or more, every evaluated case must be in every `--ref` (else a clear error: drop the
case from --pred, or the extra --ref), and `evaluate` also writes `annotator_agreement.csv/.json`
(per method, case, scope and group: voxels, model confidence; in the --roi) and, for prediction
folders holding `samples/` (`predict --save-samples`), `ged.csv` (D²_GED per case and scope, the
samples' argmax label maps against the annotators'). metrics.json gets a pooled summary.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .annotator_agreement import AgreementRow, EnergyDistance, annotator_agreement, generalized_energy_distance
from ..common.csv_tables import write_csv
from ..common.errors import InputError
from ..predict.io import Volume, read_volume
from ..common.json_output import write_json

SAMPLES_FOLDER = "samples"


def annotator_paths(case: str, references: list[dict[str, Path]], ref_args: list[Path]) -> list[Path]:
    """Every annotator's reference file of `case`; a --ref that is one file serves the only case there is."""
    paths = []
    for found, arg in zip(references, ref_args):
        path = found.get(case) or (next(iter(found.values())) if len(found) == 1 and len(references[0]) == 1 else None)
        if path is None:
            raise InputError(f"case '{case}' has no reference in --ref '{arg}' but has one in --ref '{ref_args[0]}': "
                             "with several --ref (one per annotator) every evaluated case needs a label from each; "
                             "add it, or leave the case out of --pred.")
        paths.append(path)
    return paths


def check_same_grid(first: Volume, first_path: Path, other: Volume, other_path: Path) -> None:
    if other.spatial_shape != first.spatial_shape or not other.geometry.matches(first.geometry, 1e-3):
        raise InputError(f"references '{first_path}' ({first.spatial_shape} voxels, spacing {first.geometry.spacing}) "
                         f"and '{other_path}' ({other.spatial_shape} voxels, spacing {other.geometry.spacing}) of one "
                         "case lie on different grids: expected every annotator's label map on one grid.")


def sample_label_maps(folder: Path, shape: tuple) -> list[np.ndarray]:
    """Argmax label maps `(I, J, K)` of the sample probabilities `(C, I, J, K)` under `folder/samples` ([] if none)."""
    paths = sorted((folder / SAMPLES_FOLDER).glob("sample_*.nrrd")) if (folder / SAMPLES_FOLDER).is_dir() else []
    maps = []
    for path in paths:
        array = read_volume(path).array
        if array.ndim != 4 or tuple(array.shape[1:]) != tuple(shape):
            raise InputError(f"sample '{path}' has shape {array.shape}: expected (C, {', '.join(map(str, shape))}).")
        maps.append(array.argmax(axis=0).astype(np.uint8))
    return maps


def case_multi_reference(case: str, raters: list[np.ndarray], probabilities: np.ndarray, folder: Path,
                         class_names: list[str], region: np.ndarray | None) -> tuple[list, list]:
    """Agreement rows and (if the folder has samples) the D²_GED of one case of one method."""
    agreement = [(case, row) for row in annotator_agreement(raters, probabilities, class_names, region)]
    samples = sample_label_maps(folder, probabilities.shape[1:])
    ged = [(case, generalized_energy_distance(samples, raters, len(class_names)))] if samples else []
    return agreement, ged


def _value(x):
    return "" if x is None else (f"{x:.6g}" if isinstance(x, float) else x)


def write_multi_reference(folder: Path, agreement: dict[str, list[tuple[str, AgreementRow]]],
                          ged: dict[str, list[tuple[str, EnergyDistance]]], class_names: list[str], raters: int) -> dict:
    """Write annotator_agreement.csv/.json and ged.csv (if any method had samples); returns metrics.json's summary."""
    fields = ["method", "case", "scope", "group", "voxels", "fraction", "mean_max_probability", "mean_majority_probability"]
    records = [{"method": method, "case": case, **row.__dict__} for method, rows in agreement.items() for case, row in rows]
    write_csv(folder / "annotator_agreement.csv", ({k: _value(r[k]) for k in fields} for r in records), fields)
    write_json(folder / "annotator_agreement.json", records)
    summary = {"annotators": raters, "first_reference_for_calibration": True, "agreement": {}, "ged": {}}
    for method, rows in agreement.items():
        pooled = {}
        for _, row in rows:
            entry = pooled.setdefault(f"{row.scope}/{row.group}", [0, 0.0, 0.0])
            if row.voxels:
                entry[0] += row.voxels
                entry[1] += row.mean_max_probability * row.voxels
                entry[2] += row.mean_majority_probability * row.voxels
        summary["agreement"][method] = {key: {"voxels": n, "mean_max_probability": s / n if n else None,
                                              "mean_majority_probability": m / n if n else None}
                                        for key, (n, s, m) in pooled.items()}
    scopes = ["foreground"] + list(class_names[1:])
    ged_fields = ["method", "case", "scope", "d2_ged", "mean_d_sample_reference", "mean_d_sample_sample",
                  "mean_d_reference_reference", "samples", "references"]
    if any(ged.values()):
        write_csv(folder / "ged.csv", ([method, case, scope] + [f"{v[index]:.6g}" for v in (
            result.d2, result.sample_reference, result.sample_sample, result.reference_reference)]
                                        + [result.samples, result.references]
                                        for method, rows in ged.items() for case, result in rows
                                        for index, scope in enumerate(scopes)), ged_fields)
        summary["ged"] = {method: {scope: {"mean_d2_ged": float(np.mean([r.d2[i] for _, r in rows])), "cases": len(rows)}
                                   for i, scope in enumerate(scopes)}
                          for method, rows in ged.items() if rows}
    return summary


def annotator_html(summary: dict) -> list[str]:
    """report.html's section: pooled model confidence per label-agreement group, and mean D²_GED, per method."""
    lines = [f"<h2>Annotator agreement ({summary['annotators']} annotators)</h2>",
             "<p>Model confidence (mean max-probability / mean probability of the annotators' majority label) where "
             "the annotators all agree and where they disagree, all cases pooled; calibration above uses the first "
             "--ref. Per case and class: annotator_agreement.csv; D²_GED per case: ged.csv.</p>",
             "<table><tr><th>method</th><th>group</th><th>voxels</th><th>max-probability</th><th>majority label</th></tr>"]
    for method, groups in summary["agreement"].items():
        for key, entry in groups.items():
            if key.startswith("label/"):
                values = [_value(entry["mean_max_probability"]), _value(entry["mean_majority_probability"])]
                lines.append(f"<tr><th>{html.escape(method)}</th><td>{html.escape(key[6:])}</td><td>{entry['voxels']}</td>"
                             + "".join(f"<td>{v if v != '' else '&ndash;'}</td>" for v in values) + "</tr>")
    lines.append("</table>")
    for method, scopes in summary["ged"].items():
        lines.append(f"<p>{html.escape(method)}: mean D&sup2;<sub>GED</sub> (d = 1 &minus; IoU) "
                     + ", ".join(f"{html.escape(scope)} {entry['mean_d2_ged']:.4g}" for scope, entry in scopes.items())
                     + f" over {next(iter(scopes.values()))['cases']} case(s) with samples.</p>")
    return lines
