"""Detection parts with known answers: anchors and targets, COCO AP against pycocotools itself, the seed's
command line, routing, and every kind of bad detection record."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import entrypoint
from algorithms import registry
from algorithms.detection import anchors as anchor_ops
from algorithms.detection.coco_metrics import CocoEvaluator
from algorithms.detection.nasfpn import CELL_BLOCKS, _cell_plan
from core.errors import UserInputError
from data.example_codec import detection_example
from data.sample_data import encode

SEED_DETECTION_COMMAND = [
    "--training_data_path={train}", "--validation_data_path={validation}", "--job-dir=/tmp/out",
    "--train_batch_size=64", "--num_eval_images=500", "--train_steps_per_eval=2000", "--max_steps=22500",
    "--num_classes=90", "--warmup_steps=500", "--initial_learning_rate=0.08", '--fpn_type="nasfpn"',
    "--aug_scale_min=0.8", "--aug_scale_max=1.2"]


# --- anchors and targets -------------------------------------------------------------------------------
def test_anchors_follow_the_upstream_layout():
    anchors = anchor_ops.generate_anchors((64, 64), 3, 4, num_scales=2, aspect_ratios=(1.0, 2.0), anchor_size=4.0)
    # level 3: 8x8 cells, level 4: 4x4 cells, 2 scales x 2 ratios each
    assert anchors.shape == ((64 + 16) * 4, 4)
    first = anchors[0]  # level 3, cell (0, 0), scale 0, ratio 1: centre (4, 4), side 4 * 8 = 32
    np.testing.assert_allclose(first, [4 - 16, 4 - 16, 4 + 16, 4 + 16])
    wide = anchors[1]  # ratio 2 = width / height
    height, width = wide[2] - wide[0], wide[3] - wide[1]
    assert width / height == pytest.approx(2.0) and height * width == pytest.approx(32 * 32)
    octave = anchors[2]  # scale 1 of 2: side 32 * 2^(1/2)
    assert octave[2] - octave[0] == pytest.approx(32 * 2 ** 0.5)


def test_box_coding_round_trip_and_target_assignment():
    anchors = tf.constant(anchor_ops.generate_anchors((64, 64), 3, 4, 1, (1.0,), 4.0))
    boxes = tf.constant([[10.0, 12.0, 40.0, 30.0], [0.0, 0.0, 3.0, 3.0]])  # the second is tiny: forced match
    np.testing.assert_allclose(anchor_ops.decode_boxes(anchor_ops.encode_boxes(boxes, anchors[:2]), anchors[:2]),
                               boxes, atol=1e-4)
    classes, targets = anchor_ops.assign_targets(anchors, boxes, tf.constant([2, 3]))
    classes = classes.numpy()
    iou = anchor_ops.pairwise_iou(anchors, boxes).numpy()
    assert classes[np.argmax(iou[:, 1])] == 3, "every box gets its best anchor, however small"
    positives = np.flatnonzero(classes == 2)
    # Class 2 goes exactly to the anchors whose best box is box 0 at IoU >= 0.5, plus box 0's own best anchor.
    expected = set(np.flatnonzero((iou[:, 0] >= anchor_ops.MATCH_THRESHOLD) & (iou[:, 0] >= iou[:, 1])))
    expected.add(int(np.argmax(iou[:, 0])))
    assert set(positives) == expected
    unmatched = classes == anchor_ops.BACKGROUND  # upstream's thresholds are equal: nothing is ignored
    assert (iou[unmatched].max(axis=1) < anchor_ops.MATCH_THRESHOLD).all() and unmatched.sum() + len(positives) + 1 == len(classes)
    decoded = anchor_ops.decode_boxes(targets.numpy()[positives], tf.gather(anchors, positives))
    np.testing.assert_allclose(decoded, np.repeat(boxes[:1].numpy(), len(positives), 0), atol=1e-3)
    assert set(np.unique(classes)) <= {0, 2, 3}
    empty_classes, _ = anchor_ops.assign_targets(anchors, tf.zeros([0, 4]), tf.zeros([0], tf.int32))
    assert (empty_classes.numpy() == anchor_ops.BACKGROUND).all(), "an image without boxes is all background"


def test_anchor_fit_reads_boxes_in_input_pixels_and_an_unset_anchor_size_fits_them(tmp_path, caplog):
    """The training boxes in the pixels of the 128x128 input: a 256x128 PNG is halved (its box becomes 8x8 px at
    (32, 32)), a 64x64 JPEG doubled (32x32 px at (12, 12), exactly a level-3 anchor); a garbled record is skipped.
    The default anchors (32 px and up) fit the large box only, --anchor_size=1 (8 px) both: an unset
    --anchor_size becomes 1 and stays 1 for the job's reruns; a given one is kept, with a warning naming 1."""
    from algorithms.detection import anchor_fit

    tall = detection_example(encode(np.full((256, 128, 3), 90, np.uint8), "PNG"), [[0.25, 0.5, 0.3125, 0.625]], [1],
                             height=256, width=128, image_format="PNG").SerializeToString()
    small = detection_example(encode(np.full((64, 64, 3), 90, np.uint8), "JPEG"), [[0.09375, 0.09375, 0.34375, 0.34375]],
                              [1], height=64, width=64, image_format="JPEG").SerializeToString()
    path = _write(tmp_path / "train.tfrecord", [tall, b"not an example", small])
    boxes = anchor_fit.sample_training_boxes([path], (128, 128))
    np.testing.assert_allclose(boxes, [[32, 32, 40, 40], [12, 12, 44, 44]])

    def task_of(*extra):
        config = registry.parse_job_config([f"--training_data_path={path}", "--num_classes=1", "--max_steps=1",
                                            "--image_size=128,128", "--resnet_depth=18", f"--job-dir={tmp_path / 'job'}",
                                            *extra])
        task = registry.TASK_SPECS["detection"].make_task(config)
        task.train_files = [path]
        return task

    default = task_of()
    assert anchor_fit.anchor_fit(boxes, default.params) == 0.5
    assert anchor_fit.best_anchor_size(boxes, default.params) == (1.0, 1.0)
    with caplog.at_level("INFO"):
        default.check_anchor_fit()
    found = "only 50.0% of 2 boxes of the first training records have an anchor at IoU >= 0.5 (median box 20x20 px " \
            "in the 128x128 input; smallest anchor 32 px)"
    assert f"anchors: with the default --anchor_size=4 {found}; chose --anchor_size=1, which fits 100.0%" in caplog.text
    smallest = default.anchors[0]  # level 3, cell (0, 0): 8 px around (4, 4)
    assert default.params.anchor_size == 1.0 and np.allclose(smallest, [0, 0, 8, 8])
    assert json.load(open(tmp_path / "job" / "checkpoints" / "anchors.json"))["anchor_size"] == 1.0

    _write(tmp_path / "train.tfrecord", [small])  # the data changed; the rerun keeps the job's anchors
    rerun = task_of()
    with caplog.at_level("INFO"):
        rerun.check_anchor_fit()
    assert rerun.params.anchor_size == 1.0 and "as this job's first run chose it from the training boxes" in caplog.text

    _write(tmp_path / "train.tfrecord", [tall, small])
    given = task_of("--anchor_size=4")
    caplog.clear()
    with caplog.at_level("INFO"):
        given.check_anchor_fit()
    assert given.params.anchor_size == 4.0
    assert f"anchors: with --anchor_size=4 {found}; --anchor_size=1 fits 100.0%" in caplog.text


