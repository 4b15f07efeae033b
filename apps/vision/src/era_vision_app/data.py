"""Datasets of era-vision-train: embedded digits, CIFAR-10 python pickles, ImageFolder trees,
and whatever ``timm.data.create_dataset`` reads (``--timm-dataset``).

Every dataset yields ``(PIL image, label)``; the transforms and loaders are timm's
(:mod:`era_vision_app.loaders`), so one pipeline serves them all. :func:`load_datasets` checks the layout and the class count
before anything is trained and raises :class:`DataError` with the path and what was expected.

* ``digits`` (default, no download): scikit-learn's handwritten digits (1,797 8x8 grey images,
  10 classes, shipped inside the wheel), upsampled once to 32x32 RGB (bicubic). A fixed,
  stratified split (``random_state=0``): 1,347 train / 450 test images.
* ``cifar10``: the python-pickle folder of CIFAR-10 (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``), as unpacked from ``cifar-10-python.tar.gz``.
* ``imagefolder``: ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg`` (ImageNet's
  usual layout), listed by timm's folder reader; classes are the sorted folder names of
  ``train/``, and ``val/`` must hold the same ones. An image that does not decode stops the
  run with a :class:`DataError` naming the file (timm's own dataset would skip it with a
  warning and train on a neighbour twice).
* ``timm``: ``--timm-dataset NAME`` hands ``--data-dir`` to ``create_dataset(NAME, root=...,
  split=...)`` (``torch/cifar10``, ``torch/cifar100``, ``torch/image_folder``, ``hfds/...``, a
  folder or tar of images, ...); map-style datasets only (the sampler needs indices), nothing
  is downloaded.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .config import DataError

__all__ = [
    "CIFAR10_FILES",
    "LABEL_NOISE_STREAM",
    "DataError",
    "Datasets",
    "ImageArrayDataset",
    "NoisyLabels",
    "add_label_noise",
    "detect_layout",
    "label_noise_offsets",
    "load_cifar10",
    "load_datasets",
    "load_digits_split",
]

CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
DIGITS_SIZE = 32
DIGITS_TEST_SIZE = 450
# the second word of the label-noise generator's seed (the first is the run's --seed)
LABEL_NOISE_STREAM = 0x1A8E1
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".gif"}


class ImageArrayDataset(Dataset):
    """In-memory uint8 images ``(N, H, W, 3)`` with integer labels, as PIL images."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any = None) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


