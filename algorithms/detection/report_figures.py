"""Detection figures for the training report: the precision-recall curve at IoU 0.5 and validation images
with the exported model's boxes drawn on them."""

import numpy as np

from algorithms.runtime.report import decode_for_display, pyplot

SCORE_TO_DRAW = 0.3


def precision_recall_figure(precision: np.ndarray):
    """precision at 101 recall points (COCO), averaged over the classes present, IoU 0.5, all areas."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot(np.linspace(0, 1, len(precision)), precision)
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title=f"Precision-recall at IoU 0.5 (AP50 {float(np.mean(precision)):.3f})")
    axis.grid(alpha=0.3)
    return figure


def drawable_sample(encoded: bytes, truth: np.ndarray, outputs: dict) -> tuple:
    """(uint8 image, ground-truth normalized boxes, (boxes, classes, scores) of the valid detections) from one
    validation image and its serving outputs."""
    valid = int(outputs["num_detections"])
    detections = (outputs["detection_boxes"][:valid], outputs["detection_classes"][:valid],
                  outputs["detection_scores"][:valid])
    return decode_for_display(encoded), truth, detections


def detections_figure(samples: list[tuple], names: list[str]):
    """Ground truth dashed white, detections scoring at least SCORE_TO_DRAW in colour with name and score."""
    plt = pyplot()
    columns = 4
    rows = max(1, (len(samples) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows))
    colours = plt.get_cmap("tab10")
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, (image, truth, (boxes, classes, scores)) in zip(np.atleast_1d(axes).ravel(), samples):
        height, width = image.shape[:2]
        axis.imshow(image)
        for ymin, xmin, ymax, xmax in truth:
            axis.add_patch(plt.Rectangle((xmin * width, ymin * height), (xmax - xmin) * width,
                                         (ymax - ymin) * height, fill=False, edgecolor="white", linestyle="--"))
        for (ymin, xmin, ymax, xmax), label, score in zip(boxes, classes, scores):
            if score < SCORE_TO_DRAW:
                continue
            colour = colours(int(label) % 10)
            axis.add_patch(plt.Rectangle((xmin * width, ymin * height), (xmax - xmin) * width,
                                         (ymax - ymin) * height, fill=False, edgecolor=colour, linewidth=2))
            name = names[int(label) - 1] if 0 < int(label) <= len(names) else str(int(label))
            axis.text(xmin * width, ymin * height, f"{name} {score:.2f}", color="white", fontsize=7,
                      backgroundcolor=colour, va="bottom")
    figure.suptitle(f"Validation images: truth dashed, detections >= {SCORE_TO_DRAW}")
    return figure
