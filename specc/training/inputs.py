"""A run's data: which dataset, whether it fits the spec, the splits and their preprocessing,
and whether they are held in memory or streamed.

The dataset is checked against the spec (`dataset_info`, no image read) before anything is
loaded, so a wrong pairing fails in a second with both sides named, not after reading
180 MB or, worse, after the first forward pass.

Data modes: "memory" holds every split decoded in one uint8 array (on the device, batched
there: the fastest path); "stream" (`folder` and `npy` datasets) lists the images and decodes
each batch in DataLoader workers (`specc.training.data.streamloader`). "auto" streams when the
decoded splits, one copy per process of this machine, would take more than a quarter of its
memory (`choose_mode`). Both modes give the same batches and the same weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from specc.errors import UserError
from specc.ir import Graph
from specc.outputs import require_classifier
from specc.preprocessing import Preprocessing
from specc.training.config import DATASET_NAMES, TrainConfig
from specc.training.data import ArrayDataset, dataset_info, fit_preprocessing, load_dataset, split_validation
from specc.training.data.stream import STREAMABLE, StreamDataset, decoded_size, open_stream

MODES = ("auto", "memory", "stream")
MEMORY_SHARE = 0.25  # auto mode holds data in memory up to this share of the machine's RAM

Split = ArrayDataset | StreamDataset


@dataclass(frozen=True, eq=False)
class RunData:
    """The splits of a run (uint8 arrays in memory, or streamed) and the preprocessing fitted
    on `train`; `mode` is "memory" or "stream", `mode_line` says why."""

    train: Split
    val: Split | None
    test: Split
    preprocessing: Preprocessing
    mode: str = "memory"
    mode_line: str = ""

    def eval_splits(self) -> dict[str, Split]:
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


def load_run_data(
    graph: Graph,
    cfg: TrainConfig,
    preprocessing: dict | None = None,
    *,
    mode: str = "memory",
    workers: int | None = 0,
    processes: int = 1,
) -> RunData:
    """Load train/test (and val when `val_split` > 0), and fit the preprocessing on the
    training part — or take `preprocessing` (a `to_dict()`, e.g. from a checkpoint) as is.
    `mode` "memory", "stream" or "auto" (`choose_mode`, for `processes` on this machine)."""
    check_fits(graph, cfg)
    name = dataset_name(cfg)
    size = graph.input_shape[1:]
    workers = default_workers(processes) if workers is None else workers
    mode, line = choose_mode(graph, cfg, mode, processes)
    if mode == "stream":
        line += (
            f", {workers} decoding worker{'s' if workers != 1 else ''} per process"
            if workers
            else ", decoded in-process"
        )
        train, test = (open_stream(name, cfg.data_dir, split, size) for split in ("train", "test"))
    else:
        options = dataset_options(graph, cfg)
        train = load_dataset(name, cfg.data_dir, "train", image_size=size, **options)
        test = load_dataset(name, cfg.data_dir, "test", image_size=size, **options)
    val = None
    if cfg.val_split > 0:
        train, val = split_validation(train, cfg.val_split, cfg.seed)
    if preprocessing is not None:
        fitted = Preprocessing.from_dict(preprocessing)
    elif isinstance(train, StreamDataset):
        from specc.training.data.streamloader import fit_streamed

        fitted = fit_streamed(cfg.preprocessing, train, workers)
    else:
        fitted = fit_preprocessing(cfg.preprocessing, train.images)
    return RunData(train, val, test, fitted, mode, line)


def choose_mode(graph: Graph, cfg: TrainConfig, requested: str, processes: int = 1) -> tuple[str, str]:
    """("memory" or "stream", the line that says why). "auto" streams a `folder` or `npy`
    dataset whose decoded train and test splits, times the processes on this machine (each
    holds its own copy), exceed MEMORY_SHARE of its RAM; other datasets are read whole."""
    name = dataset_name(cfg)
    if requested not in MODES:
        raise UserError(f"--data-mode {requested}: expected one of {', '.join(MODES)}")
    if requested == "stream" and name not in STREAMABLE:
        raise UserError(f"--data-mode stream: {name} is read whole; streaming is for folder and npy datasets")
    size = decoded_size(name, cfg.data_dir, graph.input_shape) if name in STREAMABLE else None
    if requested != "auto":
        return requested, f"data: {requested} (--data-mode {requested})"
    if size is None:
        return "memory", f"data: memory ({name} is read whole)"
    budget = int(MEMORY_SHARE * physical_memory())
    need = size * max(processes, 1)
    copies = f" x {processes} processes" if processes > 1 else ""
    if need <= budget:
        return "memory", f"data: memory (decoded {_bytes(size)}{copies} <= {_bytes(budget)}, a quarter of RAM)"
    return "stream", f"data: stream (decoded {_bytes(size)}{copies} > {_bytes(budget)}, a quarter of RAM)"


def resume_mode(requested: str, path, payload: dict | None) -> str:
    """The data mode of a run: a resumed run keeps the one it recorded (a run started in
    another mode is refused: its data fingerprints would not compare); a new one asks for
    `requested`."""
    saved = (payload or {}).get("data_mode")
    if saved is None:
        return requested if payload is None else "memory"
    if requested not in ("auto", saved):
        raise UserError(f"--data-mode {requested}: {path} was trained with --data-mode {saved}; a run keeps its mode")
    return saved


def default_workers(processes: int = 1) -> int:
    """Decoding workers per training process when --workers is not given: this process's
    share of the cores, at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) // max(processes, 1)))


