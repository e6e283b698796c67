"""The training report in <job-dir>/report/ (per trial: report/trial_<id>/), written by the chief:

metrics.csv   one row per evaluation (kept across restarts)
curves.png    training loss and the evaluation metrics against the step
<task>.png    the task's own figures (Task.report_figures, e.g. a confusion matrix, sample predictions)
report.html   one page tying them together

Drawing is best effort: any failure is logged and never fails the training job.
"""

import csv
import html
import io
import time

import tensorflow as tf
from absl import logging

from algorithms.runtime.events import Evaluation, TrainerCallback, TrainingEnd
from core.paths import join

METRICS_FILE = "metrics.csv"


def pyplot():
    """matplotlib.pyplot on the headless backend (training machines have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decode_for_display(encoded: bytes):
    """Image bytes -> uint8 RGB array, for the report's sample grids."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))


class TrainingReport:
    def __init__(self, report_dir: str, metric_name: str, enabled: bool):
        self.report_dir, self.metric_name, self.enabled = report_dir, metric_name, enabled
        self.rows: list[dict] = []
        if enabled:
            self.rows = self._read_existing_rows()

    def _read_existing_rows(self) -> list[dict]:
        path = join(self.report_dir, METRICS_FILE)
        try:
            if tf.io.gfile.exists(path):
                with tf.io.gfile.GFile(path) as handle:
                    return list(csv.DictReader(handle))
        except (tf.errors.OpError, csv.Error) as error:
            logging.warning("report: could not read %s (%s); starting a new one", path, error)
        return []

    def record_evaluation(self, step: int, train_loss: float | None, metrics: dict) -> None:
        """Appends one row and rewrites metrics.csv, so the file is current even if the job is killed."""
        if not self.enabled:
            return
        row = {"step": step, "train_loss": "" if train_loss is None else f"{train_loss:.6g}",
               **{k: f"{v:.6g}" if isinstance(v, float) else v for k, v in metrics.items()}}
        self.rows = [r for r in self.rows if int(r["step"]) < step] + [row]
        self._best_effort("metrics.csv", self._write_metrics)

    def _write_metrics(self):
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        tf.io.gfile.makedirs(self.report_dir)
        self._write(METRICS_FILE, buffer.getvalue())

    def _best_effort(self, what: str, action):
        try:
            return action()
        except Exception as error:  # a report must never fail the training job
            logging.warning("report: could not write %s: %s", what, error)
            return None

    def _write(self, name: str, content) -> None:
        with tf.io.gfile.GFile(join(self.report_dir, name), "wb" if isinstance(content, bytes) else "w") as handle:
            handle.write(content)

    def _save_figure(self, figure, name: str) -> tuple[str, bytes]:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        self._write(name, buffer.getvalue())
        return name, buffer.getvalue()

    def _curves(self):
        import matplotlib.pyplot as plt

        steps = [int(r["step"]) for r in self.rows]
        figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4))
        losses = [(int(r["step"]), float(r["train_loss"])) for r in self.rows if r.get("train_loss")]
        if losses:
            loss_axis.plot(*zip(*losses), marker="o", label="training loss (with weight decay)")
        eval_losses = [(int(r["step"]), float(r["eval_loss"])) for r in self.rows if r.get("eval_loss")]
        if eval_losses:
            loss_axis.plot(*zip(*eval_losses), marker="o", label="evaluation loss")
        loss_axis.set(xlabel="step", ylabel="loss", title="Loss")
        loss_axis.legend()
        numeric = [k for k in self.rows[-1] if k not in ("step", "train_loss", "eval_loss", "eval_images")]
        values = {key: [float(r[key]) for r in self.rows] for key in numeric}
        for key in numeric:
            metric_axis.plot(steps, values[key], marker="o", label=key)
        metric_axis.set(xlabel="step", title="Evaluation")
        if all(0.0 <= v <= 1.0 for series in values.values() for v in series):  # fractions: the whole scale
            metric_axis.set_ylim(0, 1.02)
        metric_axis.legend()
        return self._save_figure(figure, "curves.png")

    def finish(self, summary: dict, figures: dict, tables: dict) -> dict:
        """Draws the curves and the task's figures ({file name: matplotlib Figure}), writes its tables
        ({file name: text}) and report.html; returns {file name: PNG bytes} of the figures written."""
        if not self.enabled or not self.rows:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        tf.io.gfile.makedirs(self.report_dir)
        for name, text in tables.items():
            self._best_effort(name, lambda n=name, t=text: self._write(n, t))
        saved = [self._best_effort("curves.png", self._curves)]
        for name, figure in figures.items():
            saved.append(self._best_effort(name, lambda f=figure, n=name: self._save_figure(f, n)))
        pngs = dict(item for item in saved if item)
        self._best_effort("report.html", lambda: self._write_html(summary, list(pngs)))
        return pngs

    def _write_html(self, summary: dict, images: list[str]) -> None:
        summary_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in summary.items())
        columns = list(self.rows[-1])
        metric_rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                              for r in self.rows)
        pictures = "".join(f'<figure><img src="{html.escape(i)}" alt="{html.escape(i)}"></figure>' for i in images)
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Training report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left}}img{{max-width:100%}}</style></head>
<body><h1>Training report</h1><p>Written {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p>
<table>{summary_rows}</table><h2>Evaluations</h2>
<table><tr>{''.join(f'<th>{html.escape(c)}</th>' for c in columns)}</tr>{metric_rows}</table>
<h2>Figures</h2>{pictures}</body></html>
"""
        self._write("report.html", page)


class ReportCallback(TrainerCallback):
    """The report's subscription to the trainer: metrics.csv at each evaluation; at the end, the task's figures
    and tables, report.html, and the same figures in TensorBoard's Images tab. Best effort throughout."""

    def __init__(self, report: TrainingReport, task, writer):
        self.report, self.task, self.writer = report, task, writer

    def on_evaluation(self, evaluation: Evaluation) -> None:
        self.report.record_evaluation(evaluation.step, evaluation.train_loss, evaluation.metrics)

    def on_training_end(self, end: TrainingEnd) -> None:
        if not self.report.enabled:
            return
        try:
            figures, tables = self.task.report_figures(end.serving), self.task.report_tables()
        except Exception as error:  # the report is best effort: it never fails a finished training job
            logging.warning("report: could not draw the task's figures: %s", error)
            figures, tables = {}, {}
        summary = {f"best {end.metric_name}": f"{end.best_value:.4f}", "best step": end.best_step,
                   "final step": end.step, "model": end.model_dir, "seed": end.seed, "this run took": end.duration}
        pngs = self.report.finish(summary, figures, tables)
        try:  # the same figures in TensorBoard's Images tab (sample predictions, confusion matrix, curves)
            with self.writer.as_default(step=end.step):
                for name, png in pngs.items():
                    tf.summary.image(f"report/{name.rsplit('.', 1)[0]}", tf.io.decode_png(png, channels=3)[None])
            self.writer.flush()
        except Exception as error:
            logging.warning("report: could not add the figures to TensorBoard: %s", error)
        logging.info("report: %s/report.html", self.report.report_dir)
