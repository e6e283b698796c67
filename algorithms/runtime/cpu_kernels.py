"""Which CPU kernels TensorFlow runs: oneDNN's, or TensorFlow's own. Chosen before TensorFlow is imported,
since it reads TF_ENABLE_ONEDNN_OPTS once, as it loads, so this module must not import it.

TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 and newer. Elsewhere (AVX2, e.g. AMD EPYC) its
own convolution gradients are slow on small feature maps: measured on such a machine, a ResNet-18 training
step at 32 px took 4-5x longer, mostly because a 3x3 convolution's input gradient on a 1x1 map took 225 ms
against oneDNN's 4.4 ms (bench/determinism_bench.py measures whole jobs). So oneDNN is on unless the run asks
for op determinism: oneDNN's filter gradients are not repeatable bit for bit (two seeded RetinaNet runs
differed in the class head's kernels after one step), TensorFlow's are. A user's TF_ENABLE_ONEDNN_OPTS wins.
"""

import os

from core.seeds import wants_deterministic_ops

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
_FLAGS = ("seed", "deterministic_ops")


def _from_flag_file(path: str) -> list[str]:
    try:
        with open(path) as handle:
            return [line.strip() for line in handle if line.strip().startswith("-")]
    except OSError:
        return []  # absl reports the unreadable --flagfile itself, in its own words


def flag_values(argv: list[str], hyperparameters: dict | None = None) -> dict[str, str]:
    """--seed and --deterministic_ops as the command line gives them (--x=v, --x v, in a --flagfile, or among
    a platform's `hyperparameters`, e.g. SageMaker's under `train`); the last one given wins, as in absl."""
    values = {name: hyperparameters[name] for name in _FLAGS if name in (hyperparameters or {})}
    for at, arg in enumerate(argv):
        name, equals, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            continue
        if name == "flagfile" and equals:
            values.update(flag_values(_from_flag_file(value)))
        elif name in _FLAGS:
            if not equals:
                value = argv[at + 1] if at + 1 < len(argv) else ""
            values[name] = value
    return values


def onednn_wanted(argv: list[str], hyperparameters: dict | None = None) -> bool:
    """oneDNN, unless this command line (or the platform's hyperparameters) asks for op determinism."""
    values = flag_values(argv, hyperparameters)
    seed_given = values.get("seed", "").strip() != ""
    return not wants_deterministic_ops(seed_given, values.get("deterministic_ops", "auto").strip().lower())


def choose(argv: list[str], hyperparameters: dict | None = None) -> None:
    """Sets TF_ENABLE_ONEDNN_OPTS for this process and its children, unless the user has. `tune` trains nothing
    itself: each trial process chooses from its own flags."""
    if argv and argv[0] == "tune":
        return
    os.environ.setdefault(ONEDNN_VARIABLE, "1" if onednn_wanted(argv, hyperparameters) else "0")
