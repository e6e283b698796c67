"""dataloaders/image_ops.py (the one decode/crop/resize of training and serving) and data/image_sources.py (the
converter's and the class-folder input's listing of images), on real photos."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import image_sources
from dataloaders import image_ops


def _photo(height=60, width=100) -> np.ndarray:
    from skimage import data as skimage_data

    return np.asarray(Image.fromarray(skimage_data.astronaut()).resize((width, height)))


def _encoded(array: np.ndarray, image_format: str, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=image_format)
    return buffer.getvalue()


def test_grey_and_rgba_images_decode_to_rgb():
    photo = _photo()
    grey = image_ops.decode_rgb(_encoded(photo[..., 0], "PNG")).numpy()
    assert grey.shape == (60, 100, 3) and (grey[..., 0] == grey[..., 2]).all()
    np.testing.assert_array_equal(grey[..., 1], photo[..., 0])
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(image_ops.decode_rgb(_encoded(rgba, "PNG")).numpy(), photo)


def test_the_evaluation_view_is_the_centre_crop_of_the_shorter_side():
    photo = _photo()
    view = image_ops.preprocess_for_eval(_encoded(photo, "PNG"), 26).numpy()
    assert view.shape == (26, 26, 3) and view.dtype == np.float32 and 0 <= view.min() and view.max() <= 255
    crop = int(60 * image_ops.EVAL_CENTER_CROP_FRACTION)  # 52 of the 60 rows, centred: 26 px is exactly half
    top, left = (60 - crop) // 2, (100 - crop) // 2
    expected = photo[top:top + crop, left:left + crop].reshape(26, 2, 26, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(view, expected, atol=1.0)


def test_training_crops_cover_at_least_8_percent_and_keep_the_size():
    photo = tf.constant(_photo())
    for index in range(10):
        crop = image_ops.random_crop_and_resize(photo, 32, tf.constant([0, index], tf.int64))
        assert crop.shape == (32, 32, 3) and 0 <= float(tf.reduce_min(crop)) and float(tf.reduce_max(crop)) <= 255


def test_crop_min_area_one_trains_on_the_whole_image_flipped_or_not():
    photo = tf.constant(_photo()[:, :80])  # 60 x 80: a 4/3 aspect, inside the crops' range
    whole = image_ops.random_crop_and_resize(photo, 32, tf.constant([0, 0], tf.int64), area_range=(1.0, 1.0)).numpy()
    for index in range(6):
        view = image_ops.augment_for_train(photo, 32, tf.constant([3, index], tf.int64), crop_min_area=1.0).numpy()
        assert np.array_equal(view, whole) or np.array_equal(view, whole[:, ::-1])
    smaller = image_ops.augment_for_train(photo, 32, tf.constant([3, 0], tf.int64), crop_min_area=0.08).numpy()
    assert not (np.array_equal(smaller, whole) or np.array_equal(smaller, whole[:, ::-1]))


def test_training_views_are_a_function_of_the_seed_alone():
    """The same seed gives the same crop and flip (in any thread, in any run); other seeds give other views."""
    photo = tf.constant(_photo())
    views = [image_ops.augment_for_train(photo, 32, tf.constant([7, index], tf.int64)).numpy() for index in range(6)]
    again = image_ops.augment_for_train(photo, 32, tf.constant([7, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(views[0], again)
    assert len({view.tobytes() for view in views}) == 6, "each seed its own view"
    # In a parallel map, each element's view depends on its seed only, not on the order the threads run.
    seeds = tf.constant([[7, index] for index in range(6)], tf.int64)
    mapped = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda seed: image_ops.augment_for_train(photo, 32, seed), num_parallel_calls=4, deterministic=False)
    assert sorted(view.numpy().tobytes() for view in mapped) == sorted(view.tobytes() for view in views)


def test_detection_fit_keeps_the_aspect_ratio_and_pads_with_the_mean():
    photo = _photo()  # 60 x 100 into 30 x 60: halved to 30 x 50 (the width would allow 0.6)
    image, scaled = image_ops.fit_and_pad(_encoded(photo, "PNG"), (30, 60), (32, 64))
    assert scaled.numpy().tolist() == [30.0, 50.0] and image.shape == (32, 64, 3)
    mean = np.asarray(image_ops.IMAGENET_MEAN_RGB, np.float32)
    np.testing.assert_allclose(image.numpy()[30:], np.broadcast_to(mean, (2, 64, 3)), atol=1e-3)
    np.testing.assert_allclose(image.numpy()[:30, 50:], np.broadcast_to(mean, (30, 14, 3)), atol=1e-3)
    halved = photo.astype(np.float32).reshape(30, 2, 50, 2, 3).mean(axis=(1, 3))  # bilinear at exactly 1/2
    np.testing.assert_allclose(image.numpy()[:30, :50], halved, atol=1e-3)


@pytest.fixture()
def class_tree(tmp_path):
    photo = _photo()
    for label in ("cat", "dog"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "tree" / label / f"{i:02d}.jpg").write_bytes(_encoded(photo, "JPEG"))
    (tmp_path / "tree" / "dog" / "notes.txt").write_text("not an image")
    return tmp_path / "tree"


def test_class_folder_trees_are_told_from_other_paths(class_tree, tmp_path):
    assert image_sources.is_class_folder_tree(str(class_tree))
    assert not image_sources.is_class_folder_tree(str(class_tree / "cat"))  # images, but no class sub-folders
    assert not image_sources.is_class_folder_tree(f"{class_tree}/*")  # a glob is never a tree
    assert not image_sources.is_class_folder_tree(str(tmp_path / "missing"))
    (tmp_path / "records" / "shards").mkdir(parents=True)
    (tmp_path / "records" / "shards" / "train-00000-of-00001").write_bytes(b"")
    assert not image_sources.is_class_folder_tree(str(tmp_path / "records"))


def test_the_class_folder_split_is_seeded_stable_and_skips_other_files(class_tree):
    items = image_sources.read_class_folders(str(class_tree), 0.25, seed=7)
    assert len(items) == 40 and {item.label for item in items} == {"cat", "dog"}
    assert image_sources.derive_labels(items) == ["cat", "dog"]
    validation = {item.path for item in items if item.split == "validation"}
    assert 3 <= len(validation) <= 18, "about a quarter held out"
    assert validation == {i.path for i in image_sources.read_class_folders(str(class_tree), 0.25, 7)
                          if i.split == "validation"}
    assert validation != {i.path for i in image_sources.read_class_folders(str(class_tree), 0.25, 8)
                          if i.split == "validation"}
    with pytest.raises(image_sources.SourceError, match="has no class sub-folders"):
        image_sources.read_class_folders(str(class_tree / "cat"), 0.25, 7)


def test_csv_lines_keep_their_origin_and_malformed_ones_travel_as_problems(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text('a.jpg,cat\n\n"b, with comma.jpg",dog\nonly_a_path.jpg\n/abs/c.jpg,cat\n')
    items = image_sources.read_classification_csv(str(listing), "train")
    assert [(item.path, item.label, item.origin) for item in items[:2]] == [
        (str(tmp_path / "a.jpg"), "cat", f"{listing}:1"), (str(tmp_path / "b, with comma.jpg"), "dog", f"{listing}:3")]
    assert items[2].problem == ("malformed_line", "expected 'image_path,label', got 1 field(s)")
    assert items[3].path == "/abs/c.jpg"


def test_box_csv_groups_rows_per_image_and_lists_negatives(tmp_path):
    listing = tmp_path / "boxes.csv"
    listing.write_text("a.jpg,cat,0.1,0.2,0.5,0.6\na.jpg,dog,0.3,0.3,0.9,0.8\nneg.jpg,,,,,\nbad.jpg,cat,x,0,1,1\n")
    items = {item.path.rsplit("/", 1)[1]: item for item in image_sources.read_boxes_csv(str(listing), "train", False)}
    assert [(o.label, o.box) for o in items["a.jpg"].objects] == [("cat", (0.2, 0.1, 0.6, 0.5)),
                                                                 ("dog", (0.3, 0.3, 0.8, 0.9))]
    assert items["neg.jpg"].objects == () and items["neg.jpg"].problem is None
    assert items["bad.jpg"].problem[0] == "malformed_line" and "not numbers" in items["bad.jpg"].problem[1]


def test_coco_category_ids_are_the_labels_with_gaps_named(tmp_path):
    annotations = {"images": [{"id": 5, "file_name": "a.jpg", "height": 10, "width": 20}],
                   "annotations": [{"image_id": 5, "category_id": 3, "bbox": [2, 1, 4, 5], "iscrowd": 1}],
                   "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    (tmp_path / "instances.json").write_text(json.dumps(annotations))
    items, categories = image_sources.read_coco(str(tmp_path / "instances.json"), str(tmp_path / "images"), "train")
    assert image_sources.coco_labels(categories) == ["person", "unused_2", "car"]
    (item,) = items
    assert item.source_id == "5" and item.pixels and item.objects[0].label == "car"
    assert item.objects[0].box == (1, 2, 6, 6) and item.objects[0].is_crowd == 1