@dataclass
class Datasets:
    """Train and validation sets (transforms still unset), class names and the layout name."""

    train: Dataset
    val: Dataset
    classes: list[str]
    layout: str  # "digits" | "cifar10" | "imagefolder" | "timm"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_digits_split(size: int = DIGITS_SIZE) -> tuple[np.ndarray, ...]:
    """The embedded digits as uint8 RGB ``size x size`` images: ``x_train, y_train, x_test, y_test``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16 -> 0..255
    big = np.stack(
        [np.asarray(Image.fromarray(g).resize((size, size), Image.BICUBIC)) for g in grey]
    )
    rgb = np.repeat(big[..., None], 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        rgb, digits.target, test_size=DIGITS_TEST_SIZE, stratify=digits.target, random_state=0
    )
    return x_train, y_train, x_test, y_test


def _unpickle_cifar(root: Path, name: str, keys: tuple[bytes, ...]) -> dict:
    """One CIFAR-10 python file: a pickled dict holding ``keys``; ``DataError`` naming the
    file when it is anything else (truncated, another format, garbage)."""
    path = root / name
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except Exception as error:  # unpickling garbage raises many kinds; all mean a bad file
        raise DataError(
            f"--data-dir {str(root)!r}: {name} is not a CIFAR-10 python file "
            f"({type(error).__name__}: {error}); unpack cifar-10-python.tar.gz again"
        ) from None
    missing = [key.decode() for key in keys if not isinstance(batch, dict) or key not in batch]
    if missing:
        raise DataError(
            f"--data-dir {str(root)!r}: {name} is not a CIFAR-10 python file (it lacks "
            f"{', '.join(missing)}); unpack cifar-10-python.tar.gz again"
        )
    return batch


def load_cifar10(root: Path) -> Datasets:
    """CIFAR-10 from its python pickles (50,000 train / 10,000 test images at 32x32)."""

    def images(name: str) -> tuple[np.ndarray, np.ndarray]:
        batch = _unpickle_cifar(root, name, (b"data", b"labels"))
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as error:
            raise DataError(f"--data-dir {str(root)!r}: {name} holds no uint8 images and "
                            f"integer labels ({error})") from None  # fmt: skip
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{root}: CIFAR-10 batch data must be (N, 3072), got {data.shape}")
        if labels.shape != (len(data),):
            raise DataError(f"--data-dir {str(root)!r}: {name} has {len(data)} images but "
                            f"labels of shape {labels.shape}")  # fmt: skip
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

    parts = [images(f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = images("test_batch")
    names = _unpickle_cifar(root, "batches.meta", (b"label_names",))[b"label_names"]
    try:
        classes = [name.decode("utf-8") for name in names]
    except (AttributeError, TypeError, UnicodeDecodeError) as error:
        raise DataError(f"--data-dir {str(root)!r}: batches.meta label_names must be UTF-8 "
                        f"byte strings ({error})") from None  # fmt: skip
    for split, y in (("train", y_train), ("test", y_test)):
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(
                f"{root}: {split} labels range over [{y.min()}, {y.max()}] but batches.meta "
                f"names {len(classes)} classes"
            )
    return Datasets(
        ImageArrayDataset(np.ascontiguousarray(x_train), y_train),
        ImageArrayDataset(np.ascontiguousarray(x_test), y_test),
        classes,
        "cifar10",
    )


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_imagefolder(root: Path) -> Datasets:
    """``root/train/<class>/...`` and ``root/val/<class>/...`` through timm's ``create_dataset``
    (its folder reader), after checking that both splits hold the same classes and images."""
    from timm.data import create_dataset

    train_classes = _class_dirs(root / "train")
    val_classes = _class_dirs(root / "val")
    if not train_classes:
        raise DataError(f"{root / 'train'} has no class folders (expected train/<class>/<image>)")
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise DataError(
            f"class-count mismatch in {root}: train/ has {len(train_classes)} classes, val/ has "
            f"{len(val_classes)} (only in train: {only_train[:5]}, only in val: {only_val[:5]})"
        )
    for split in ("train", "val"):
        if not any(
            f.suffix.lower() in IMAGE_EXTENSIONS for f in (root / split).rglob("*") if f.is_file()
        ):
            raise DataError(
                f"{root / split} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
    class_map = {name: index for index, name in enumerate(train_classes)}
    return Datasets(
        StrictImages(create_dataset("", root=str(root), split="train", class_map=class_map), root),
        StrictImages(create_dataset("", root=str(root), split="val", class_map=class_map), root),
        train_classes,
        "imagefolder",
    )


class _Wrapper(Dataset):
    """A dataset around ``self.dataset``: its length, its ``transform`` (read and set: the
    loaders set it) and every attribute it does not define itself are the wrapped one's."""

    dataset: Any

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def transform(self) -> Any:
        return self.dataset.transform

    @transform.setter
    def transform(self, value: Any) -> None:
        self.dataset.transform = value

    def __getattr__(self, name: str) -> Any:  # reader, target_transform, ... of the dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class StrictImages(_Wrapper):
    """timm's folder dataset (``create_dataset``), with an image that does not decode as a
    :class:`DataError` naming the file instead of a skipped sample."""

    def __init__(self, dataset: Any, root: Path) -> None:
        self.dataset = dataset
        self.root = root

    def __getitem__(self, index: int) -> tuple[Any, int]:
        reader = self.dataset.reader
        path, target = reader.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")  # decodes every pixel
        except (OSError, ValueError, SyntaxError) as error:  # PIL's decode errors
            raise DataError(
                f"--data-dir {str(self.root)!r}: {path} is not a decodable image "
                f"({type(error).__name__}: {error}); remove or replace it"
            ) from None
        if self.dataset.transform is not None:
            image = self.dataset.transform(image)
        if self.dataset.target_transform is not None:
            target = self.dataset.target_transform(target)
        return image, int(target)


def _class_names(dataset: Any, name: str, num_classes: int | None) -> list[str]:
    """The class names of a ``create_dataset`` result (torchvision's ``classes``, a timm
    reader's ``class_to_idx``), or ``--num-classes`` numbered ones."""
    classes = getattr(dataset, "classes", None)
    if classes:
        return [str(c) for c in classes]
    mapping = getattr(getattr(dataset, "reader", None), "class_to_idx", None)
    if mapping:
        return [str(c) for c, _ in sorted(mapping.items(), key=lambda item: item[1])]
    if num_classes is None:
        raise DataError(f"--timm-dataset {name!r}: its classes are not listed; pass --num-classes")
    return [str(i) for i in range(num_classes)]


def load_timm_dataset(
    name: str, root: str | Path, num_classes: int | None, train_split: str, val_split: str
) -> Datasets:
    """``timm.data.create_dataset(name, root, split)`` for both splits (no download)."""
    from timm.data import create_dataset
    from torch.utils.data import IterableDataset

    def load(split: str, training: bool) -> Any:
        try:
            dataset = create_dataset(name, root=str(root), split=split, is_training=training,
                                     download=False)  # fmt: skip
        except Exception as error:  # timm and torchvision raise many kinds; all mean bad data
            raise DataError(f"--timm-dataset {name!r} --data-dir {str(root)!r} split "
                            f"{split!r}: {type(error).__name__}: {error}") from None  # fmt: skip
        if isinstance(dataset, IterableDataset):
            raise DataError(f"--timm-dataset {name!r} is a streaming dataset; era-vision-train "
                            "needs a map-style one (folder, tar, torch/..., hfds/...)")  # fmt: skip
        return dataset

    train, val = load(train_split, True), load(val_split, False)
    return Datasets(train, val, _class_names(train, name, num_classes), "timm")


