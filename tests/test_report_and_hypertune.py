"""algorithms/runtime/report.py and platforms/hypertune.py on their own: files written, kept across restarts,
and a broken figure never failing the job."""

import csv
import json
import subprocess
import sys

from algorithms.runtime.report import TrainingReport, pyplot
from tests.conftest import REPO


def _rows(report_dir):
    with open(report_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_metrics_csv_is_current_after_each_evaluation_and_survives_a_restart(tmp_path):
    report = TrainingReport(str(tmp_path), "top_1_accuracy", enabled=True)
    report.record_evaluation(100, 2.5, {"top_1_accuracy": 0.5, "eval_images": 10})
    assert _rows(tmp_path) == [{"step": "100", "train_loss": "2.5", "top_1_accuracy": "0.5", "eval_images": "10"}]
    report.record_evaluation(200, None, {"top_1_accuracy": 0.75, "eval_images": 10})
    # A restarted job resumes from the checkpoint of step 100: rows from later steps are replaced, not doubled.
    resumed = TrainingReport(str(tmp_path), "top_1_accuracy", enabled=True)
    resumed.record_evaluation(200, 1.25, {"top_1_accuracy": 0.8, "eval_images": 10})
    assert [(row["step"], row["train_loss"], row["top_1_accuracy"]) for row in _rows(tmp_path)] == [
        ("100", "2.5", "0.5"), ("200", "1.25", "0.8")]


def test_finish_writes_curves_figures_tables_and_a_page_and_survives_a_broken_figure(tmp_path):
    report = TrainingReport(str(tmp_path), "AP", enabled=True)
    for step, value in ((10, 0.1), (20, 0.3)):
        report.record_evaluation(step, 1.0 / step, {"AP": value, "eval_loss": 0.5, "eval_images": 4})
    plt = pyplot()
    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])

    class Broken:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("no backend")

    pngs = report.finish({"best AP": "0.3000"}, {"good.png": figure, "broken.png": Broken()},
                         {"table.csv": "a,b\n1,2\n"})
    assert set(pngs) == {"curves.png", "good.png"} and all(png.startswith(b"\x89PNG") for png in pngs.values())
    assert (tmp_path / "table.csv").read_text() == "a,b\n1,2\n"
    page = (tmp_path / "report.html").read_text()
    assert "best AP" in page and 'src="good.png"' in page and 'src="curves.png"' in page and "broken" not in page


def test_a_disabled_report_writes_nothing(tmp_path):
    report = TrainingReport(str(tmp_path / "report"), "AP", enabled=False)
    report.record_evaluation(10, 1.0, {"AP": 0.1})
    assert report.finish({}, {}, {}) == {} and not (tmp_path / "report").exists()


def test_hypertune_lines_accumulate_in_the_metric_file_with_the_trial_id(tmp_path):
    """In a fresh process, as a job reports: one JSON line per evaluation, all kept (HyperTune rewrites the file)."""
    metrics = tmp_path / "hypertune" / "output.metrics"
    code = ("from platforms import hypertune as h\n"
            "h.report('top_1_accuracy', 0.25, 100)\nh.report('top_1_accuracy', 0.5, 200)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"CLOUD_ML_HP_METRIC_FILE": str(metrics), "CLOUD_ML_TRIAL_ID": "7", "PATH": "/usr/bin:/bin"})
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(line["top_1_accuracy"], line["global_step"], line["trial"]) for line in lines] == [
        ("0.25", "100", "7"), ("0.5", "200", "7")]
