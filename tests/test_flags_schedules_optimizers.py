"""Flag parsing, routing, learning-rate schedules, the optimizer's choice and optimizer-argument mapping."""

import logging
import os
import re

import keras
import numpy as np
import pytest

import entrypoint
from algorithms import registry
from algorithms.runtime.config import ScheduleConfig
from algorithms.runtime.optimizers import build_optimizer, parse_optimizer_config
from algorithms.runtime.schedules import WarmupDecaySchedule
from core.errors import UserInputError
from tests.conftest import REPO

SEED_COMMAND = ["--training_data_path={train}", "--validation_data_path={validation}", "--job-dir=/tmp/out",
                "--max_steps=30000", "--train_batch_size=128", "--num_classes=10", "--num_eval_images=100",
                "--initial_learning_rate=0.128", "--warmup_steps=1000", "--model_type='efficientnet-b4'"]


def test_the_guides_classification_command_line_parses(digits):
    """The gcloud `-- --flag=value` part of Google's guide (seeds/000), with local paths."""
    args = [a.format(**digits) for a in SEED_COMMAND]
    config = registry.parse_job_config(args)
    assert config.task == "classification"
    assert (config.job_dir, config.max_steps, config.train_batch_size, config.num_eval_images) == ("/tmp/out", 30000, 128, 100)
    assert config.task_params.model_type == "efficientnet-b4"
    assert config.task_params.image_size == 380  # native EfficientNet-B4 resolution
    assert config.schedule.initial_learning_rate == 0.128 and config.schedule.warmup_steps == 1000


def test_job_dir_spellings_and_unknown_arguments(digits, caplog):
    base = [f"--training_data_path={digits['train']}", f"--validation_data_path={digits['validation']}",
            "--num_classes=10", "--max_steps=5"]
    assert registry.parse_job_config([*base, "--job_dir=/a"]).job_dir == "/a"
    assert registry.parse_job_config([*base, "--job-dir=/b"]).job_dir == "/b"
    # A typo would leave the default in place and train another job than the one asked for: refused.
    with pytest.raises(UserInputError, match=r"^unknown flag --train_batch_sze \(did you mean --train_batch_size\?\); "
                                             r"`entrypoint.py --help` lists the flags$"):
        registry.parse_job_config([*base, "--job-dir=/b", "--train_batch_sze=64"])
    with pytest.raises(UserInputError, match=r"^unknown flag --some_tuner_flag; "):
        registry.parse_job_config([*base, "--job-dir=/b", "--some_tuner_flag=1"])
    with pytest.raises(UserInputError, match=r"^unexpected argument 'sixty-four': every setting is a flag"):
        registry.parse_job_config([*base, "--job-dir=/b", "--train_batch_size", "64", "sixty-four"])
    with pytest.raises(UserInputError, match=r"^--model_type='resnet18' is not a classifier backbone \(did you mean "
                                             r"resnet-18\?\); use one of resnet-18, resnet-34, "):
        registry.parse_job_config([*base, "--job-dir=/b", "--model_type=resnet18"])


def test_an_optimizer_without_a_default_rate_for_the_task_asks_for_one(digit_detection):
    """Detection's recipe scales momentum's rate only: rmsprop there once died on a KeyError."""
    base = [f"--training_data_path={digit_detection['train']}", f"--validation_data_path={digit_detection['validation']}",
            "--num_classes=3", "--max_steps=5", "--job-dir=/tmp/out"]
    with pytest.raises(UserInputError, match=r"^--optimizer_type=rmsprop has no default learning rate for object "
                                             r"detection; give --initial_learning_rate$"):
        registry.parse_job_config([*base, "--optimizer_type=rmsprop"])
    config = registry.parse_job_config([*base, "--optimizer_type=rmsprop", "--initial_learning_rate=0.004"])
    assert config.schedule.initial_learning_rate == 0.004
    assert registry.parse_job_config([*base, "--optimizer_type=adam"]).schedule.initial_learning_rate == 0.001


