"""The sweep's results in <job-dir>/tuning: trials.csv (one row per trial) and report.html (the optimisation
history, the parameters' importance and a parallel-coordinates plot, drawn with Optuna's matplotlib plots)."""

import base64
import contextlib
import csv
import html
import io
import os
import uuid
import warnings

from absl import logging

from tuning.spec import TuningSpec


def rows(trials: list, spec: TuningSpec, metric: str, job_dir: str) -> list[dict]:
    table = []
    for trial in sorted(trials, key=lambda t: t.number):
        values = trial.user_attrs.get("flag_values", {})
        best_step = trial.user_attrs.get("best_step")
        reported = trial.intermediate_values
        row = {"trial": trial.number + 1, "state": trial.state.name}
        row.update({p.name: values.get(p.name, "") for p in spec.params})
        row.update({
            metric: trial.value if trial.value is not None else
            (reported.get(best_step, "") if best_step is not None else ""),
            "step": best_step if best_step is not None else "",
            "evaluations": len(reported),
            "duration_s": trial.user_attrs.get("duration_s", ""),
            "seed": trial.user_attrs.get("seed", ""),
            "model_dir": f"{job_dir}/model/trial_{trial.number + 1}" if reported else "",
        })
        table.append(row)
    return table


def write(trials: list, spec: TuningSpec, metric: str, job_dir: str, directory: str, study_name: str) -> None:
    table = rows(trials, spec, metric, job_dir)
    columns = ["trial", "state", *(p.name for p in spec.params), metric, "step", "evaluations", "duration_s", "seed",
               "model_dir"]
    _atomic_write(os.path.join(directory, "trials.csv"), lambda handle: _csv(handle, columns, table))
    figures = _figures(trials, spec, metric)
    _atomic_write(os.path.join(directory, "report.html"),
                  lambda handle: handle.write(_html(table, columns, figures, spec, metric, study_name)))


def _csv(handle, columns, table) -> None:
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)


def _atomic_write(path: str, fill) -> None:
    """Readers see the old file or the new one. Tuners sharing a study (and a job dir) write the same files:
    each writes its own partial copy, so one's rename never takes the other's file away."""
    directory, name = os.path.split(path)
    partial = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.partial")
    try:
        with open(partial, "w", newline="") as handle:
            fill(handle)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


def _figures(trials: list, spec: TuningSpec, metric: str) -> list[tuple[str, str]]:
    """[(title, base64 PNG)]; a plot that Optuna cannot draw yet (too few complete trials) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        return []
    study = optuna.create_study(direction="maximize" if spec.maximize else "minimize")
    study.add_trials(complete)
    drawings = [("Optimisation history", lambda: plots.plot_optimization_history(study, target_name=metric)),
                ("Parallel coordinates", lambda: plots.plot_parallel_coordinate(study, target_name=metric))]
    if len(complete) >= 2 and len(spec.params) >= 2:
        drawings.append(("Parameter importance (fANOVA)", lambda: plots.plot_param_importances(study)))
    figures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for title, draw in drawings:
            try:
                axes = draw()
                figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
                figure.set_size_inches(8, 4.5)
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
                plt.close(figure)
                figures.append((title, base64.b64encode(buffer.getvalue()).decode()))
            except Exception as error:  # a plot needs more trials or more variety than there is yet
                logging.info("tuning report: no %s yet (%s)", title.lower(), error)
                plt.close("all")
    return figures


def _html(table, columns, figures, spec: TuningSpec, metric: str, study_name: str) -> str:
    def cell(value):
        return html.escape(f"{value:.4g}" if isinstance(value, float) else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(row[c])}</td>" for c in columns) + "</tr>" for row in table)
    images = "".join(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
                     for title, png in figures)
    space = "".join(f"<li>{html.escape(p.name)}: {html.escape(_describe_param(p))}</li>" for p in spec.params)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Tuning: {html.escape(study_name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            f"<h1>Tuning study {html.escape(study_name)}</h1><p>{len(table)} trial(s); "
            f"{'maximise' if spec.maximize else 'minimise'} {html.escape(metric)}; "
            f"{spec.algorithm.upper()} sampler; early stopping {'on' if spec.early_stopping else 'off'}.</p>"
            f"<ul>{space}</ul><table><tr>{head}</tr>{body}</table>{images}</body></html>")


def _describe_param(param) -> str:
    if param.values:
        return f"{param.type} {list(param.values)}"
    return f"{param.type} [{param.low:g}, {param.high:g}] {param.scale}"