def test_nasfpn_cell_plan_is_the_papers_graph():
    residuals, levels, outputs = _cell_plan()
    assert levels == (3, 4, 5, 6, 7, 4, 4, 3, 4, 5, 7, 6)
    assert outputs == {3: 7, 4: 8, 5: 9, 7: 10, 6: 11}
    # Output blocks add the cell inputs of their level that nothing else consumed (P3 is used by block 2).
    assert residuals == ((), (), (), (), (2,), (4,), ())
    assert len(CELL_BLOCKS) == 7


# --- COCO AP equals pycocotools' own --------------------------------------------------------------------
def _pycocotools_ap(images, annotations, detections, num_classes):
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": c} for c in range(1, num_classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(np.asarray(detections, np.float64)), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def test_perfect_detections_score_ap_one():
    evaluator = CocoEvaluator(num_classes=2)
    truth = np.array([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95]])
    evaluator.add_image(200, 300, truth, [1, 2], boxes=truth, scores=[0.9, 0.8], classes=[1.0, 2.0])
    evaluator.add_image(100, 100, truth[:1], [2], boxes=truth[:1], scores=[0.7], classes=[2.0])
    metrics = evaluator.result()
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)


def test_ap_matches_pycocotools_on_a_shifted_box():
    height, width = 200.0, 300.0
    truth = np.array([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95]])
    shifted = truth.copy()
    shifted[1] += [0.05, 0.05, 0.05, 0.05]  # IoU with its truth about 0.6: counts at 0.5, not at 0.75
    evaluator = CocoEvaluator(num_classes=2)
    evaluator.add_image(height, width, truth, [1, 2], boxes=shifted, scores=[0.9, 0.6], classes=[1.0, 2.0])
    ours = evaluator.result()

    def xywh(box):
        return [box[1] * width, box[0] * height, (box[3] - box[1]) * width, (box[2] - box[0]) * height]

    images = [{"id": 1, "height": height, "width": width}]
    annotations = [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": xywh(b), "iscrowd": 0,
                    "area": xywh(b)[2] * xywh(b)[3]} for i, (b, c) in enumerate(zip(truth, [1, 2]))]
    detections = [[1, *xywh(b), s, c] for b, s, c in zip(shifted, [0.9, 0.6], [1, 2])]
    reference = _pycocotools_ap(images, annotations, detections, 2)
    assert ours["AP"] == pytest.approx(reference[0]) and ours["AP75"] == pytest.approx(reference[2])
    assert 0.0 < ours["AP"] < 1.0 and ours["AP50"] == pytest.approx(1.0) and ours["AP75"] == pytest.approx(0.5)