@pytest.mark.parametrize("flag, message", [
    ("--train_batch_size=0", "--train_batch_size=0 must be at least 1"),
    ("--num_eval_images=-1", "--num_eval_images=-1 must be >= 0 (0 = all validation images)"),
    ("--seed=-1", "--seed=-1 must be in 0..2147483647"),
    ("--max_bad_image_fraction=2", "--max_bad_image_fraction=2.0 must be in [0, 1]"),
    ("--label_smoothing=1", "--label_smoothing=1.0 must be in [0, 1)"),
    ("--validation_split_ratio=1", "--validation_split_ratio=1.0 must be in (0, 1)"),
    ("--fine_tune_learning_rate=0", "--fine_tune_learning_rate=0.0 must be > 0"),
    ("--nms_iou_threshold=0", "--nms_iou_threshold=0.0 must be in (0, 1]"),
    ("--focal_loss_gamma=-1", "--focal_loss_gamma=-1.0 must be >= 0"),
])
def test_numeric_flags_are_checked_against_their_ranges_in_one_place(digits, digit_detection, flag, message):
    """Shared and task flags alike, from one table each (runtime/flags.SHARED_RANGES, the spec's flag_ranges)."""
    data = digit_detection if flag.startswith(("--nms", "--focal")) else digits
    base = [f"--training_data_path={data['train']}", f"--validation_data_path={data['validation']}",
            "--num_classes=3", "--max_steps=5", "--job-dir=/tmp/out"]
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        registry.parse_job_config([*base, flag])


def test_routing_decisions(digits):
    assert registry.choose_task("classification", {"num_classes"}, None)[0] == "classification"
    with pytest.raises(UserInputError, match="--fpn_type is a flag of object detection, but this job is image "
                                             r"classification \(--task\)"):
        registry.choose_task("classification", {"fpn_type"}, None)
    assert registry.choose_task(None, {"fpn_type", "num_classes"}, None)[0] == "detection"
    assert registry.choose_task(None, {"num_classes"}, digits["train"])[0] == "classification"


def test_help_documents_every_flag(capsys):
    assert entrypoint.main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("training_data_path", "validation_data_path", "job_dir", "num_classes", "max_steps",
                 "train_batch_size", "num_eval_images", "learning_rate_decay_type", "warmup_learning_rate",
                 "warmup_steps", "initial_learning_rate", "stepwise_learning_rate_steps",
                 "stepwise_learning_rate_levels", "optimizer_type", "optimizer_arguments", "image_size",
                 "model_type", "label_smoothing", "weight_decay", "pretrained_checkpoint_path", "eval_batch_size",
                 "decay_steps", "task", "epochs", "data_dir", "model_dir", "train_steps", "num_label_classes",
                 "export_dir"):
        assert f"--{flag}" in text


def _schedule(**overrides):
    values = dict(decay_type="cosine", initial_learning_rate=0.1, warmup_learning_rate=0.0, warmup_steps=10,
                  decay_steps=90, exponential_decay_rate=0.97)
    values.update(overrides)
    return WarmupDecaySchedule(ScheduleConfig(**values))


def test_warmup_then_cosine():
    schedule = _schedule(warmup_learning_rate=0.01)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(5)) == pytest.approx(0.055)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(55)) == pytest.approx(0.05)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-8)
    assert float(schedule(500)) == pytest.approx(0.0, abs=1e-8)


