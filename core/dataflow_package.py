"""What Dataflow's workers are given to run this repository's code (the converter and batch_predict): setup.py
and the packages it names, copied into a folder of the launch's own, and pins from requirements/runtime.in.

Beam builds the workers' package where setup.py is and writes beside it (an .egg-info folder); from a copy, a
launch writes nothing into the repository, and works from the image, whose /app its user may not write."""

import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGED = ("core", "data", "client", "dataloaders", "export", "algorithms")  # setup.py's packages
RUNTIME_PINS = os.path.join("requirements", "runtime.in")


def setup_file_copy(folder: str) -> str:
    """Copies setup.py, its pins and its packages into `folder`/source; returns the copy's setup.py."""
    target = os.path.join(folder, "source")
    for name in PACKAGED:
        shutil.copytree(os.path.join(REPO, name), os.path.join(target, name),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    os.makedirs(os.path.join(target, "requirements"), exist_ok=True)
    shutil.copy(os.path.join(REPO, RUNTIME_PINS), os.path.join(target, "requirements"))
    for name in ("setup.py", "MANIFEST.in"):  # MANIFEST.in puts the pins into the sdist: setup.py reads them there
        shutil.copy(os.path.join(REPO, name), target)
    return os.path.join(target, "setup.py")


def pins(packages) -> list[str]:
    """The `name==version` lines of requirements/runtime.in for these package names."""
    with open(os.path.join(REPO, RUNTIME_PINS)) as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    return [line for line in lines if line and line.split("==")[0].split("[")[0].lower() in packages]
