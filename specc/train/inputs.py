"""A run's data: which dataset, whether it fits the spec, the splits and their preprocessing.

The dataset is checked against the spec (`dataset_info`, no image read) before anything is
loaded, so a wrong pairing fails in a second with both sides named, not after reading
180 MB or, worse, after the first forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from specc.errors import UserError
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.preprocessing import Preprocessing
from specc.train.config import DATASET_NAMES, TrainConfig
from specc.train.data import ArrayDataset, dataset_info, fit_preprocessing, load_dataset, split_validation


@dataclass(frozen=True, eq=False)
class RunData:
    """The splits of a run (uint8 arrays in memory) and the preprocessing fitted on `train`."""

    train: ArrayDataset
    val: ArrayDataset | None
    test: ArrayDataset
    preprocessing: Preprocessing

    def eval_splits(self) -> dict[str, ArrayDataset]:
        """The splits evaluated after every epoch, in report order."""
        return {"val": self.val, "test": self.test} if self.val is not None else {"test": self.test}

    def fingerprints(self) -> dict[str, str]:
        out = {"train": self.train.fingerprint(), "test": self.test.fingerprint()}
        if self.val is not None:
            out["val"] = self.val.fingerprint()
        return out

    def record(self) -> dict:
        """What config.yaml says about the data."""
        splits = {"train": self.train, "test": self.test, **({"val": self.val} if self.val is not None else {})}
        return {
            name: {"source": ds.source, "images": len(ds), "fingerprint": ds.fingerprint()}
            for name, ds in splits.items()
        } | {"preprocessing": self.preprocessing.kind}


def dataset_name(cfg: TrainConfig) -> str:
    if cfg.dataset is None:
        raise UserError(
            "no dataset: pass --data NAME or set train.dataset in the spec (one of " + ", ".join(DATASET_NAMES) + ")"
        )
    return cfg.dataset


def dataset_options(graph: Graph, cfg: TrainConfig) -> dict[str, int]:
    """Options for `load_dataset`: synthetic data takes the spec's channels and classes."""
    if cfg.dataset != "synthetic":
        return {}
    return {"channels": graph.input_shape[0], "classes": require_classifier(graph, "training"), **cfg.dataset_options}


def check_fits(graph: Graph, cfg: TrainConfig) -> None:
    """Refuse a dataset whose image shape or class count differs from the spec's, naming both
    (and a spec that is no single-output classifier: training and evaluation need one)."""
    require_classifier(graph, "training")
    name = dataset_name(cfg)
    channels, classes, size = dataset_info(name, cfg.data_dir, **dataset_options(graph, cfg))
    want_c, want_h, want_w = graph.input_shape
    if channels == want_c and classes == graph.classes and (size is None or size == (want_h, want_w)):
        return
    images = f"{channels}x{size[0]}x{size[1]} images" if size else f"{channels}-channel images"
    raise UserError(
        f"{name} gives {images} in {classes} classes but spec '{graph.name}' expects "
        f"{want_c}x{want_h}x{want_w} and {graph.classes} classes"
    )


def load_run_data(graph: Graph, cfg: TrainConfig, preprocessing: dict | None = None) -> RunData:
    """Load train/test (and val when `val_split` > 0), and fit the preprocessing on the
    training part — or take `preprocessing` (a `to_dict()`, e.g. from a checkpoint) as is."""
    check_fits(graph, cfg)
    name = dataset_name(cfg)
    size = graph.input_shape[1:]
    options = dataset_options(graph, cfg)
    train = load_dataset(name, cfg.data_dir, "train", image_size=size, **options)
    test = load_dataset(name, cfg.data_dir, "test", image_size=size, **options)
    val = None
    if cfg.val_split > 0:
        train, val = split_validation(train, cfg.val_split, cfg.seed)
    if preprocessing is not None:
        fitted = Preprocessing.from_dict(preprocessing)
    else:
        fitted = fit_preprocessing(cfg.preprocessing, train.images)
    return RunData(train, val, test, fitted)


def load_split(graph: Graph, cfg: TrainConfig, split: str) -> ArrayDataset:
    """One split as the run with recipe `cfg` saw it: `train` without the held-out part,
    `val` the held-out part (the same images: `val_split` and `seed` decide them), `test`."""
    check_fits(graph, cfg)
    name, size, options = dataset_name(cfg), graph.input_shape[1:], dataset_options(graph, cfg)
    if split == "test":
        return load_dataset(name, cfg.data_dir, "test", image_size=size, **options)
    if split == "val" and cfg.val_split == 0:
        raise UserError("split 'val': the run held out no validation set (val_split 0) — use the test or train split")
    train = load_dataset(name, cfg.data_dir, "train", image_size=size, **options)
    if cfg.val_split == 0:
        return train
    train, val = split_validation(train, cfg.val_split, cfg.seed)
    return val if split == "val" else train