def test_stepwise_and_exponential():
    stepwise = _schedule(decay_type="stepwise", warmup_steps=0, stepwise_boundaries=(60, 80),
                         stepwise_levels=(0.01, 0.001))
    assert [round(float(stepwise(s)), 6) for s in (0, 59, 60, 79, 80, 1000)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    exponential = _schedule(decay_type="exponential", warmup_steps=0, decay_steps=10)
    assert float(exponential(20)) == pytest.approx(0.1 * 0.97 ** 2)


def test_stepwise_needs_matching_lists(digits):
    with pytest.raises(UserInputError, match="same number of values"):
        registry.parse_job_config([f"--training_data_path={digits['train']}", "--num_classes=3", "--max_steps=9",
                                   "--learning_rate_decay_type=stepwise", "--stepwise_learning_rate_steps=3,6",
                                   "--stepwise_learning_rate_levels=0.1"])


@pytest.mark.parametrize("kind,arguments,expected_class,expected", [
    ("momentum", "momentum=0.8,use_nesterov=true", keras.optimizers.SGD, {"momentum": 0.8, "nesterov": True}),
    ("adam", "beta1=0.8,beta2=0.99,epsilon=1e-6", keras.optimizers.Adam, {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}),
    ("rmsprop", "decay=0.9,momentum=0.1,epsilon=1e-10", keras.optimizers.RMSprop, {"rho": 0.9, "momentum": 0.1, "epsilon": 1e-10}),
    ("adadelta", "rho=0.9", keras.optimizers.Adadelta, {"rho": 0.9}),
    ("adagrad", "initial_accumulator_value=0.2", keras.optimizers.Adagrad, {"initial_accumulator_value": 0.2}),
])
def test_tf1_optimizer_arguments_map_to_keras(kind, arguments, expected_class, expected):
    optimizer = build_optimizer(parse_optimizer_config(kind, arguments), 0.01)
    assert isinstance(optimizer, expected_class)
    config = optimizer.get_config()
    for name, value in expected.items():
        assert config[name] == pytest.approx(value)


def _optimizer_of(args, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO):
        config = registry.parse_job_config(args)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("optimizer: ")]
    built = build_optimizer(config.optimizer, config.schedule.initial_learning_rate)
    return config, built, line


def test_the_optimizer_is_chosen_from_the_run_and_the_choice_is_logged(digits, caplog):
    """--optimizer_type unset (auto): Adam at a fixed rate for a short run, momentum at the batch-scaled rate for a
    long one; the job says which and why in one line."""
    args = [f"--training_data_path={digits['train']}", "--num_classes=3", "--train_batch_size=64"]
    short, built, line = _optimizer_of([*args, "--max_steps=300"], caplog)
    assert (short.optimizer.optimizer_type, type(built)) == ("adam", keras.optimizers.Adam)
    assert short.schedule.initial_learning_rate == pytest.approx(0.001) and short.schedule.warmup_steps == 15
    assert line == ("optimizer: adam, peak learning rate 0.001 (--optimizer_type=auto chose adam: a short run (300 "
                    "<= 10000 steps): Adam at a fixed rate learns faster than momentum at a rate scaled for large "
                    "batches)")
    long, built, line = _optimizer_of([*args, "--max_steps=20000"], caplog)
    assert (long.optimizer.optimizer_type, type(built)) == ("momentum", keras.optimizers.SGD)
    assert long.schedule.initial_learning_rate == pytest.approx(0.1 * 64 / 256) and built.get_config()["momentum"] == 0.9
    assert line.startswith("optimizer: momentum, peak learning rate 0.025 (--optimizer_type=auto chose momentum: a "
                           "long run (20000 > 10000 steps)")
    # The 10,000th step is still short; auto spelled out is the default.
    assert registry.parse_job_config([*args, "--max_steps=10000", "--optimizer_type=auto"]).optimizer.optimizer_type == "adam"


