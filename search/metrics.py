"""What a model's predictions score: accuracy, or balanced accuracy (the mean of the per-class recalls, which a
model cannot raise by ignoring a small class), from one confusion matrix. The search selects on `search.metric`;
the retrain, the report and `nas-predict --evaluate` show both.
"""
from __future__ import annotations

import torch

NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}  # as the reader sees them


def confusion(pred: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """int64 (classes, classes) on the predictions' device: rows the true class, columns the predicted one."""
    return torch.bincount(y * classes + pred, minlength=classes * classes).view(classes, classes)


def recalls(cm: torch.Tensor) -> list[float | None]:
    """Per class, the share of its images predicted as it; None for a class without images."""
    hits, totals = cm.diagonal().tolist(), cm.sum(1).tolist()
    return [h / n if n else None for h, n in zip(hits, totals)]


def most_confused(cm: torch.Tensor) -> list[int | None]:
    """Per class, the class its images are most often wrongly predicted as (None: never wrong, or no images)."""
    wrong = cm.clone().fill_diagonal_(-1)
    return [int(row.argmax()) if row.max() > 0 else None for row in wrong]


def accuracy(cm: torch.Tensor) -> float:
    return cm.diagonal().sum().item() / max(1, cm.sum().item())


def balanced_accuracy(cm: torch.Tensor) -> float:
    """The mean recall over the classes that have images (scikit-learn's balanced_accuracy_score)."""
    present = [r for r in recalls(cm) if r is not None]
    return sum(present) / len(present) if present else 0.0


def score(pred: torch.Tensor, y: torch.Tensor, metric: str, classes: int | None = None) -> float:
    """`metric` of predictions against labels. Accuracy needs one host read; balanced accuracy one more."""
    if metric == "accuracy":
        return (pred == y).sum().item() / max(1, len(y))
    if metric == "balanced_accuracy":
        if not len(y):
            return 0.0
        return balanced_accuracy(confusion(pred, y, classes or int(torch.maximum(pred.max(), y.max())) + 1))
    raise ValueError(f"unknown metric {metric!r}")
