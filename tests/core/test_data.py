import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from lablib.core.data import CIFAR10_MEAN, balanced_indices, eval_transform, load_data, make_loader, train_transform
from lablib.core.errors import DataError


def _write_tree(root, classes=("cat", "dog"), per_class=3, size=(32, 32), mode="RGB"):
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                color = (label * 100, i * 40, 7) if mode == "RGB" else label * 100 + i
                Image.new(mode, size, color).save(folder / f"{i}.png")
    return root


def test_balanced_indices_are_deterministic_and_balanced():
    targets = np.repeat(np.arange(10), 100)
    first = balanced_indices(targets, 105, seed=3)
    assert np.array_equal(first, balanced_indices(targets, 105, seed=3))
    counts = np.bincount(targets[first], minlength=10)
    assert counts.sum() == 105 and counts.max() - counts.min() == 1
    assert not np.array_equal(first, balanced_indices(targets, 105, seed=4))
    assert len(balanced_indices(targets, 0)) == 1000


def test_transforms_are_the_labs():
    names = [type(t).__name__ for t in train_transform().transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    crop = train_transform().transforms[0]
    assert crop.size == (32, 32) and crop.padding == 4
    assert tuple(train_transform().transforms[3].mean) == CIFAR10_MEAN
    assert [type(t).__name__ for t in eval_transform().transforms] == ["ToTensor", "Normalize"]


def test_image_folder_tree_and_zip_give_the_same_arrays(tmp_path):
    tree = _write_tree(tmp_path / "tree")
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(tree.rglob("*.png")):
            zipped.write(path, "top/" + path.relative_to(tree).as_posix())  # one top-level folder is fine
    from_tree = load_data(str(tree), data_dir=tmp_path / "cache")
    from_zip = load_data(str(archive), data_dir=tmp_path / "cache")
    assert from_tree.classes == from_zip.classes == ["cat", "dog"]
    assert np.array_equal(from_tree.train.data, from_zip.train.data)
    assert from_tree.train.targets == [0, 0, 0, 1, 1, 1]
    image, label = from_zip.test[4]
    assert image.shape == (3, 32, 32) and label == 1


def test_second_load_uses_the_cache_without_decoding(tmp_path, monkeypatch):
    archive = _write_tree(tmp_path / "tree")
    load_data(str(archive), data_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "cache").glob("imagefolder-*"))) == 1
    import lablib.core.data as data_module

    monkeypatch.setattr(data_module, "_decode_split", lambda *a, **k: pytest.fail("decoded again"))
    again = load_data(str(archive), data_dir=tmp_path / "cache")
    assert len(again.train) == 6


def test_grayscale_sources_get_one_channel(tmp_path):
    tree = _write_tree(tmp_path / "digits", classes=("0", "1"), size=(28, 28), mode="L")
    bundle = load_data(str(tree), data_dir=tmp_path / "cache")
    assert bundle.channels == 1 and bundle.train[0][0].shape == (1, 28, 28)


def test_real_cifar_subset(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=500, limit_test=100, seed=0)
    assert len(bundle.train) == 500 and len(bundle.test) == 100
    assert bundle.classes[:3] == ["airplane", "automobile", "bird"]
    assert np.bincount(bundle.train.targets).tolist() == [50] * 10
    assert bundle.fingerprint.startswith("imagefolder-89605e32600a2971")
    image, _ = bundle.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p / "missing.zip", ["does not exist"]),
        (lambda p: (p / "junk.zip").write_bytes(b"not a zip") and p / "junk.zip", ["neither a folder nor a .zip"]),
        (lambda p: (p / "flat").mkdir() or p / "flat", ["no images under train/<class>/"]),
    ],
)
def test_bad_sources_say_what_to_do(tmp_path, make, words):
    with pytest.raises(DataError) as error:
        load_data(str(make(tmp_path)), data_dir=tmp_path / "cache")
    for word in words:
        assert word in str(error.value)


def test_a_corrupt_image_inside_a_zip_is_named(tmp_path):
    archive = tmp_path / "broken.zip"
    good = io.BytesIO()
    Image.new("RGB", (32, 32)).save(good, "PNG")
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("train/cat/0.png", good.getvalue())
        zipped.writestr("train/cat/1.png", b"garbage")
        zipped.writestr("test/cat/0.png", good.getvalue())
    with pytest.raises(DataError, match="train/cat/1.png"):
        load_data(str(archive), data_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "cache").glob("imagefolder-*"))  # nothing half-written


@pytest.mark.parametrize(
    "source, dataset, words",
    [
        ("cifar10", "CIFAR10", ["could not download CIFAR-10", "--data PATH"]),
        ("mnist", "MNIST", ["could not download MNIST", "mnist-png.zip"]),
    ],
)
def test_offline_download_names_the_alternatives(tmp_path, monkeypatch, source, dataset, words):
    import torchvision.datasets

    def offline(*args, **kwargs):
        if kwargs.get("download"):
            raise OSError("network is unreachable")
        raise RuntimeError("Dataset not found or corrupted.")

    monkeypatch.setattr(torchvision.datasets, dataset, offline)
    with pytest.raises(DataError) as error:
        load_data(source, data_dir=tmp_path)
    for word in words:
        assert word in str(error.value)


def test_loader_factory():
    bundle = load_data("fake", limit_train=64, limit_test=16)
    loader = make_loader(bundle.train, 32, 0, torch.device("cpu"), shuffle=True, persistent_workers=True)
    assert loader.pin_memory is False and loader.persistent_workers is False  # CPU; no workers
    images, labels = next(iter(loader))
    assert images.shape == (32, 3, 32, 32) and labels.shape == (32,)


def test_mnist_beside_the_cifar_archive(tmp_path):
    from lablib.report.build import mnist_beside

    (tmp_path / "cifar10-jpg.zip").write_bytes(b"")
    assert mnist_beside(str(tmp_path / "cifar10-jpg.zip")) is None
    (tmp_path / "mnist-png.zip").write_bytes(b"")
    assert mnist_beside(str(tmp_path / "cifar10-jpg.zip")) == str(tmp_path / "mnist-png.zip")
    assert mnist_beside("cifar10") is None and mnist_beside(None) is None
