"""The `train:` recipe: paper defaults, located validation errors, flags as overrides, and
the learning-rate schedule. None of this imports torch."""

from __future__ import annotations

import math

import pytest

from specc.api import load
from specc.cli import main
from specc.training.config import DATASET_NAMES, TrainConfig, flag_overrides
from specc.training.data import DATASETS
from specc.training.schedule import lr_at
from tests.conftest import SPECS

HEAD = "name: t\ninput: {channels: 1, size: 8}\nclasses: 4\nlayers:\n  - {type: conv, filters: 4, kernel: 1}\n"


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.nesterov) == ("sgd", 0.9, 0.001, False)
    assert cfg.lr in (0.25, 0.1, 0.05, 0.01) and cfg.lr == 0.01
    assert (cfg.schedule, cfg.milestones, cfg.gamma, cfg.epochs) == ("multistep", [200, 250, 300], 0.1, 350)
    assert (cfg.warmup_epochs, cfg.label_smoothing, cfg.precision) == (0.0, 0.0, "fp32")
    assert cfg.channels_last and cfg.preprocessing == "normalize"


def test_dataset_names_agree_with_the_data_layer():
    assert DATASET_NAMES == DATASETS


def check_errors(tmp_path, capsys, train: str, *args: str) -> list[str]:
    (tmp_path / "spec.yaml").write_text(HEAD + "train:\n" + train)
    code = main(["check", str(tmp_path / "spec.yaml"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    return [line.replace(str(tmp_path) + "/", "") for line in err.strip().splitlines()]


def test_errors_are_located_and_all_reported(tmp_path, capsys):
    train = "  lr: -1\n  epoch: 3\n  augment: {flip: yes, transl: 2}\n  optimizer: sgdd\n"
    assert check_errors(tmp_path, capsys, train) == [
        "spec.yaml:7:7: train: lr = -1: input should be greater than 0 — expected a learning rate > 0",
        "spec.yaml:8:3: train: unknown key 'epoch' for train — did you mean 'epochs'?",
        "spec.yaml:9:24: train: unknown key 'transl' for train — did you mean 'translate'?",
        "spec.yaml:10:14: train: optimizer = 'sgdd' is not valid — expected sgd or adamw",
    ]


def test_cross_field_errors(tmp_path, capsys):
    train = "  milestones: [30, 20]\n  warmup_epochs: 5\n  epochs: 5\n  best_by: val\n"
    assert check_errors(tmp_path, capsys, train) == [
        "spec.yaml:7:15: train: milestones = [30, 20]: must be strictly increasing",
        "spec.yaml:8:18: train: warmup_epochs = 5.0 must be less than epochs = 5",
        "spec.yaml:10:12: train: best_by = 'val' needs a validation set: set val_split, e.g. 0.1",
    ]


def test_set_overrides_are_validated_and_located(tmp_path, capsys):
    errors = check_errors(tmp_path, capsys, "  lr: 0.1\n", "--set", "train.lr=fast", "--set", "train.momentun=0.5")
    assert errors == [
        "--set train.lr=fast: train: lr = 'fast': input should be a valid number — expected a learning rate > 0",
        "--set train.momentun=0.5: train: unknown key 'momentun' for train — did you mean 'momentum'?",
    ]


def test_flags_become_overrides():
    assert flag_overrides({"lr": 0.05, "data": "cifar10", "data_dir": "a b: c", "epochs": None}) == [
        'train.dataset="cifar10"',
        'train.data_dir="a b: c"',
        "train.lr=0.05",
    ]
    graph = load(str(SPECS / "allcnn_c.yaml"), flag_overrides({"lr": 0.05, "data_dir": "a b: c"}))
    assert graph.train == {"lr": 0.05, "data_dir": "a b: c"}


def test_fashion_mnist_spec_derives_from_allcnn_c():
    graph = load(str(SPECS / "allcnn_c_fmnist.yaml"))
    assert graph.input_shape == (1, 28, 28) and graph.classes == 10
    assert graph.node("conv1").op.filters == 24 and graph.node("conv9").op.filters == 10
    assert TrainConfig.model_validate(graph.train).dataset == "fashion-mnist"


def test_multistep_follows_the_paper():
    cfg = TrainConfig(lr=0.1)
    rates = [lr_at(cfg, epoch, 0, 100) for epoch in (0, 199, 200, 249, 250, 300, 349)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.0001, 0.0001])


def test_warmup_then_cosine():
    cfg = TrainConfig(lr=0.1, schedule="cosine", epochs=10, warmup_epochs=1)
    assert lr_at(cfg, 0, 0, 10) == pytest.approx(0.1 * 0.1 / 1.1)  # never 0 on the first step
    assert lr_at(cfg, 1, 0, 10) == pytest.approx(0.1)  # warm-up done: the top of the cosine
    assert lr_at(cfg, 5, 5, 10) == pytest.approx(0.05)  # half-way through the cosine
    assert lr_at(cfg, 9, 9, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 8.9 / 9)))