@pytest.mark.parametrize("flags, expected_type, expected_rate, expected_reason", [
    # Explicit flags win over every automatic choice, in short runs too.
    (["--optimizer_type=momentum"], "momentum", 0.1 * 64 / 256, "--optimizer_type=momentum, learning rate from its default"),
    (["--optimizer_type=adam", "--initial_learning_rate=0.003"], "adam", 0.003, "--optimizer_type=adam, learning rate from --initial_learning_rate"),
    (["--optimizer_type=momentum", "--max_steps=300"], "momentum", 0.1 * 64 / 256, "--optimizer_type=momentum"),
    # The seed command lines' language: a rate or TF1 arguments with no optimizer meant the built-ins' momentum.
    (["--initial_learning_rate=0.128"], "momentum", 0.128, "--optimizer_type=auto chose momentum: --initial_learning_rate set"),
    (["--optimizer_arguments=momentum=0.8,use_nesterov=true"], "momentum", 0.1 * 64 / 256,
     "--optimizer_type=auto chose momentum: --optimizer_arguments set"),
])
def test_explicit_optimizer_flags_override_the_automatic_choice(digits, caplog, flags, expected_type, expected_rate,
                                                                expected_reason):
    args = [f"--training_data_path={digits['train']}", "--num_classes=3", "--train_batch_size=64", "--max_steps=300"]
    config, built, line = _optimizer_of([*args, *flags], caplog)
    assert config.optimizer.optimizer_type == expected_type
    assert config.schedule.initial_learning_rate == pytest.approx(expected_rate)
    assert expected_reason in line
    if "use_nesterov=true" in flags[0]:
        assert built.get_config()["momentum"] == pytest.approx(0.8) and built.get_config()["nesterov"] is True


def test_moving_average_decay_defaults_per_task_and_zero_turns_it_off(digits):
    args = [f"--training_data_path={digits['train']}", "--num_classes=3", "--max_steps=30"]
    assert registry.parse_job_config(args).moving_average_decay == 0.9999
    assert registry.parse_job_config([*args, "--moving_average_decay=0.99"]).moving_average_decay == 0.99
    assert registry.parse_job_config([*args, "--moving_average_decay=0"]).moving_average_decay == 0.0
    with pytest.raises(UserInputError, match=r"^--moving_average_decay=1.0 must be in \[0, 1\) \(0 = off\)$"):
        registry.parse_job_config([*args, "--moving_average_decay=1"])


def test_resnets_have_the_reference_architectures():
    from algorithms.backbones import build_resnet_encoder

    counts = {depth: build_resnet_encoder(depth, (64, 64, 3)).count_params() for depth in (18, 34, 50)}
    assert counts == {18: 11186112, 34: 21301696, 50: 23561152}  # the reference architectures


def _documented_model_types() -> list[str]:
    """The model_type row of the README's flag table, expanded ("efficientnet-b0 … b7" -> eight names)."""
    with open(os.path.join(REPO, "README.md")) as handle:
        row = next(line for line in handle if line.startswith("| `model_type` |"))
    names = []
    for item in row.split("|")[3].split(","):
        parts = re.findall(r"`([^`]+)`", item)
        if "/" in parts[0]:  # resnet-18/34/50/...
            prefix, *depths = parts[0].replace("resnet-", "resnet-/").split("/")
            names += [f"{prefix}{depth}" for depth in depths if depth]
        elif len(parts) == 2:  # `efficientnet-b0` … `b7`
            family, first = parts[0].rsplit("-", 1)
            names += [f"{family}-{first[0]}{i}" for i in range(int(first[1:]), int(parts[1][1:]) + 1)]
        else:
            names += parts
    return names


def test_the_readme_documents_exactly_the_supported_model_types():
    from algorithms.classification.model import MODEL_TYPES

    assert sorted(_documented_model_types()) == sorted(MODEL_TYPES)


@pytest.mark.parametrize("model_type", _documented_model_types())
def test_every_documented_model_type_builds_without_downloads_and_classifies(model_type):
    from algorithms.classification.model import ImageClassifier

    model = ImageClassifier(model_type, 64, 7)
    logits = model(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"))
    assert logits.shape == (2, 7) and np.isfinite(logits.numpy()).all()
    assert model.head.kernel.shape[-1] == 7 and model.backbone.count_params() > 500_000