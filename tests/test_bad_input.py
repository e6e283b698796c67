"""Every kind of bad input gets one clear line naming the file/record/value, exit code 2, and no model."""

import os
import re

import pytest
import tensorflow as tf

import entrypoint
from core.errors import data_error_from_tf_message
from data.example_codec import classification_example
from data.sample_data import digit_images, encode
from dataloaders import classification_input
from dataloaders.record_pipeline import RecordCounters
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


def test_a_few_undecodable_images_are_skipped_counted_and_named(capfd, tmp_path, good_file):
    examples = _good_examples(200)
    examples[5] = classification_example(b"definitely not an image", 3, height=32, width=32, image_format="JPEG")
    data = _write_records(tmp_path / "mostly_good.tfrecord", examples)
    job_dir = tmp_path / "job"
    code = entrypoint.main([f"--training_data_path={good_file}", f"--validation_data_path={data}",
                            f"--job-dir={job_dir}", "--num_classes=10", "--max_steps=1", "--train_steps_per_eval=1",
                            *FAST_FLAGS])
    log = capfd.readouterr().err
    assert code == 0, log[-2000:]
    assert os.path.exists(job_dir / "model" / "saved_model.pb")
    assert "skipped 1 of 200 validation records with undecodable or too large images" in log, log[-2000:]
    assert (f"WARNING: skipped record 5 of {data}: its image bytes cannot be decoded (not a complete JPEG, PNG, GIF "
            "or BMP image)\n") in log, "the log names the record, at the default log level"
    assert "eval_images=199" in log, "the metrics are over the 199 decodable images"


def test_too_many_undecodable_images_fail(capsys, tmp_path, good_file):
    examples = _good_examples(40)
    for i in range(0, 40, 4):
        examples[i] = classification_example(b"\xff\xd8 broken jpeg", 1, height=32, width=32, image_format="JPEG")
    bad = _write_records(tmp_path / "broken.tfrecord", examples)
    code, message = _run(capsys, tmp_path, good_file, bad)
    assert code == 2 and message.startswith("ERROR: 10 of 40 eval records were skipped (undecodable images"), message
    assert "name the first 20 with file and record" in message


def test_a_label_of_the_wrong_type_deep_in_the_data_is_named(capsys, tmp_path, good_file):
    examples = _good_examples(30)
    examples[17] = _raw_example({"image/encoded": examples[0].features.feature["image/encoded"],
                                 "image/class/label": _bytes_feature(b"3")})
    bad = _write_records(tmp_path / "bad.tfrecord", examples)
    code, message = _run(capsys, tmp_path, good_file, bad)
    assert code == 2 and message == (
        f"ERROR: record 17 of {bad} stores 'image/class/label' as a bytes_list; it must be an int64_list (as every "
        "other record and the documented format have it): fix the converter that wrote it"), message


