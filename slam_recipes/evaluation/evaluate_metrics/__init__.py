"""Hugging Face `evaluate` metric modules shipped inside the package, loaded from disk (no Hub access).

`evaluate.load(metric_path("auto_bleu"))` or `load_metric("pairwise_likelihood")`. Each metric is a folder
`<name>/<name>.py` (package data, not a Python package): `evaluate` copies the script into its modules cache
(`HF_MODULES_CACHE`, default ~/.cache/huggingface/modules) and imports it from there, and the script imports the
installed `slam_recipes`, so the metrics and the recipes share one implementation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from slam_recipes.data.sources import read_units
from slam_recipes.errors import ConfigError, DataError, first_line
from slam_recipes.evaluation.likelihood import PairBenchmark, frame

METRICS = ("auto_bleu", "pairwise_likelihood")
SLAMMING_CITATION = """
@misc{maimon2025slamming,
  title={Slamming: Training a Speech Language Model on One GPU in a Day},
  author={Maimon, Gallil and Elmakies, Avishai and Adi, Yossi},
  year={2025},
  eprint={2502.15814},
  archivePrefix={arXiv},
  primaryClass={cs.LG}
}
"""  # cited by both metrics
_HERE = os.path.dirname(os.path.abspath(__file__))


def metric_path(name: str) -> str:
    """Absolute folder of the metric module `name` (one of `METRICS`), for `evaluate.load`."""
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return os.path.join(_HERE, name)


def load_metric(name: str, config_name: str | None = None, **kwargs):
    """`evaluate.load(metric_path(name), config_name, **kwargs)`, kept in memory unless `keep_in_memory=False` is
    given: no prediction files under the metrics cache, and none left locked when a compute raises."""
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(metric_path(name), config_name, **kwargs)


def pair_benchmark(
    positive: Sequence[Sequence[int]],
    negative: Sequence[Sequence[int]],
    num_units: int,
    *,
    name: str = "pairwise_likelihood",
) -> PairBenchmark:
    """A `PairBenchmark` from unit-id rows (not token ids), validated as `load_pair_benchmark` validates a dataset:
    an empty (or null) row or a unit id outside [0, num_units) is a one-line `DataError` naming the side and row;
    each row is framed `<S> units+2 <S>`."""
    if len(positive) != len(negative):
        raise DataError(f"{name}: {len(positive)} positives but {len(negative)} negatives")
    if not len(positive):
        raise DataError(f"{name}: no pairs")
    benchmark = PairBenchmark(name=name, source=name, positive=[], negative=[])
    for column, rows in (("positive", positive), ("negative", negative)):
        try:
            array = pa.array([None if row is None else np.asarray(row).tolist() for row in rows], pa.list_(pa.int64()))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
            raise DataError(
                f"{name}: {column} rows must be sequences of integer unit ids ({first_line(err)})"
            ) from err
        values, offsets = read_units(array, num_units=num_units, label=f"{name} {column}", first_row=0)
        getattr(benchmark, column).extend(frame(values, offsets))
    return benchmark