def physical_memory() -> int:
    """Bytes of RAM on this machine (8 GiB assumed where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _bytes(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def load_split(graph: Graph, cfg: TrainConfig, split: str, mode: str = "memory") -> Split:
    """One split as the run with recipe `cfg` saw it: `train` without the held-out part,
    `val` the held-out part (the same images: `val_split` and `seed` decide them), `test`.
    `mode` "stream" lists it (a `StreamDataset`, as a streamed run read it) instead of
    decoding it into memory."""
    check_fits(graph, cfg)
    name, size, options = dataset_name(cfg), graph.input_shape[1:], dataset_options(graph, cfg)

    def read(part: str) -> Split:
        if mode == "stream":
            return open_stream(name, cfg.data_dir, part, size)
        return load_dataset(name, cfg.data_dir, part, image_size=size, **options)

    if split == "test":
        return read("test")
    if split == "val" and cfg.val_split == 0:
        raise UserError("split 'val': the run held out no validation set (val_split 0) — use the test or train split")
    train = read("train")
    if cfg.val_split == 0:
        return train
    train, val = split_validation(train, cfg.val_split, cfg.seed)
    return val if split == "val" else train


def make_loaders(data: RunData, cfg: TrainConfig, world, device, workers: int | None = 0):
    """(training loader, {split: (images, labels)} to evaluate, preprocess) for `Trainer`: in
    memory, whole splits on the device; streamed, loaders that decode in `workers` processes.
    `world` is the run's `World`; torch is imported here, not with this module."""
    import torch

    from specc.training.data import AugmentConfig, TensorLoader, torch_preprocess

    if cfg.batch_size % world.size:
        raise UserError(f"batch_size {cfg.batch_size} does not split evenly over {world.size} processes")
    preprocess = torch_preprocess(data.preprocessing, device)
    common = {
        "shuffle": True,
        "drop_last": False,
        "preprocess": preprocess,
        "augment": AugmentConfig(**cfg.augment.model_dump()),
        "device": device,
        "seed": cfg.seed,
        "rank": world.rank,
        "world_size": world.size,
    }
    batch = cfg.batch_size // world.size
    workers = default_workers(world.local_size) if workers is None else workers
    if isinstance(data.train, StreamDataset):
        from specc.training.data.streamloader import StreamLoader, StreamSplit

        loader = StreamLoader(data.train, batch, workers=workers, **common)
        eval_sets = {
            split: (StreamSplit(ds, device, workers), torch.from_numpy(ds.labels))
            for split, ds in data.eval_splits().items()
            if isinstance(ds, StreamDataset)
        }
    else:
        loader = TensorLoader(torch.from_numpy(data.train.images), torch.from_numpy(data.train.labels), batch, **common)
        eval_sets = {
            split: (torch.from_numpy(ds.images).to(device), torch.from_numpy(ds.labels).to(device))
            for split, ds in data.eval_splits().items()
            if isinstance(ds, ArrayDataset)
        }
    return loader, eval_sets, preprocess
