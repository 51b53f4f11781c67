"""Several classifiers as one: the fitness of an image for class c is the mean (default) or the
min over the members of their log p(c), so evolution fools all of them at once (the paper's
transfer question answered by construction).

Members must agree on the image shape and the class list. The ensemble's "logits" are already
that fitness (`returns_log_probs`): scoring uses them as they are, without a softmax, so
exp(fitness) is the geometric mean (mean) or the smallest (min) of the members' confidences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxfool.classifiers.protocol import Classifier
from jaxfool.classifiers.scoring import log_probs

FITNESS = ("mean", "min")


@dataclass(frozen=True)
class EnsembleLogits:
    """log p(c) of each member (its own preprocessing), combined by `fitness`."""

    members: tuple[Classifier, ...]
    fitness: str = "mean"
    returns_log_probs: ClassVar[bool] = True

    def __call__(self, params: Any, images: jax.Array) -> jax.Array:
        per_member = jnp.stack(
            [log_probs(m.logits, p, images) for m, p in zip(self.members, params, strict=True)]
        )
        return per_member.mean(0) if self.fitness == "mean" else per_member.min(0)


def ensemble(
    members: list[tuple[Classifier, Any]], fitness: str = "mean", names: list[str] | None = None
) -> tuple[Classifier, Any]:
    """One classifier of `members` [(classifier, params)]; ValueError naming the member that does
    not fit (another image shape or class list) or an unknown `fitness`."""
    if fitness not in FITNESS:
        raise ValueError(f"ensemble fitness {fitness!r}: choose mean or min")
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two networks")
    names = names or [clf.name for clf, _ in members]
    first = members[0][0]
    for (clf, _), name in zip(members[1:], names[1:], strict=True):
        if clf.image_shape != first.image_shape:
            raise ValueError(
                f"{name} takes {clf.image_shape} images, {names[0]} {first.image_shape}"
            )
        if clf.labels != first.labels:
            raise ValueError(f"{name}'s classes differ from {names[0]}'s")
    logits = EnsembleLogits(tuple(clf for clf, _ in members), fitness)
    label = f"ensemble({fitness}: {' + '.join(names)})"
    return Classifier(label, logits, first.image_shape, first.labels), tuple(p for _, p in members)
