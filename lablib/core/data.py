"""Data sources, the lab's transforms, class-balanced subsets and the DataLoader factory.

Three sources behind `load_data(config)`:
1. "cifar10": torchvision's CIFAR10 in `data_dir`, downloaded when allowed.
   "mnist": torchvision's MNIST the same way (the E1 exercises).
2. a path to an image-folder tree or `.zip` laid out as train/<class>/... and
   test/<class>/... (Kaggle's CIFAR-10 layout; also MNIST as PNG). The images
   are decoded once into uint8 arrays and cached on disk under a key made from
   the archive's content, so a second run does not decode again and each item
   then costs what torchvision's in-memory CIFAR10 costs (PIL image from an
   array row, then the transforms).
3. "fake": torchvision's FakeData, for unit tests only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from lablib.core.errors import DataError
from lablib.core.paths import data_root
from lablib.core.runs import shared_mode

# LAB_SPEC "Common setup": CIFAR-10 channel statistics used by Normalize.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
# The usual MNIST statistics, for grayscale sources (E1).
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp")
CACHE_VERSION = 2  # bump when the cache layout changes (2: meta.json holds a content hash per array)
# Sources named rather than given as a path, with their fixed fingerprints.
NAMED_SOURCES = {"cifar10": "torchvision-cifar10-python", "mnist": "torchvision-mnist", "fake": "fake"}


def default_data_dir() -> Path:
    """<repo>/data, or $LABLIB_DATA_DIR when set (git-ignored either way)."""
    return data_root()


def train_transform(channels: int = 3):
    """LAB_SPEC training transforms, in order; grayscale sources get ToTensor + Normalize."""
    from torchvision import transforms as T

    if channels == 1:
        return T.Compose([T.ToTensor(), T.Normalize(MNIST_MEAN, MNIST_STD)])
    return T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(p=0.5),
            T.ToTensor(),
            T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )


def eval_transform(channels: int = 3):
    from torchvision import transforms as T

    if channels == 1:
        return T.Compose([T.ToTensor(), T.Normalize(MNIST_MEAN, MNIST_STD)])
    return T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


class ArrayImageDataset(Dataset):
    """Images held as a uint8 array (N x H x W x C, or N x H x W for grayscale).

    __getitem__ does what torchvision's CIFAR10 does: a PIL image from the
    array row, then the transform.
    """

    def __init__(
        self, images: np.ndarray, targets: Sequence[int], classes: Sequence[str], transform: Callable | None = None
    ):
        self.data = images
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


@dataclass
class DataBundle:
    """The train and test datasets of one source, with what describes them."""

    train: Dataset
    test: Dataset
    classes: list[str]
    channels: int  # 3 for CIFAR-10, 1 for MNIST
    source: str  # what the user asked for
    fingerprint: str  # content key of the source (same data -> same fingerprint)

    @property
    def image_size(self) -> int:
        """The side of the (square) images in pixels: 32 for CIFAR-10, 28 for MNIST."""
        dataset = self.train
        while isinstance(dataset, Subset):
            dataset = dataset.dataset
        data = getattr(dataset, "data", None)
        if isinstance(data, np.ndarray) and data.ndim >= 3:
            return int(data.shape[1])  # N x H x W (x C)
        if hasattr(data, "shape") and len(data.shape) >= 3:  # torchvision's MNIST keeps a tensor
            return int(data.shape[1])
        return int(self.train[0][0].shape[-1])  # e.g. FakeData: one transformed image

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "train_images": len(self.train),
            "test_images": len(self.test),
            "classes": len(self.classes),
            "channels": self.channels,
            "image_size": self.image_size,
        }


@dataclass(frozen=True)
class DataKind:
    """What a section's data must be: the images' channels and side, and the number of classes."""

    name: str  # in words, for messages: "CIFAR-10-like colour images"
    channels: int
    size: int
    classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.classes)


COLOUR_32 = DataKind("CIFAR-10-like colour images (3 x 32 x 32, 10 classes)", 3, 32, 10)
DIGITS_28 = DataKind("MNIST-like grey digits (1 x 28 x 28, 10 classes)", 1, 28, 10)
NAMED_SHAPES = {"cifar10": COLOUR_32.shape, "mnist": DIGITS_28.shape, "fake": COLOUR_32.shape}


def require_kind(data: DataBundle | str, kinds: Sequence[DataKind], what: str = "this section") -> None:
    """Raise DataError unless the data is one of `kinds`: a wrong data set never changes the experiment silently.

    `data` is a loaded bundle, or a source, read without decoding it (source_shape), so a section refuses
    the wrong data before anything trains; a source that cannot be read passes here: loading it says why."""
    if isinstance(data, str):
        shape, source = source_shape(data), data
        if shape is None:
            return
    else:
        shape, source = (data.channels, data.image_size, len(data.classes)), data.source
    if any(kind.shape == shape for kind in kinds):
        return
    channels, side, classes = shape
    found = f"{channels} x {side} x {side}, {classes} classes"
    wanted = " or ".join(kind.name for kind in kinds)
    raise DataError(
        f"data={source!r} holds {found}, but {what} needs {wanted}; pass the CIFAR-10 images "
        "(data=cifar10 or the image archive) - MNIST belongs to E1 only."
        if COLOUR_32 in kinds and DIGITS_28 not in kinds
        else f"data={source!r} holds {found}, but {what} needs {wanted}."
    )


def source_shape(data: str) -> tuple[int, int, int] | None:
    """(channels, image side, classes) of a source without decoding it: a named source's, else the class folders
    and the first training image of a folder or .zip; None when it cannot be read (loading it says why)."""
    return _known_or_read(data, NAMED_SHAPES, _read_shape, None)


def _known_or_read(data: str, named: Mapping[str, Any], read: Callable[[str, int, int], Any], unknown: Any) -> Any:
    """A named source's entry of `named`, else `read` of the path, its size and its mtime (`read` caches on all
    three, so a changed folder or archive is read again); `unknown` when there is nothing at the path."""
    if data in named:
        return named[data]
    path = Path(data).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return unknown
    return read(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_shape(data: str, size: int, mtime_ns: int) -> tuple[int, int, int] | None:
    """source_shape of a path, once per (path, size, mtime)."""
    path = Path(data)
    try:
        names, read, close = _list_members(path)
    except (DataError, OSError):
        return None
    try:
        by_class = _split_members(names, path)["train"]
        first = sorted(by_class[sorted(by_class)[0]])[0]
        with Image.open(io.BytesIO(read(first))) as image:  # as _decode_split reads every image
            channels = 1 if image.mode in ("L", "1", "I", "I;16") else 3
            side = image.size[1]
    except Exception:  # a damaged archive or image: loading the source names it
        return None
    finally:
        close()
    return channels, side, len(by_class)


# --- subsets -----------------------------------------------------------------


def balanced_indices(targets: Sequence[int], limit: int, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic, class-balanced subset of `limit` items (0 = all).

    Each class gives limit // classes items (the first limit % classes classes
    one more), chosen by a seeded permutation; the result is sorted.
    """
    targets = np.asarray(targets)
    if limit <= 0 or limit >= len(targets):
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    classes = np.unique(targets)
    per_class, extra = divmod(limit, len(classes))
    chosen = []
    for rank, label in enumerate(classes):
        members = np.flatnonzero(targets == label)
        want = per_class + (1 if rank < extra else 0)
        if want > len(members):
            raise DataError(
                f"limit {limit} asks for {want} images of class {label}, which has only "
                f"{len(members)}; use a limit of at most {len(members) * len(classes)}."
            )
        chosen.append(rng.permutation(members)[:want])
    return np.sort(np.concatenate(chosen))