def test_no_detections_give_zero_not_an_error():
    evaluator = CocoEvaluator(num_classes=3)
    evaluator.add_image(64, 64, [[0.1, 0.1, 0.5, 0.5]], [1])
    assert evaluator.result()["AP"] == 0.0


# --- command line and routing ----------------------------------------------------------------------------
def test_the_guides_detection_command_line_parses(digit_detection):
    args = [a.format(**digit_detection) for a in SEED_DETECTION_COMMAND]
    config = registry.parse_job_config(args)
    params = config.task_params
    assert config.task == "detection" and config.num_classes == 90 and config.train_batch_size == 64
    assert (params.fpn_type, params.scale_min, params.scale_max) == ("nasfpn", 0.8, 1.2)
    assert (config.train_steps_per_eval, config.num_eval_images, config.max_steps) == (2000, 500, 22500)
    assert config.schedule.initial_learning_rate == 0.08 and config.schedule.warmup_steps == 500
    # Upstream defaults where the guide is silent: ResNet-50, 640x640, stepwise decay at 2/3 and 8/9.
    assert (params.resnet_depth, params.image_size, config.schedule.decay_type) == (50, (640, 640), "stepwise")
    assert config.schedule.stepwise_boundaries == (15000, 20000)
    assert config.schedule.stepwise_levels == pytest.approx((0.008, 0.0008))


def test_detection_routing(digit_detection, digits):
    data = [f"--training_data_path={digit_detection['train']}", "--num_classes=3", "--max_steps=1"]
    assert registry.parse_job_config(data).task == "detection"  # from the first record's keys
    assert registry.parse_job_config([*data, "--task=detection"]).task == "detection"
    # Without data to look at, a detection-only flag decides; on classification data it is refused
    # (tests/test_platforms.py), and --resnet_depth picks a ResNet classifier there.
    assert registry.parse_job_config(["--num_classes=3", "--max_steps=1", "--fpn_type=fpn"]).task == "detection"


@pytest.mark.parametrize("flag,expected", [
    ("--fpn_type=bifpn", "use fpn or nasfpn"), ("--resnet_depth=19", "--resnet_depth=19"),
    ("--image_size=64,abc", "HEIGHT,WIDTH"), ("--aug_scale_min=1.5", "aug_scale_min"),
    ("--fpn_min_level=4", "nasfpn is defined for levels 3-7")])
def test_bad_detection_flags(digit_detection, flag, expected):
    args = [f"--training_data_path={digit_detection['train']}", "--num_classes=3", "--max_steps=1", flag]
    if "min_level" in flag:
        args.append("--fpn_type=nasfpn")
    with pytest.raises(UserInputError, match=expected):
        registry.parse_job_config(args)


