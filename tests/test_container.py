"""The Docker image's definition: hadolint, Cloud Build's structure, and the image's own entry command."""

import os
import re
import shutil
import subprocess
import sys

import yaml

from tests.conftest import REPO


def _dockerfile_instructions():
    text = open(os.path.join(REPO, "Dockerfile")).read().replace("\\\n", " ")
    return [line.strip().split(None, 1) for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_hadolint_passes():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    result = subprocess.run([hadolint, os.path.join(REPO, "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_installs_the_one_requirements_file_and_runs_as_non_root():
    instructions = _dockerfile_instructions()
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "pip install --no-cache-dir -r requirements.txt" in runs
    assert [args for op, args in instructions if op == "USER"] == ["${RUN_AS}"]
    assert ["ARG", "RUN_AS=1000:1000"] in instructions, "non-root unless the build asks for root (SageMaker)"
    assert [args for op, args in instructions if op == "ENTRYPOINT"] == ['["python", "/app/entrypoint.py"]']


def test_entrypoint_help_works_from_the_images_workdir_layout(tmp_path):
    """Copies exactly what the Dockerfile COPYs into a WORKDIR and runs the image's entry command there."""
    instructions = _dockerfile_instructions()
    workdir = [args for op, args in instructions if op == "WORKDIR"][-1]
    app = tmp_path / workdir.strip("/")
    app.mkdir(parents=True)
    for op, args in instructions:
        if op != "COPY":
            continue
        *sources, destination = args.split()
        for source in sources:
            target = app / destination.rstrip("/") if destination not in ("./", ".") else app
            if os.path.isdir(os.path.join(REPO, source)):
                shutil.copytree(os.path.join(REPO, source), app / destination.rstrip("/"))
            else:
                shutil.copy(os.path.join(REPO, source), target if destination not in ("./", ".") else app / source)
    command = [sys.executable if c == "python" else c.replace(workdir, str(app)) for c in
               re.findall(r'"([^"]+)"', [args for op, args in instructions if op == "ENTRYPOINT"][0])]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=str(app),
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--training_data_path" in result.stdout and "--model_type" in result.stdout


def test_cloudbuild_builds_and_pushes_to_artifact_registry():
    config = yaml.safe_load(open(os.path.join(REPO, "cloudbuild.yaml")))
    image = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/${_IMAGE}:${_TAG}"
    build = config["steps"][0]
    assert build["name"] == "gcr.io/cloud-builders/docker" and build["args"][0] == "build"
    assert image in build["args"] and build["args"][-1] == "."
    assert config["images"] == [image]
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", yaml.safe_dump(config)))
    assert used == set(config["substitutions"]) == {"_REGION", "_REPOSITORY", "_IMAGE", "_TAG", "_PRETRAINED"}
