"""Peak memory of a short classification job whose validation set holds one real 12000 x 12000 JPEG (144 Mpx),
with --max_image_pixels above that size (the image is decoded) and at the default (it is skipped from its
header). Each job runs as its own process; its peak resident memory is the child's ru_maxrss.

    python bench/image_bomb_bench.py
"""

import io
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BOMB_SIDE = 12000
# Runs the command given after it and prints, last on stderr, the peak resident memory of that child in KiB.
_MEASURE = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[1:]).returncode\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)\n")


def write_validation_with_a_bomb(validation_glob: str, path: str, count: int = 150, position: int = 7) -> int:
    """The first `count` records of `validation_glob` with record `position` replaced by a flat grey
    BOMB_SIDE x BOMB_SIDE JPEG labelled 3; returns the JPEG's size in bytes."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from data.example_codec import classification_example

    buffer = io.BytesIO()
    Image.fromarray(np.full((BOMB_SIDE, BOMB_SIDE, 3), 127, np.uint8)).save(buffer, format="JPEG", quality=50)
    records = [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(validation_glob))][:count]
    records[position] = classification_example(buffer.getvalue(), 3, height=BOMB_SIDE, width=BOMB_SIDE,
                                                image_format="JPEG").SerializeToString()
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return len(buffer.getvalue())


def run_measured(command: list[str], timeout: float = 600) -> tuple[int, str, float]:
    """(exit code, the command's stderr, its peak resident memory in GiB)."""
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, cwd=REPO,
                            timeout=timeout)
    *log, peak = result.stderr.rstrip().splitlines()
    return result.returncode, "\n".join(log), int(peak) / 2 ** 20


def main():
    from data.sample_data import build_digits
    from dataloaders.image_ops import DEFAULT_MAX_IMAGE_PIXELS

    root = tempfile.mkdtemp(prefix="image-bomb-bench-")
    digits = build_digits(os.path.join(root, "digits"), image_size=32)
    validation = os.path.join(root, "validation.tfrecord")
    size = write_validation_with_a_bomb(digits["validation"], validation)
    print(f"150 validation images, one of them a {BOMB_SIDE} x {BOMB_SIDE} JPEG ({size / 2 ** 20:.1f} MiB)")
    for limit in (200_000_000, DEFAULT_MAX_IMAGE_PIXELS):
        code, _, peak = run_measured([
            sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={digits['train']}",
            f"--validation_data_path={validation}", f"--job-dir={root}/job_{limit}", "--num_classes=10",
            "--max_steps=2", "--train_steps_per_eval=2", "--model_type=resnet-18", "--image_size=32",
            "--train_batch_size=32", f"--max_image_pixels={limit}"])
        what = "decoded" if limit >= BOMB_SIDE ** 2 else "skipped from its header"
        print(f"  --max_image_pixels={limit:>11,}: the big image is {what}; peak resident memory {peak:.2f} GiB "
              f"(exit {code})")


if __name__ == "__main__":
    main()