def subset(dataset: Dataset, limit: int, seed: int = 0) -> Dataset:
    if limit <= 0 or limit >= len(dataset):
        return dataset
    indices = balanced_indices(dataset.targets, limit, seed)
    part = Subset(dataset, indices.tolist())
    part.targets = [dataset.targets[i] for i in indices]  # keep targets reachable for metrics
    part.classes = dataset.classes
    return part


# --- source 1: torchvision CIFAR-10 --------------------------------------------


def _torchvision_cifar10(data_dir: Path, download: bool):
    from torchvision.datasets import CIFAR10

    alternatives = (
        "Either put cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar.html) "
        f"into {data_dir}, or pass data=PATH (CLI: --data PATH) pointing at an image folder or "
        ".zip with train/<class>/ and test/<class>/ (Kaggle's layout, e.g. cifar10-jpg.zip)."
    )
    try:
        train = CIFAR10(str(data_dir), train=True, download=False)
        test = CIFAR10(str(data_dir), train=False, download=False)
        return train, test
    except RuntimeError:
        if not download:
            raise DataError(f"CIFAR-10 is not in {data_dir} and download=False. {alternatives}") from None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        train = CIFAR10(str(data_dir), train=True, download=True)
        test = CIFAR10(str(data_dir), train=False, download=True)
        return train, test
    except Exception as error:  # URLError, socket errors, HTTP errors, a bad checksum
        raise DataError(f"could not download CIFAR-10 into {data_dir} ({error}). {alternatives}") from None


