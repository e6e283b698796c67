"""Classification figures for the training report: the confusion matrix and validation predictions."""

import numpy as np

from algorithms.runtime.report import pyplot


def confusion_matrix_csv(matrix: np.ndarray, names: list[str]) -> str:
    """Rows: true class, columns: predicted class; counts from the last evaluation."""
    lines = ["true\\predicted," + ",".join(names)]
    lines += [f"{name}," + ",".join(str(int(round(v))) for v in row) for name, row in zip(names, matrix)]
    return "\n".join(lines) + "\n"


def confusion_matrix_figure(matrix: np.ndarray, names: list[str]):
    plt = pyplot()
    size = max(4.0, 0.45 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true",
             title=f"Confusion matrix ({int(matrix.sum())} images)")
    axis.set_xticklabels(names, rotation=90)
    axis.set_yticklabels(names)
    if len(names) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, column), value in np.ndenumerate(matrix):
            if value:
                axis.text(column, row, int(round(value)), ha="center", va="center", fontsize=8,
                          color="white" if value > threshold else "black")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return figure


def predictions_figure(samples: list[tuple]):
    """samples: (uint8 image, true name, predicted name, score); green when right, red when wrong."""
    plt = pyplot()
    columns = 4
    rows = max(1, (len(samples) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, (image, truth, predicted, score) in zip(np.atleast_1d(axes).ravel(), samples):
        axis.imshow(image)
        axis.set_title(f"true {truth}\npred {predicted} ({score:.2f})", fontsize=9,
                       color="green" if truth == predicted else "red")
    figure.suptitle("Validation images")
    return figure