def test_a_cut_validation_shard_fails_the_evaluation_naming_it(capsys, tmp_path, good_file):
    """An interrupted upload: the metric over part of the validation set is not reported as the metric."""
    first = _write_records(tmp_path / "val-00000-of-00002", _good_examples(20))
    cut = _write_records(tmp_path / "val-00001-of-00002", _good_examples(20))
    data = open(cut, "rb").read()
    with open(cut, "wb") as handle:
        handle.write(data[:len(data) // 2])
    code, message = _run(capsys, tmp_path, good_file, str(tmp_path / "val-*"))
    assert code == 2, message
    assert message.startswith(f"ERROR: {cut}: reading stopped after record 8, "), message
    assert message.endswith("bytes unread (about 1 more record(s)): the file ends inside the next record; re-upload "
                            "or re-convert this file (an interrupted copy leaves a cut file)"), message
    assert os.path.getsize(first) > 0


def test_training_fails_when_a_corrupt_shard_loses_more_than_the_allowed_fraction(capsys, tmp_path, good_file):
    corrupt = _write_records(tmp_path / "train-00000-of-00001", _good_examples(40))
    _flip_a_byte_in_record(corrupt, 10)
    code, message = _run(capsys, tmp_path, corrupt, good_file, "--max_steps=8", "--train_steps_per_eval=8")
    assert code == 2 and re.match(r"ERROR: \d+ of \d+ train records were skipped \(", message), message
    skipped, attempted = map(int, re.match(r"ERROR: (\d+) of (\d+)", message).groups())
    assert 0.6 < skipped / attempted < 0.9, "the 30 unreadable records of every pass (of 40) are counted"


def _flip_a_byte_in_record(path, record_index):
    """Flips one byte inside the data of record `record_index` (its CRC no longer matches)."""
    data = bytearray(open(path, "rb").read())
    offset = 0
    for _ in range(record_index):
        offset += 16 + int.from_bytes(data[offset:offset + 8], "little")
    data[offset + 12 + 5] ^= 0xFF
    with open(path, "wb") as handle:
        handle.write(bytes(data))


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


# --- the input pipeline itself, without training: what is skipped, what is named, what stops the job --------
def _pass(files, training=False, batches=None, image_files=None):
    """Runs the classification input over `files`; returns (images seen, (attempted, skipped), error or None)."""
    counters = RecordCounters("test")
    dataset = classification_input.build_dataset(files, training=training, image_size=16, batch_size=4,
                                                 num_classes=10, counters=counters, image_files=image_files)
    seen = 0
    try:
        for step, batch in enumerate(dataset):
            seen += int(tf.reduce_sum(batch[2])) if not training else int(batch[0].shape[0])
            if batches is not None and step + 1 >= batches:
                break
    except tf.errors.InvalidArgumentError as error:
        return seen, counters.read(), data_error_from_tf_message(error.message)
    return seen, counters.read(), None


def _skip_lines(capfd):
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("WARNING: skipped ")]


def test_skipped_records_are_logged_one_by_one_then_at_powers_of_ten(capfd, tmp_path):
    examples = _good_examples(150)
    broken = classification_example(b"\xff\xd8 broken jpeg", 1, height=32, width=32, image_format="JPEG")
    bad = list(range(0, 150, 3)) + [1, 2]  # 52 bad records, several of them in a row
    for i in bad:
        examples[i] = broken
    path = _write_records(tmp_path / "mostly_bad.tfrecord", examples)
    seen, (attempted, skipped), error = _pass([path])
    assert error is None and (seen, attempted, skipped) == (98, 150, 52)
    lines = _skip_lines(capfd)
    assert len(lines) <= 20 and lines[-1].endswith("the summary after each evaluation counts them all)"), lines
    assert lines[0].startswith(f"WARNING: skipped record 0 of {path}: its image bytes cannot be decoded"), lines[0]
    assert "(also skipped: records 1, 2, 3 of their files" in lines[0], "failures in a row are named together"
    named = {int(word) for line in lines for word in line.replace(",", " ").split() if word.isdigit()}
    assert {0, 1, 2, 3, 6, 9}.issubset(named)


def test_a_corrupt_record_in_a_training_shard_skips_the_rest_of_that_file_by_name(capfd, tmp_path):
    path = _write_records(tmp_path / "train-00000-of-00001", _good_examples(40))
    _flip_a_byte_in_record(path, 10)
    seen, (attempted, skipped), error = _pass([path], training=True, batches=40)
    assert error is None and seen == 160, "training carries on with the records it can read"
    lines = _skip_lines(capfd)
    assert lines and lines[0].startswith(f"WARNING: skipped {path}: reading stopped after record 9, "), lines
    assert "the next record's checksum does not match; re-upload or re-convert this file" in lines[0], lines[0]
    estimate = int(re.search(r"about (\d+) more record", lines[0]).group(1))
    assert 28 <= estimate <= 32, lines[0]  # 30 records were not read; their size is estimated from the first 10
    # Each pass over the file skips its unread rest again (logged rate-limited, counted every time).
    assert skipped >= estimate and skipped % estimate == 0 and attempted >= seen + skipped, (attempted, skipped)


def test_a_record_that_is_not_a_tf_example_stops_the_job_naming_it(tmp_path):
    examples = _good_examples(12)
    examples[7] = b"\x0a\xff\xff\xff\xff not a protocol buffer"
    path = _write_records(tmp_path / "mixed.tfrecord", examples)
    _, _, error = _pass([path])
    assert str(error) == (f"record 7 of {path} is not a tf.train.Example (a corrupt or foreign record); every record "
                          "must be a serialized tf.train.Example"), error


def test_an_image_file_in_a_class_folder_that_cannot_be_decoded_is_named(capfd, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(encode(digit_images(32)[0][0], "PNG"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    paths = [str(good)] * 5 + [str(bad)] + [str(good)] * 2
    seen, (attempted, skipped), error = _pass([], image_files=(paths, [1] * len(paths)))
    assert error is None and (seen, attempted, skipped) == (7, 8, 1)
    assert _skip_lines(capfd) == [f"WARNING: skipped record 5 of {bad}: its image bytes cannot be decoded (not a "
                                  "complete JPEG, PNG, GIF or BMP image)"]
