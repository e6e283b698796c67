"""AutoAugment detection policy v0: boxes follow the pixels, colour operations match Pillow's, and the policy
runs inside tf.data on real photos and through a real (short) training job."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

import entrypoint
from data.example_codec import detection_example
from data.sample_data import encode
from dataloaders import detection_autoaugment as aa
from dataloaders.image_ops import SeedStream

HEIGHT, WIDTH = 96, 128
BOX = np.array([[0.25, 0.3, 0.6, 0.55]], np.float32)  # ymin, xmin, ymax, xmax


def _white_rectangle():
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    ymin, xmin, ymax, xmax = (BOX[0] * [HEIGHT, WIDTH, HEIGHT, WIDTH]).astype(int)
    image[ymin:ymax, xmin:xmax] = 255.0
    return tf.constant(image)


def _bright_pixels_box(image):
    ys, xs = np.nonzero(image.numpy()[..., 0] > 200)
    return np.array([ys.min() / HEIGHT, xs.min() / WIDTH, (ys.max() + 1) / HEIGHT, (xs.max() + 1) / WIDTH])


def _iou(a, b):
    inter = np.prod(np.maximum(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@pytest.mark.parametrize("operation", [
    lambda img, b: aa.translate_x(img, b, 20.0), lambda img, b: aa.translate_x(img, b, -31.0),
    lambda img, b: aa.shear(img, b, 0.25, horizontal=True), lambda img, b: aa.shear(img, b, -0.3, horizontal=False),
    lambda img, b: aa.rotate(img, b, 20.0), lambda img, b: aa.rotate(img, b, -30.0),
], ids=["translate+20", "translate-31", "shear_x", "shear_y", "rotate+20", "rotate-30"])
def test_geometric_operations_move_the_box_with_the_pixels(operation):
    image, boxes = operation(_white_rectangle(), tf.constant(BOX))
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert _iou(boxes.numpy()[0], _bright_pixels_box(image)) > 0.85, (boxes.numpy(), _bright_pixels_box(image))


def test_rotation_is_counter_clockwise_and_uncovered_pixels_are_grey():
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    image[:, WIDTH // 2 + 10:] = 255.0  # bright right side
    rotated, _ = aa.rotate(tf.constant(image), tf.zeros([0, 4]), 90.0)
    # Counter-clockwise on screen: the bright right side ends up at the top.
    assert rotated.numpy()[:HEIGHT // 2 - 12, WIDTH // 2, 0].mean() > 200
    assert rotated.numpy()[HEIGHT // 2 + 12:, WIDTH // 2, 0].mean() < 50
    assert np.isclose(rotated.numpy()[0, 0], aa.FILL).all(), "corners a rotation uncovers are grey"


def test_a_box_pushed_out_of_the_image_loses_its_area():
    _, boxes = aa.translate_x(_white_rectangle(), tf.constant(BOX), float(WIDTH))
    ymin, xmin, ymax, xmax = boxes.numpy()[0]
    assert (xmax - xmin) * WIDTH < 1.0


def _photo():
    from skimage import data as skimage_data

    return np.asarray(Image.fromarray(skimage_data.chelsea()).resize((WIDTH, HEIGHT)))


def test_equalize_matches_pillow():
    photo = _photo()
    ours = aa.equalize(tf.constant(photo, tf.float32)).numpy()
    pillow = np.asarray(ImageOps.equalize(Image.fromarray(photo)), np.float32)
    assert np.abs(ours - pillow).max() <= 1.0


@pytest.mark.parametrize("factor", [0.0, 0.3, 1.0, 1.7])
def test_colour_and_sharpness_match_pillows_enhancers(factor):
    """Upstream's Color and Sharpness are PIL's ImageEnhance; ours differ only by PIL's rounding to uint8
    (and its integer grey weights): within 1.5 levels, 0.5 on average."""
    photo = _photo()
    for ours, enhancer in ((aa.color, ImageEnhance.Color), (aa.sharpness, ImageEnhance.Sharpness)):
        result = ours(tf.constant(photo, tf.float32), factor).numpy()
        pillow = np.asarray(enhancer(Image.fromarray(photo)).enhance(factor), np.float32)
        difference = np.abs(result - pillow)
        assert difference.max() <= 1.5 and difference.mean() <= 0.5, (ours.__name__, factor, difference.max())
    gray = aa.color(tf.constant(photo, tf.float32), 0.0).numpy()
    assert np.abs(gray[..., 0] - gray[..., 2]).max() < 1e-3


def test_cutout_greys_one_square_and_nothing_else():
    photo = _photo().astype(np.float32)
    for half_side in (5, 12):
        result = aa.cutout(tf.constant(photo), half_side, SeedStream(tf.constant([3, half_side], tf.int64))).numpy()
        changed = np.any(result != photo, axis=-1)
        grey = np.all(np.isclose(result, aa.FILL), axis=-1)
        assert (changed <= grey).all(), "every changed pixel is grey"
        rows, cols = np.flatnonzero(grey.any(axis=1)), np.flatnonzero(grey.any(axis=0))
        # A square of side 2*half_side - 1 around its centre, cut only by the image's border.
        assert rows[-1] - rows[0] + 1 <= 2 * half_side - 1 and cols[-1] - cols[0] + 1 <= 2 * half_side - 1
        assert grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert grey.sum() >= half_side * half_side, "at least a quarter of the square is inside the image"


def test_translate_inside_boxes_leaves_the_rest_alone():
    photo = tf.constant(_photo(), tf.float32)
    shifted = aa.translate_y_only_boxes(photo, tf.constant(BOX), 10.0, probability=1.0,
                                        draws=SeedStream(tf.constant([0, 0], tf.int64))).numpy()
    ymin, xmin, ymax, xmax = np.round(BOX[0] * [HEIGHT, WIDTH, HEIGHT, WIDTH]).astype(int)
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[ymin:ymax, xmin:xmax] = False
    np.testing.assert_array_equal(shifted[outside], photo.numpy()[outside])
    np.testing.assert_allclose(shifted[ymin + 10:ymax, xmin:xmax], photo.numpy()[ymin:ymax - 10, xmin:xmax], atol=1e-3)
    assert np.isclose(shifted[ymin:ymin + 10, xmin:xmax], aa.FILL).all()


def test_the_policy_runs_in_tf_data_and_keeps_one_box_per_input_box():
    photo = _photo()
    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95]], np.float32)
    dataset = tf.data.Dataset.from_tensors((photo, boxes)).repeat(40).enumerate().map(
        lambda n, example: aa.distort(*example, SeedStream(tf.stack([tf.constant(5, tf.int64), n]))))
    changed = 0
    for image, out_boxes in dataset:
        assert image.shape == photo.shape and out_boxes.shape == (2, 4)
        assert ((out_boxes.numpy() >= 0) & (out_boxes.numpy() <= 1)).all()
        changed += not np.allclose(image.numpy(), photo)
    assert changed >= 20, "nearly every sub-policy changes the image"


def test_training_with_auto_augmentation(tmp_path, capsys):
    photo = _photo()
    record = detection_example(encode(photo, "JPEG"), [[0.2, 0.2, 0.7, 0.6]], [1], height=HEIGHT, width=WIDTH,
                               image_format="JPEG").SerializeToString()
    path = str(tmp_path / "data.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(4):
            writer.write(record)
    code = entrypoint.main([f"--training_data_path={path}", f"--validation_data_path={path}",
                            f"--job-dir={tmp_path / 'job'}", "--num_classes=2", "--max_steps=3", "--train_batch_size=2",
                            "--image_size=64,64", "--resnet_depth=18", "--fpn_max_level=5", "--auto_augmentation=true"])
    assert code == 0, capsys.readouterr().err[-2000:]
    assert (tmp_path / "job" / "model" / "saved_model.pb").exists()