def _torchvision_mnist(data_dir: Path, download: bool):
    from torchvision.datasets import MNIST

    alternatives = (
        f"Either put MNIST's raw files into {data_dir / 'MNIST' / 'raw'}, or pass data=PATH (report: "
        "MNIST=PATH) pointing at a folder or .zip with train/<digit>/ and test/<digit>/ PNGs (e.g. mnist-png.zip)."
    )
    try:
        return MNIST(str(data_dir), train=True, download=False), MNIST(str(data_dir), train=False, download=False)
    except RuntimeError:
        if not download:
            raise DataError(f"MNIST is not in {data_dir} and download=False. {alternatives}") from None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return MNIST(str(data_dir), train=True, download=True), MNIST(str(data_dir), train=False, download=True)
    except Exception as error:  # URLError, socket errors, HTTP errors, a bad checksum
        raise DataError(f"could not download MNIST into {data_dir} ({error}). {alternatives}") from None


# --- source 2: image folder or zip --------------------------------------------


def _archive_fingerprint(path: Path) -> str:
    """sha256 of a .zip's bytes, or of a tree's (relative path, size, mtime) listing."""
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def source_fingerprint(data: str, cache_dir: Path | None = None) -> str:
    """The fingerprint `load_data` gives a source, without loading it (a measurement's key holds it).

    A named source has a fixed one; a path's is its content hash, cached under (path, size, mtime) in
    <data>/cache/fingerprints.json, so asking again costs no read of the archive.
    """
    if not data:
        return "no data"
    if data in NAMED_SOURCES:
        return NAMED_SOURCES[data]
    path = Path(data).expanduser().resolve()
    if not path.exists():
        return f"missing:{path}"
    stat = path.stat()
    cache = (cache_dir or default_data_dir() / "cache") / "fingerprints.json"
    stamp = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    if stamp not in known:
        known[stamp] = f"imagefolder-{_archive_fingerprint(path)[:24]}"
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache.with_name(f".{cache.name}.{os.getpid()}")
            temporary.write_text(json.dumps(known, indent=1))
            os.replace(temporary, cache)
        except OSError:
            pass  # a read-only data folder: computed again next time
    return known[stamp]


NAMED_SIZES = {"cifar10": (50_000, 10_000), "mnist": (60_000, 10_000), "fake": (512, 128)}


def source_sizes(data: str) -> tuple[int, int]:
    """(training, test) images of a source, without decoding it: a named source's known sizes, a folder's or
    .zip's member count under train/ and test/ (the zip's table of contents only); (0, 0) when unknown."""
    return _known_or_read(data, NAMED_SIZES, _counted_sizes, (0, 0))


