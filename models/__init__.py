"""Model families: a registry and one factory, `build(family, **cfg)`.

Each family is one file with a flat `@dataclass` config and an `nn.Module` that takes it. A module keeps
its config on `.config` and its family name on `.family`, so a checkpoint can carry
`{"family": ..., "config": asdict(model.config)}` and be rebuilt with `build(family, **config)`.
Fields whose default is a tuple hold one value per stage (`widths`, `depths`, ...).
"""
from __future__ import annotations

import dataclasses

from torch import nn

_REGISTRY: dict[str, tuple[type, type[nn.Module]]] = {}


def register(name: str, config_cls: type):
    """Class decorator: make `cls(config)` buildable as family `name`."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model family {name!r} is registered twice")
        _REGISTRY[name] = (config_cls, cls)
        cls.family = name
        return cls

    return deco


def names() -> list[str]:
    return sorted(_REGISTRY)


def config_class(family: str) -> type:
    if family not in _REGISTRY:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(names())}")
    return _REGISTRY[family][0]


def per_stage_fields(family: str) -> tuple[str, ...]:
    """Config fields that hold one value per stage (their default is a tuple)."""
    return tuple(f.name for f in dataclasses.fields(config_class(family)) if isinstance(f.default, tuple))


def build(family: str, **cfg) -> nn.Module:
    config_cls = config_class(family)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"{family}: unknown config keys {unknown}; known: {sorted(known)}")
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    return _REGISTRY[family][1](config_cls(**cfg))


def check_stages(config, *fields: str) -> None:
    """Shared validation: per-stage tuples of equal, non-zero length with positive entries."""
    lengths = {name: len(getattr(config, name)) for name in fields}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"per-stage fields must have the same non-zero length, got {lengths}")
    for name in fields:
        if any(int(v) < 1 for v in getattr(config, name)):
            raise ValueError(f"{name} must be >= 1 per stage, got {name}={getattr(config, name)}")


def hw(image_size) -> tuple[int, int]:
    """(height, width) of a config's `image_size`: an int for square images, or [height, width]."""
    if isinstance(image_size, (list, tuple)):
        h, w = image_size
        return int(h), int(w)
    return int(image_size), int(image_size)


from models import convnet, mobilenet, resnet  # noqa: E402,F401  (registers the families)

