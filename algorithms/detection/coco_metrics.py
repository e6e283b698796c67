"""COCO box AP with pycocotools' COCOeval, ground truth built from the validation records themselves.

Each evaluated image gets a sequential id (source ids in user data are often missing or repeated). Boxes
are scored in the original image's pixels, so the small/medium/large split means what COCO means.
"""

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from algorithms.runtime.task import Evaluator

# COCOeval.stats order.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")


def _xywh(boxes_normalized: np.ndarray, height: float, width: float) -> np.ndarray:
    """[n, 4] normalized [ymin, xmin, ymax, xmax] -> COCO [x, y, width, height] in pixels."""
    scaled = boxes_normalized * np.array([height, width, height, width], np.float64)
    return np.stack([scaled[:, 1], scaled[:, 0], scaled[:, 3] - scaled[:, 1], scaled[:, 2] - scaled[:, 0]], axis=-1)


class CocoEvaluator(Evaluator):
    """Collects detections and ground truth image by image, then runs COCOeval once."""

    def __init__(self, num_classes: int, max_detections: int = 100):
        self.num_classes = num_classes
        self.max_detections = max_detections
        self.reset()

    def reset(self):
        self.images, self.annotations, self.detections = [], [], []
        self.precision_at_50 = None  # [recall points] averaged over classes, for the report's PR curve

    def add_image(self, height: float, width: float, gt_boxes, gt_labels, gt_crowd=None, gt_areas=None,
                  boxes=None, scores=None, classes=None) -> int:
        """One image: ground truth (normalized boxes, 1-based labels; label 0 rows are padding) and detections
        (normalized boxes, scores, 1-based classes; only the valid rows). Returns the image id."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": float(height), "width": float(width)})
        gt_labels = np.asarray(gt_labels).reshape(-1)
        real = gt_labels > 0
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)[real]
        crowd = np.zeros(len(gt_boxes), np.int64) if gt_crowd is None else np.asarray(gt_crowd).reshape(-1)[real]
        areas = None if gt_areas is None else np.asarray(gt_areas, np.float64).reshape(-1)[real]
        for i, (xywh, label) in enumerate(zip(_xywh(gt_boxes, height, width), gt_labels[real])):
            area = float(areas[i]) if areas is not None and areas[i] > 0 else float(xywh[2] * xywh[3])
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, "category_id": int(label),
                                     "bbox": [float(v) for v in xywh], "area": area, "iscrowd": int(crowd[i])})
        if boxes is not None and len(boxes):
            xywh = _xywh(np.asarray(boxes, np.float64).reshape(-1, 4), height, width)
            for box, score, label in zip(xywh, np.asarray(scores).reshape(-1), np.asarray(classes).reshape(-1)):
                self.detections.append([image_id, *box, float(score), int(round(float(label)))])
        return image_id

    def update(self, outputs: dict) -> None:
        """One replica's eval step outputs as numpy; rows with weight 0 are padding."""
        for i in np.flatnonzero(outputs["weights"] > 0):
            count = int(outputs["num_detections"][i])
            self.add_image(outputs["original_sizes"][i][0], outputs["original_sizes"][i][1],
                           outputs["gt_boxes"][i], outputs["gt_labels"][i], outputs["gt_crowd"][i],
                           outputs["gt_areas"][i], outputs["boxes"][i][:count], outputs["scores"][i][:count],
                           outputs["classes"][i][:count])

    @property
    def num_images(self) -> int:
        return len(self.images)

    def result(self) -> dict:
        """{"AP": ..., "AP50": ..., ..., "eval_images": n}; every AP/AR is 0.0 when nothing was detected."""
        return {**self._coco_metrics(), "eval_images": self.num_images}

    def _coco_metrics(self) -> dict:
        ground_truth = COCO()
        ground_truth.dataset = {"images": self.images, "annotations": self.annotations,
                                "categories": [{"id": c} for c in range(1, self.num_classes + 1)]}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
            ground_truth.createIndex()
            if not self.detections or not self.annotations:
                self.precision_at_50 = None
                return {name: 0.0 for name in METRIC_NAMES}
            detections = ground_truth.loadRes(np.asarray(self.detections, np.float64))
            evaluation = COCOeval(ground_truth, detections, iouType="bbox")
            evaluation.params.maxDets = [1, 10, max(100, self.max_detections)]
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        # precision [iou thresholds, 101 recall points, classes, area ranges, max dets]; -1 = class absent.
        precision = evaluation.eval["precision"][0, :, :, 0, -1]
        present = (precision > -1).any(axis=0)
        self.precision_at_50 = precision[:, present].mean(axis=1) if present.any() else None
        return {name: max(float(value), 0.0) for name, value in zip(METRIC_NAMES, evaluation.stats)}
