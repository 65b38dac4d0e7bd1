"""How the command line shows models and predictions, the same for the local registry and the server.

Light on purpose (standard library only): ``emgpose models list --url ...`` and ``emgpose --help`` must
answer at once, without loading XGBoost, SciPy or pyarrow (the "quick CLI" of issue 16).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

# Column names of the predictions CSV, with their units (issue 16: ``window_end``/``t_end`` had none).
WINDOW_END_COLUMN = "window_end_sample"
TIME_COLUMN = "t_end_s"
# Files written before the rename carry the old names; readers accept both (see :func:`time_column`).
OLD_COLUMNS = {"window_end": WINDOW_END_COLUMN, "t_end": TIME_COLUMN}


def time_column(header: Sequence[str]) -> str:
    """The window-end time column of a predictions CSV header, old (``t_end``) or new (``t_end_s``)."""
    for name in (TIME_COLUMN, "t_end"):
        if name in header:
            return name
    raise KeyError(f"no {TIME_COLUMN} column in {list(header)}")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart, the header first (``-`` for missing values)."""
    cells = [[str(h) for h in header], *[["-" if v is None or v == "" else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def headline(meta: dict[str, Any]) -> str:
    """One line of a version's test metrics (``mae_deg 12.1, rmse_deg 16.0``), or its calibration origin."""
    if "calibration" in meta:
        cal = meta["calibration"]
        return f"calibrated from {cal['base']['version']} on {cal['seconds']:g} s"
    model = (meta.get("metrics") or {}).get("xgboost") or {}
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in model.items() if v is not None)


MODEL_HEADER = ("model", "version", "latest", "task", "created", "test metrics")


def model_row(name: str, version: str, latest: bool, meta: dict[str, Any]) -> tuple[str, ...]:
    return (
        name,
        version,
        "latest" if latest else "",
        meta.get("task") or "",
        meta.get("created") or "",
        headline(meta),
    )


def model_summary(meta: dict[str, Any], latest: str | None = None) -> str:
    """What ``models show`` prints: identity, data, preprocessing, metrics and verdict, files; not the whole
    ``bundle.json`` (589 lines for a hand model; ``--json`` prints that)."""
    window = meta.get("window") or {}
    targets = meta.get("joint_names") or meta.get("class_names") or []
    kind = "joints" if meta.get("joint_names") else "classes"
    lines = [
        f"{meta['name']} {meta['version']}{'  (latest)' if latest == meta['version'] else ''}",
        f"  task:       {meta.get('task')}, {len(targets)} {kind}: {_few(targets)}",
        f"  created:    {meta.get('created', '-')}",
        f"  input:      {meta.get('num_channels')} channels at {meta.get('sample_rate', 0):g} Hz, windows of "
        f"{window.get('length_samples')} samples every {window.get('stride_samples')}",
        f"  features:   {len(meta.get('feature_names') or [])}",
    ]
    if "calibration" in meta:
        lines.append(f"  origin:     {headline(meta)}")
    lineage = meta.get("lineage") or {}
    if lineage.get("dataset_uri"):
        lines.append(f"  trained on: {lineage['dataset_uri']}")
    metrics = meta.get("metrics") or {}
    split = metrics.get("split", "test")
    for model, figures in metrics.items():
        if isinstance(figures, dict) and model not in ("verdict", "per_joint", "per_group", "per_class"):
            shown = ", ".join(f"{k} {v:.3g}" for k, v in figures.items() if isinstance(v, int | float))
            if shown:
                lines.append(f"  {split + ' ' + model + ':':<30} {shown}")
    for group, v in (metrics.get("verdict") or {}).items():
        if v.get("beats_baselines") is not None:
            word = "beats" if v["beats_baselines"] else "DOES NOT beat"
            lines.append(f"  verdict {group}: {v['metric']} {word} the best baseline ({v['best_baseline']})")
    files = meta.get("files")
    if isinstance(files, dict) and files:
        lines.append(f"  files:      {', '.join(sorted(files))}")
    lines.append("  (--json prints the whole bundle.json)")
    return "\n".join(lines)


def _few(names: Sequence[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def predictions_csv(answer: dict[str, Any]) -> str:
    """A ``/v1/predict`` answer (or the stream's messages joined) as the CSV ``emgpose predict`` writes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    extra = ["out_of_range"] if answer.get("out_of_range") is not None else []
    ends, times = answer["window_end_sample"], answer["window_end_s"]
    if answer.get("task", "regression") == "regression":
        names = answer["joints"]
        writer.writerow([WINDOW_END_COLUMN, TIME_COLUMN, *(f"{n}_{u}" for n in names for u in ("rad", "deg"))] + extra)
        rows = [
            [text for r, d in zip(rad, deg, strict=True) for text in (f"{r:.6g}", f"{d:.6g}")]
            for rad, deg in zip(answer["radians"], answer["degrees"], strict=True)
        ]
    else:
        names = answer["classes"]
        writer.writerow([WINDOW_END_COLUMN, TIME_COLUMN, *(f"p_{n}" for n in names), "class"] + extra)
        pairs = zip(answer["probabilities"], answer["predicted"], strict=True)
        rows = [[*(f"{p:.6g}" for p in probs), cls] for probs, cls in pairs]
    for i, row in enumerate(rows):
        tail = [f"{answer['out_of_range'][i]:.4g}"] if extra else []
        writer.writerow([int(ends[i]), f"{times[i]:.6f}", *row, *tail])
    return out.getvalue()