@functools.lru_cache(maxsize=16)
def _counted_sizes(data: str, size: int, mtime_ns: int) -> tuple[int, int]:
    """source_sizes of a path, once per (path, size, mtime)."""
    path = Path(data)
    try:
        names, _, close = _list_members(path.resolve())
    except (DataError, OSError):
        return (0, 0)
    try:
        split = _split_members(names, path)
    except DataError:
        return (0, 0)
    finally:
        close()
    return tuple(sum(len(files) for files in split.get(part, {}).values()) for part in ("train", "test"))


def _looks_like_zip(path: Path) -> bool:
    """A .zip by its first bytes (a local file header), whether or not the rest of it is readable."""
    try:
        with open(path, "rb") as stream:
            magic = stream.read(4)
    except OSError:
        return False
    return magic == b"PK\x03\x04"


def _list_members(path: Path) -> tuple[list[str], Callable[[str], bytes], Callable[[], None]]:
    """Member names (posix, relative) and a reader for a .zip or a folder."""
    if path.is_file():
        try:
            archive = zipfile.ZipFile(path)
            names = [n for n in archive.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(
                f"{path} is not a readable .zip ({error}); check the file (sha256sum, unzip -t) "
                "or pass a folder with train/<class>/ and test/<class>/."
            ) from None
        return names, archive.read, archive.close
    names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    return names, lambda name: (path / name).read_bytes(), lambda: None


def _split_members(names: list[str], path: Path) -> dict[str, dict[str, list[str]]]:
    """{"train": {class: [member, ...]}, "test": {...}}, accepting one top-level folder."""
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name in names:
        parts = name.split("/")
        if not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        for depth in (0, 1):  # train/cls/x.jpg or top/train/cls/x.jpg
            if len(parts) == depth + 3 and parts[depth] in splits:
                splits[parts[depth]].setdefault(parts[depth + 1], []).append(name)
                break
    for split, by_class in splits.items():
        if not by_class:
            raise DataError(
                f"{path} has no images under {split}/<class>/; expected the layout "
                "train/<class>/<image> and test/<class>/<image> (e.g. train/cat/0001.jpg)."
            )
    if sorted(splits["train"]) != sorted(splits["test"]):
        raise DataError(
            f"{path}: train/ has classes {sorted(splits['train'])} but test/ has "
            f"{sorted(splits['test'])}; both must have the same class folders."
        )
    return splits


def _decode_split(
    by_class: dict[str, list[str]], read: Callable[[str], bytes], classes: list[str], progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    from lablib.core.progress import progress_bar

    members = [(name, label) for label, cls in enumerate(classes) for name in sorted(by_class[cls])]
    images, labels, mode, size = [], [], None, None
    bar = progress_bar(len(members), "decoding images", "image", enabled=progress)
    for name, label in members:
        bar.update(1)
        try:
            with Image.open(io.BytesIO(read(name))) as image:
                mode = mode or ("L" if image.mode in ("L", "1", "I", "I;16") else "RGB")
                array = np.asarray(image.convert(mode), dtype=np.uint8)
        except zipfile.BadZipFile as error:  # a member fails its CRC: the archive's bytes were changed
            raise DataError(
                f"the archive is damaged: member {name} cannot be read ({error}); copy or download it again."
            ) from None
        except Exception as error:  # PIL raises several types for broken files
            raise DataError(f"cannot decode image {name}: {error}; remove or replace that file.") from None
        if size is None:
            size = array.shape
        elif array.shape != size:
            raise DataError(
                f"image {name} has shape {array.shape}, others have {size}; every image must have the same size."
            )
        images.append(array)
        labels.append(label)
    bar.close()
    return np.stack(images), np.asarray(labels, dtype=np.int64)


CACHE_FILES = ("train_images", "train_labels", "test_images", "test_labels")


def _array_digest(array: np.ndarray) -> str:
    """A content hash of an array's bytes at memory speed (BLAKE2b, 128 bits; ~0.2 s for CIFAR-10's 150 MB)."""
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).hexdigest()


def _describe_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {
        name: {"shape": list(array.shape), "dtype": str(array.dtype), "blake2b": _array_digest(array)}
        for name, array in arrays.items()
    }


def _read_cache(cache: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The cached arrays, verified against meta.json (written last); ValueError says what is wrong."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        expected, classes = meta["arrays"], list(meta["classes"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"meta.json is unreadable ({type(error).__name__})") from None
    arrays = {}
    for name in CACHE_FILES:
        try:
            array = np.load(cache / f"{name}.npy", allow_pickle=False)
        except Exception as error:  # truncated file (OSError, EOFError), garbled header (ValueError, SyntaxError)
            raise ValueError(f"{name}.npy cannot be read ({error})") from None
        want = expected.get(name) or {}
        if list(array.shape) != want.get("shape") or str(array.dtype) != want.get("dtype"):
            raise ValueError(f"{name}.npy has shape {array.shape} {array.dtype}, meta.json says {want}")
        if _array_digest(array) != want.get("blake2b"):
            raise ValueError(f"{name}.npy does not match its content hash (its bytes were changed)")
        arrays[name] = array
    return arrays, classes


class _CacheLock:
    """An exclusive lock on one cache entry (flock), so two processes never build the same cache at once.

    Without a writable cache folder there is nothing to protect: the lock is then a no-op.
    """

    def __init__(self, path: Path):
        self.path, self.handle = path, None

    def __enter__(self) -> _CacheLock:
        import fcntl

        try:
            self.handle = open(self.path, "a")
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except OSError:
            self.handle = None
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the lock


def _load_image_folder(path: Path, cache_root: Path, progress: bool) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Decode (or load from the verified cache) the arrays of an image-folder source.

    The cache entry is written into a staging folder, meta.json (sizes, dtypes and a
    content hash per array) last, then renamed into place; on load every array is
    checked against meta.json, and a damaged entry is rebuilt with one line saying so.
    """
    import sys

    fingerprint = _archive_fingerprint(path)
    cache = cache_root / f"imagefolder-v{CACHE_VERSION}-{fingerprint[:24]}"
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        writable = os.access(cache_root, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        print(
            f"note: the data cache folder {cache_root} is not writable, so {path.name} is decoded in memory each "
            "time; set LABLIB_DATA_DIR (or data_dir) to a writable folder to cache it.",
            file=sys.stderr,
        )
    with _CacheLock(cache_root / f".{cache.name}.lock") if writable else contextlib.nullcontext():
        if cache.exists():
            try:
                arrays, classes = _read_cache(cache)
                return arrays, classes, fingerprint
            except ValueError as problem:
                print(f"data cache {cache} is damaged ({problem}); rebuilding it from {path}.", file=sys.stderr)
                shutil.rmtree(cache, ignore_errors=True)
        arrays, classes = _decode_image_folder(path, progress)
        if writable:
            _write_cache(cache, arrays, classes, path)
    return arrays, classes, fingerprint


def _decode_image_folder(path: Path, progress: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    names, read, close = _list_members(path)
    try:
        splits = _split_members(names, path)
        classes = sorted(splits["train"])
        arrays = {}
        for split in ("train", "test"):
            images, labels = _decode_split(splits[split], read, classes, progress)
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    finally:
        close()
    return arrays, classes


def _write_cache(cache: Path, arrays: dict[str, np.ndarray], classes: list[str], source: Path) -> None:
    """Staging folder, arrays, meta.json last, rename: a killed run or a full disk leaves no entry."""
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache.parent))
        os.chmod(staging, shared_mode(0o777))  # mkdtemp's folders are private (0700); the lab's group reads the cache
        for name in CACHE_FILES:
            np.save(staging / f"{name}.npy", arrays[name])
        meta = {"classes": classes, "source": str(source), "arrays": _describe_arrays(arrays)}
        (staging / "meta.json").write_text(json.dumps(meta))
        os.replace(staging, cache)
    except OSError as error:  # a full disk: the data is in memory, only the cache is lost
        import sys

        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not cache.exists():
            print(
                f"note: could not write the data cache {cache} ({error.strerror}); decoded in memory.", file=sys.stderr
            )


# --- the one entry point --------------------------------------------------------


def load_data_for(config, progress: bool = False) -> DataBundle:
    """The data of a run's settings (a RunConfig): its source, folder, download flag, subsets and seed."""
    return load_data(
        config.data, config.data_dir, config.download, config.limit_train, config.limit_test, config.seed, progress
    )


def load_data(
    data: str = "cifar10",
    data_dir: str | os.PathLike = "",
    download: bool = True,
    limit_train: int = 0,
    limit_test: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> DataBundle:
    """Load a source's train and test sets with the lab's transforms and subsets.

    `data` is "cifar10", "mnist", "fake" or a path; `limit_*` pick class-balanced subsets.
    """
    root = Path(data_dir) if data_dir else default_data_dir()
    if data == "fake":
        from torchvision.datasets import FakeData

        size_train, size_test = limit_train or 512, limit_test or 128
        train = FakeData(size_train, (3, 32, 32), 10, train_transform(), random_offset=seed)
        test = FakeData(size_test, (3, 32, 32), 10, eval_transform(), random_offset=seed + 10**6)
        # The limits are FakeData's sizes, so no subset is taken below.
        return DataBundle(train, test, [str(i) for i in range(10)], 3, "fake", f"fake-{size_train}-{size_test}-{seed}")
    if data == "cifar10":
        train, test = _torchvision_cifar10(root, download)
        train.transform, test.transform = train_transform(), eval_transform()
        bundle = DataBundle(train, test, list(train.classes), 3, "cifar10", NAMED_SOURCES["cifar10"])
    elif data == "mnist":
        train, test = _torchvision_mnist(root, download)
        classes = [str(digit) for digit in range(10)]
        # The same in-memory path as the image-folder source: uint8 N x 28 x 28 arrays.
        train = ArrayImageDataset(train.data.numpy(), train.targets.tolist(), classes, train_transform(1))
        test = ArrayImageDataset(test.data.numpy(), test.targets.tolist(), classes, eval_transform(1))
        bundle = DataBundle(train, test, classes, 1, "mnist", NAMED_SOURCES["mnist"])
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(
                f"data path {data!r} does not exist (resolved to {path.resolve()}); pass 'cifar10' to use "
                "torchvision's download, or a folder/.zip with train/<class>/ and test/<class>/."
            )
        if path.is_file() and not zipfile.is_zipfile(path) and _looks_like_zip(path):
            raise DataError(
                f"data path {data!r} is a damaged .zip archive (its table of contents cannot be read: the file is "
                "truncated or overwritten); copy or download it again and check it with `unzip -t` or its sha256."
            )
        if not (path.is_dir() or zipfile.is_zipfile(path)):
            raise DataError(
                f"data path {data!r} is neither a folder nor a .zip archive; pass a folder "
                "or .zip with train/<class>/ and test/<class>/."
            )
        arrays, classes, fingerprint = _load_image_folder(path.resolve(), root / "cache", progress)
        channels = 1 if arrays["train_images"].ndim == 3 else 3
        train = ArrayImageDataset(arrays["train_images"], arrays["train_labels"], classes, train_transform(channels))
        test = ArrayImageDataset(arrays["test_images"], arrays["test_labels"], classes, eval_transform(channels))
        bundle = DataBundle(train, test, classes, channels, str(path), f"imagefolder-{fingerprint[:24]}")
    bundle.train = subset(bundle.train, limit_train, seed)
    bundle.test = subset(bundle.test, limit_test, seed)
    return bundle


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    device: torch.device,
    shuffle: bool,
    seed: int = 0,
    pin_memory: bool = True,
    persistent_workers: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader as the lab builds it.

    `pin_memory` takes effect only on CUDA. `persistent_workers` is off by
    default: the lab's data-loading time then includes each epoch's worker
    start-up, which is part of what C3 measures; turn it on to see that cost go.
    Shuffling and the workers' augmentation seeds come from a generator seeded
    with `seed`, so a run is repeatable. `drop_last` drops each epoch's last partial batch (one input
    shape for torch.compile: lablib.core.compiled).
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=pin_memory and device.type == "cuda",
        persistent_workers=persistent_workers and workers > 0,
        generator=generator,
        drop_last=drop_last,
    )
