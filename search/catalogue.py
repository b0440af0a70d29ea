"""The dataset catalogue: what a model needs to know of its input (`Meta`), the built-in datasets, and the kinds of
the user's own data. A leaf: no torch, nothing of nas-run's imported, so the space parser, the loader and the
measures all read it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Meta:
    """What a model needs to know of its input: channels, height, width, the classes by name."""

    channels: int
    height: int
    width: int
    class_names: tuple[str, ...]
    train_size: int = 0  # built-in datasets: images in the official training split (before the validation split)
    torchvision: str = ""  # built-in datasets: the class name in torchvision.datasets

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int | list[int]:
        """As a model config takes it: an int when square, else [height, width]."""
        return self.height if self.height == self.width else [self.height, self.width]


def numbered(n: int) -> tuple[str, ...]:
    """Class names of a dataset that has none: "0", "1", ..."""
    return tuple(str(i) for i in range(n))


DATASETS = {  # the built-in datasets; `folder` and `arrays` are the user's own (images.py)
    "mnist": Meta(1, 28, 28, numbered(10), 60_000, "MNIST"),
    "fashion_mnist": Meta(1, 28, 28, ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                      "Sneaker", "Bag", "Ankle boot"), 60_000, "FashionMNIST"),
    "cifar10": Meta(3, 32, 32, ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                "truck"), 50_000, "CIFAR10"),
    "cifar100": Meta(3, 32, 32, numbered(100), 50_000, "CIFAR100"),
    "svhn": Meta(3, 32, 32, numbered(10), 73_257, "SVHN"),
}
OWN_DATA = ("folder", "arrays")
SVHN_EXTRA = 531_131  # images in SVHN's `extra` split


def builtin_meta(cfg) -> Meta | None:
    """A built-in dataset's Meta as the space's data section `cfg` (space.DataConfig) converts it (channels,
    image_size), without its files; None for the user's own data, whose shape is known only from the files."""
    meta = DATASETS.get(cfg.dataset)
    if meta is None:
        return None
    h, w = cfg.image_size or (meta.height, meta.width)
    return Meta(cfg.channels or meta.channels, h, w, meta.class_names, meta.train_size, meta.torchvision)


def train_size(cfg) -> int:
    """Images in a built-in dataset's official training split (SVHN with `extra`: both)."""
    return DATASETS[cfg.dataset].train_size + (SVHN_EXTRA if cfg.extra else 0)
