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

MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20, code)\n")


def main():
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from data.example_codec import classification_example
    from data.sample_data import build_digits
    from dataloaders.image_ops import DEFAULT_MAX_IMAGE_PIXELS

    root = tempfile.mkdtemp(prefix="image-bomb-bench-")
    digits = build_digits(os.path.join(root, "digits"), image_size=32)
    buffer = io.BytesIO()
    Image.fromarray(np.full((12000, 12000, 3), 127, np.uint8)).save(buffer, format="JPEG", quality=50)
    records = [r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(digits["validation"]))][:150]
    records[7] = classification_example(buffer.getvalue(), 3, height=12000, width=12000,
                                        image_format="JPEG").SerializeToString()
    validation = os.path.join(root, "validation.tfrecord")
    with tf.io.TFRecordWriter(validation) as writer:
        for record in records:
            writer.write(record)
    print(f"150 validation images, one of them a 12000 x 12000 JPEG ({len(buffer.getvalue()) / 2 ** 20:.1f} MiB)")
    for limit in (200_000_000, DEFAULT_MAX_IMAGE_PIXELS):
        job = [sys.executable, os.path.join(REPO, "entrypoint.py"), f"--training_data_path={digits['train']}",
               f"--validation_data_path={validation}", f"--job-dir={root}/job_{limit}", "--num_classes=10",
               "--max_steps=2", "--train_steps_per_eval=2", "--model_type=resnet-18", "--image_size=32",
               "--train_batch_size=32", f"--max_image_pixels={limit}"]
        peak, code = subprocess.run([sys.executable, "-c", MEASURE, *job], capture_output=True, text=True,
                                    cwd=REPO).stdout.split()
        what = "decoded" if limit > 144_000_000 else "skipped from its header"
        print(f"  --max_image_pixels={limit:>11,}: the big image is {what}; peak resident memory "
              f"{float(peak):.2f} GiB (exit {code})")


if __name__ == "__main__":
    main()