def detect_layout(data_dir: str | Path | None) -> str:
    """``digits`` for no directory, else ``cifar10`` or ``imagefolder``; ``DataError`` otherwise."""
    if data_dir is None:
        return "digits"
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data-dir {str(data_dir)!r} does not exist or is not a directory")
    present = [name for name in CIFAR10_FILES if (root / name).is_file()]
    if len(present) == len(CIFAR10_FILES):
        return "cifar10"
    if (root / "train").is_dir() and (root / "val").is_dir():
        return "imagefolder"
    missing = [name for name in CIFAR10_FILES if name not in present]
    hint = f" (CIFAR-10 files missing: {', '.join(missing)})" if present else ""
    raise DataError(
        f"--data-dir {str(data_dir)!r} has an unknown layout{hint}: expected either an ImageFolder "
        f"tree with train/<class>/ and val/<class>/ subfolders, or the CIFAR-10 python folder "
        f"({', '.join(CIFAR10_FILES)})"
    )


def load_datasets(
    data_dir: str | Path | None,
    num_classes: int | None = None,
    *,
    timm_dataset: str | None = None,
    train_split: str = "train",
    val_split: str = "validation",
) -> Datasets:
    """The datasets for ``--data-dir`` (``None``: the embedded digits), or ``--timm-dataset``
    read from it.

    ``num_classes`` (from a preset or ``--num-classes``) must equal the data's class count.
    """
    if timm_dataset is not None:
        if data_dir is None or not Path(data_dir).is_dir():
            raise DataError(f"--data-dir {data_dir!r} does not exist or is not a directory")
        layout = "timm"
        data = load_timm_dataset(timm_dataset, data_dir, num_classes, train_split, val_split)
    else:
        layout = detect_layout(data_dir)
    if layout == "digits":
        x_train, y_train, x_test, y_test = load_digits_split()
        data = Datasets(
            ImageArrayDataset(x_train, y_train),
            ImageArrayDataset(x_test, y_test),
            [str(i) for i in range(10)],
            "digits",
        )
    elif layout == "cifar10":
        data = load_cifar10(Path(data_dir))
    elif layout == "imagefolder":
        data = load_imagefolder(Path(data_dir))
    if num_classes is not None and num_classes != data.num_classes:
        where = "the embedded digits" if data_dir is None else repr(str(data_dir))
        raise DataError(
            f"class-count mismatch: expected --num-classes {num_classes}, but {where} "
            f"({layout}) has {data.num_classes} classes"
        )
    return data


class NoisyLabels(_Wrapper):
    """A training set with some labels redrawn (``--label-noise``): sample ``i`` of
    ``offsets`` gets label ``(y + offsets[i]) % num_classes`` with ``offsets[i]`` in
    ``1 .. num_classes - 1``, any other sample keeps its own. Images, ``transform`` and every
    other attribute are the wrapped dataset's, so it works for each layout."""

    def __init__(self, dataset: Any, offsets: dict[int, int], num_classes: int) -> None:
        self.dataset = dataset
        self.offsets = offsets
        self.num_classes = num_classes

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        offset = self.offsets.get(int(index), 0)
        return image, (int(label) + offset) % self.num_classes


def label_noise_offsets(size: int, num_classes: int, fraction: float, seed: int) -> dict[int, int]:
    """The relabelling of ``--label-noise fraction``: ``round(fraction * size)`` indices, the
    head of a permutation drawn by ``numpy.random.default_rng([seed, LABEL_NOISE_STREAM])``,
    each with an offset drawn uniformly from ``1 .. num_classes - 1`` (so the new label is
    uniform over the other classes). Depends on nothing else (not the rank, not the data)."""
    count = round(fraction * size)
    if count == 0:
        return {}
    rng = np.random.default_rng([seed, LABEL_NOISE_STREAM])
    chosen = rng.permutation(size)[:count]
    offsets = rng.integers(1, num_classes, size=count)
    return {int(i): int(o) for i, o in zip(chosen, offsets, strict=True)}


def add_label_noise(data: Datasets, fraction: float, seed: int) -> Datasets:
    """``data`` with ``fraction`` of its training labels redrawn for run seed ``seed``
    (:class:`NoisyLabels`); the validation set is untouched and ``data`` is not changed. A
    training set that already carries noise is relabelled from its clean labels."""
    clean = data.train.dataset if isinstance(data.train, NoisyLabels) else data.train
    if fraction == 0:
        return dataclasses.replace(data, train=clean)
    if data.num_classes < 2:
        raise DataError(f"--label-noise {fraction} needs at least 2 classes, the data has "
                        f"{data.num_classes}")  # fmt: skip
    offsets = label_noise_offsets(len(clean), data.num_classes, fraction, seed)
    return dataclasses.replace(data, train=NoisyLabels(clean, offsets, data.num_classes))
