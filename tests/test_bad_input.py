"""Every kind of bad input gets one clear line naming the file/record/value, exit code 2, and no model."""

import os

import pytest
import tensorflow as tf

import entrypoint
from data.example_codec import classification_example
from data.sample_data import digit_images, encode
from tests.conftest import FAST_FLAGS


def _write_records(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example if isinstance(example, bytes) else example.SerializeToString())
    return str(path)


def _good_examples(count, image_format="JPEG"):
    images, labels = digit_images(32)
    return [classification_example(encode(images[i], image_format), int(labels[i]) + 1, height=32, width=32,
                                   image_format=image_format) for i in range(count)]


def _raw_example(features):
    # data.example_codec's Features are wire-identical but not TensorFlow's classes: pass them as bytes.
    features = {key: value if isinstance(value, tf.train.Feature) else tf.train.Feature.FromString(
        value.SerializeToString()) for key, value in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(*values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    return _write_records(tmp_path_factory.mktemp("good") / "good.tfrecord", _good_examples(40))


def _run(capsys, tmp_path, train, validation, *extra):
    job_dir = tmp_path / "job"
    code = entrypoint.main([f"--training_data_path={train}", f"--validation_data_path={validation}",
                            f"--job-dir={job_dir}", "--num_classes=10", "--max_steps=4", "--train_steps_per_eval=4",
                            *FAST_FLAGS, *extra])
    error = capsys.readouterr().err
    error_lines = [line for line in error.splitlines() if line.startswith("ERROR: ")]
    assert not os.path.exists(job_dir / "model"), "no model may be written when the input is bad"
    return code, (error_lines[0] if error_lines else error[-2000:])


def test_empty_glob(capsys, tmp_path, good_file):
    code, message = _run(capsys, tmp_path, str(tmp_path / "nothing-*.tfrecord"), good_file)
    assert code == 2 and "--training_data_path=" in message and "matches no file" in message


def test_directory_instead_of_files(capsys, tmp_path, good_file):
    code, message = _run(capsys, tmp_path, good_file, os.path.dirname(good_file))
    assert code == 2 and "is a directory" in message and "--validation_data_path" in message


def test_file_that_is_not_a_tfrecord(capsys, tmp_path, good_file):
    csv = tmp_path / "train.csv"
    csv.write_text("gs://bucket/a.jpg,daisy\n" * 50)
    code, message = _run(capsys, tmp_path, str(csv), good_file)
    assert code == 2 and str(csv) in message and "not a readable TFRecord" in message


def test_record_missing_image_encoded(capsys, tmp_path, good_file):
    bad = _write_records(tmp_path / "bad.tfrecord", [_raw_example({"image/class/label": _int_feature(3)})])
    code, message = _run(capsys, tmp_path, bad, good_file)
    assert code == 2 and f"record 0 of {bad}" in message and "'image/encoded'" in message


def test_record_missing_label(capsys, tmp_path, good_file):
    bad = _write_records(tmp_path / "bad.tfrecord", [_raw_example({"image/encoded": _bytes_feature(b"x")})])
    code, message = _run(capsys, tmp_path, good_file, bad)
    assert code == 2 and f"record 0 of {bad}" in message and "'image/class/label'" in message


@pytest.mark.parametrize("label", [0, 11])
def test_label_out_of_range_in_first_record(capsys, tmp_path, good_file, label):
    image = _good_examples(1)[0].features.feature["image/encoded"]
    bad = _write_records(tmp_path / "bad.tfrecord", [_raw_example({"image/encoded": image,
                                                                    "image/class/label": _int_feature(label)})])
    code, message = _run(capsys, tmp_path, bad, good_file)
    assert code == 2 and f"record 0 of {bad}" in message and f"[{label}]" in message and "1..10" in message


def test_label_out_of_range_deep_in_the_data(capsys, tmp_path, good_file):
    """Found by the input pipeline itself while training: the message still names the file and record."""
    examples = _good_examples(30)
    image = examples[0].features.feature["image/encoded"]
    examples[17] = _raw_example({"image/encoded": image, "image/class/label": _int_feature(0)})
    bad = _write_records(tmp_path / "bad.tfrecord", examples)
    code, message = _run(capsys, tmp_path, good_file, bad)  # the validation pass reads every record in order
    assert code == 2, message
    assert message == (f"ERROR: record 17 of {bad} has image/class/label=0, outside 1..10: labels are 1-based "
                       "(labels-file line + 1); fix the record or --num_classes")


def test_a_few_undecodable_images_are_skipped_and_counted(capsys, tmp_path, good_file):
    examples = _good_examples(200)
    examples[5] = classification_example(b"definitely not an image", 3, height=32, width=32, image_format="JPEG")
    data = _write_records(tmp_path / "mostly_good.tfrecord", examples)
    job_dir = tmp_path / "job"
    code = entrypoint.main([f"--training_data_path={good_file}", f"--validation_data_path={data}",
                            f"--job-dir={job_dir}", "--num_classes=10", "--max_steps=1", "--train_steps_per_eval=1",
                            *FAST_FLAGS])
    log = capsys.readouterr().err
    assert code == 0, log[-2000:]
    assert os.path.exists(job_dir / "model" / "saved_model.pb")
    assert "skipped 1 of 200 validation records with undecodable images" in log, log[-2000:]
    assert "eval_images=199" in log, "the metrics are over the 199 decodable images"


def test_too_many_undecodable_images_fail(capsys, tmp_path, good_file):
    examples = _good_examples(40)
    for i in range(0, 40, 4):
        examples[i] = classification_example(b"\xff\xd8 broken jpeg", 1, height=32, width=32, image_format="JPEG")
    bad = _write_records(tmp_path / "broken.tfrecord", examples)
    code, message = _run(capsys, tmp_path, good_file, bad)
    assert code == 2 and message.startswith("ERROR: 10 of 40 eval records had undecodable image bytes"), message


def test_num_eval_images_above_validation_size(capsys, tmp_path, good_file):
    code, message = _run(capsys, tmp_path, good_file, good_file, "--num_eval_images=41")
    assert code == 2 and "--num_eval_images=41" in message and "40 records" in message


def test_unknown_model_type(capsys, tmp_path, good_file):
    code, message = _run(capsys, tmp_path, good_file, good_file, "--model_type=resnet-19")
    assert code == 2 and "'resnet-19'" in message and "resnet-18" in message


@pytest.mark.parametrize("arguments,expected", [
    ("momentum", "is malformed"), ("momentum=fast", "is not a number"), ("beta1=0.9", "not an argument of the momentum")])
def test_malformed_optimizer_arguments(capsys, tmp_path, good_file, arguments, expected):
    code, message = _run(capsys, tmp_path, good_file, good_file, "--optimizer_type=momentum",
                         f"--optimizer_arguments={arguments}")
    assert code == 2 and expected in message


@pytest.mark.parametrize("flag", ["--max_steps=abc", "--train_batch_size=3.5", "--initial_learning_rate=fast"])
def test_non_numeric_values(capsys, tmp_path, good_file, flag):
    code, message = _run(capsys, tmp_path, good_file, good_file, flag)
    assert code == 2 and flag.split("=")[0] in message


def test_missing_required_flag(capsys, tmp_path, good_file):
    code = entrypoint.main([f"--training_data_path={good_file}", f"--validation_data_path={good_file}",
                            f"--job-dir={tmp_path}", "--max_steps=3"])
    assert code == 2 and "--num_classes is required" in capsys.readouterr().err


def test_labels_file_with_the_wrong_number_of_names(capsys, tmp_path, good_file):
    labels = tmp_path / "labels.txt"
    labels.write_text("daisy\ndandelion\nroses\n")
    code, message = _run(capsys, tmp_path, good_file, good_file, f"--labels_file={labels}")
    assert code == 2 and "has 3 non-empty lines but --num_classes=10" in message