def test_image_size_is_padded_to_the_coarsest_stride(digit_detection):
    args = [f"--training_data_path={digit_detection['train']}", "--num_classes=3", "--max_steps=1",
            "--image_size=200,300"]
    params = registry.parse_job_config(args).task_params
    assert params.image_size == (200, 300) and params.padded_size == (256, 384)


# --- bad records -----------------------------------------------------------------------------------------
def _image_bytes():
    return encode(np.full((64, 64, 3), 120, np.uint8), "JPEG")


def _record(boxes, labels, **overrides):
    example = detection_example(_image_bytes(), boxes, labels, height=64, width=64, image_format="JPEG")
    for key, value in overrides.items():
        feature = example.features.feature[key]
        feature.Clear()
        if isinstance(value[0], float):
            feature.float_list.value.extend(value)
        else:
            feature.int64_list.value.extend(value)
    return example.SerializeToString()


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


GOOD_BOX = [[0.1, 0.1, 0.6, 0.5]]


@pytest.mark.parametrize("bad_record,expected", [
    (lambda: _record([[0.1, 0.1, 1.4, 0.5]], [1]), "box 0 [ymin, xmin, ymax, xmax] = [0.1000, 0.1000, 1.4000, 0.5000] is outside [0, 1]"),
    (lambda: _record([[0.1, 0.1, 0.5, 0.5], [0.6, 0.5, 0.2, 0.9]], [1, 2]), "box 1 [ymin, xmin, ymax, xmax] = [0.6000, 0.5000, 0.2000, 0.9000] has ymin > ymax"),
    (lambda: _record(GOOD_BOX, [4]), "box 0 has image/object/class/label=4, outside 1..3"),
    (lambda: _record(GOOD_BOX, [1], **{"image/object/bbox/xmin": [0.1, 0.2]}), "lists of lengths 1/1/2/1/1"),
    (lambda: _record(GOOD_BOX, [1], **{"image/object/bbox/ymin": [0]}),
     "stores 'image/object/bbox/ymin' as an int64_list; it must be a float_list"),
])
def test_bad_detection_records_name_file_record_and_box(capsys, tmp_path, bad_record, expected):
    good = [_record(GOOD_BOX, [1]) for _ in range(6)]
    train = _write(tmp_path / "train.tfrecord", good)
    validation = _write(tmp_path / "validation.tfrecord", [*good[:3], bad_record(), *good[3:]])
    job_dir = tmp_path / "job"
    code = entrypoint.main([f"--training_data_path={train}", f"--validation_data_path={validation}",
                            f"--job-dir={job_dir}", "--num_classes=3", "--max_steps=1", "--train_batch_size=2",
                            "--image_size=64,64", "--resnet_depth=18", "--fpn_max_level=5"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    assert code == 2 and errors, "a bad record must stop the job with one ERROR line"
    assert errors[0].startswith(f"ERROR: record 3 of {validation}") and expected in errors[0], errors[0]
    assert not os.path.exists(job_dir / "model")


def test_classification_records_given_to_the_detector(capsys, tmp_path, digits):
    code = entrypoint.main([f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
                            f"--job-dir={tmp_path}", "--num_classes=10", "--max_steps=1", "--task=detection"])
    error = capsys.readouterr().err
    assert code == 2 and "is a classification record" in error and "--task=classification" in error


def test_evaluation_batches_of_images_without_boxes(tmp_path):
    """Negatives only (and a padded last batch): every batch still has a ground-truth row, all of it padding."""
    from dataloaders import detection_input
    from dataloaders.record_pipeline import RecordCounters

    files = [_write(tmp_path / "negatives.tfrecord", [_record([], []) for _ in range(3)])]
    batches = list(detection_input.build_dataset(
        files, training=False, image_size=(64, 64), padded_size=(64, 64), batch_size=2, num_classes=3,
        counters=RecordCounters("negatives")))
    assert [b[-1].numpy().tolist() for b in batches] == [[1.0, 1.0], [1.0, 0.0]]
    assert all(b[4].shape[1] >= 1 and not b[4].numpy().any() for b in batches), "labels are all padding (0)"
    evaluator = CocoEvaluator(3, 100)
    for b in batches:
        weights = b[-1].numpy()
        for i in np.flatnonzero(weights):
            evaluator.add_image(64, 64, b[3][i].numpy(), b[4][i].numpy(), b[5][i].numpy(), b[6][i].numpy())
    assert evaluator.annotations == [] and len(evaluator.images) == 3
