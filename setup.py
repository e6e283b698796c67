"""Packages this repository for Dataflow workers: `python -m data.jpeg_to_tf_record ... --runner=DataflowRunner`
and `entrypoint.py batch_predict ... --runner=DataflowRunner` pass it as --setup_file, so the workers get this
code and what the converter needs there (batch_predict adds TensorFlow through a requirements file of its own,
client/batch_predict.py: the converter's workers never need it)."""

import os

import setuptools

# Only what the conversion step runs on a worker (Beam and protobuf are already there; TensorFlow is not
# needed, see data/example_codec.py and core/tfrecord_framing.py); versions from the image's pins
# (requirements/runtime.in).
WORKER_PACKAGES = ("pillow", "google-crc32c")


def _pins() -> list[str]:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements", "runtime.in")) as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    return [line for line in lines if line.split("==")[0].split("[")[0] in WORKER_PACKAGES]


setuptools.setup(
    name="open-image-algorithms",
    version="0.1.0",
    packages=setuptools.find_packages(include=["core", "data", "client", "dataloaders", "export", "algorithms",
                                               "algorithms.*"]),
    install_requires=_pins(),
    python_requires=">=3.11",
)
