"""specc train on a CUDA device (skipped where torch sees none: tests/train/conftest.py):
model, batches and running sums live on the GPU; bf16 and fp16 (with its GradScaler) train;
a checkpoint taken in the middle of an epoch resumes on the GPU; the streaming path pins its
batches; two GPUs train with DDP over NCCL."""

from __future__ import annotations

import subprocess

import pytest
import torch

from tests.train.test_stream import FOLDER_SPEC, make_folder
from tests.train.train_helpers import TINY, load, run_cli, specc_command, subprocess_env, write

pytestmark = pytest.mark.cuda


def trainer_on_cuda(tmp_path, text: str = TINY, **recipe):
    """A `Trainer` as `specc train --device cuda` builds it."""
    from specc.api import load as load_spec
    from specc.training.config import recipe_of
    from specc.training.distributed import World
    from specc.training.loop import RunOptions, Trainer
    from specc.training.setup import configure, pick_device

    graph = load_spec(write(tmp_path, text))
    cfg = recipe_of({**(graph.train or {}), "device": "cuda", **recipe})
    graph = graph.replace(train=cfg.to_dict())
    device = pick_device(cfg.device, World())
    configure(cfg, None, World(), device)
    return Trainer(graph, cfg, RunOptions(out=tmp_path / "run", progress=False), World(), device)


def test_model_data_and_running_sums_are_on_the_gpu(tmp_path):
    from specc.training.tally import EpochTally

    trainer = trainer_on_cuda(tmp_path)
    assert trainer.device.type == "cuda"
    assert {p.device.type for p in trainer.model.parameters()} == {"cuda"}
    x, y = next(iter(trainer.loader.batches()))
    assert (x.device.type, y.device.type, x.dtype, y.dtype) == ("cuda", "cuda", torch.float32, torch.int64)
    for images, labels in trainer.eval_sets.values():
        assert images.device.type == labels.device.type == "cuda"
    tally = EpochTally(trainer.device)
    loss, logits = trainer.train_step(x, y, 0.01)
    assert loss.device.type == logits.device.type == "cuda"
    tally.add(0, loss, logits, y)
    assert tally.sums.device.type == "cuda"
    snapshot = tally.sync(trainer.world)
    assert snapshot.seen == len(y) and snapshot.first_bad is None


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_fp16_keeps_its_grad_scaler(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    out = tmp_path / "run"
    assert run_cli("train", write(tmp_path, TINY), "--out", str(out), "--device", "cuda", "--precision", precision) == 0
    saved = load(out / "last.pt")
    assert saved["device"] == "cuda" and saved["config"]["precision"] == precision
    losses = [row["train_loss"] for row in saved["history"]]
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0]
    if precision == "fp16":
        assert saved["scaler"] is not None and saved["scaler"]["scale"] > 0  # GradScaler state, resumable
    else:
        assert saved["scaler"] is None
    assert all(t.dtype == torch.float32 for t in saved["model"].values() if t.is_floating_point())


def test_a_mid_epoch_checkpoint_resumes_on_the_gpu(tmp_path):
    spec = write(tmp_path, TINY)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert run_cli("train", spec, "--out", str(straight), "--device", "cuda") == 0
    assert run_cli("train", spec, "--out", str(cut), "--device", "cuda", "--max-steps", "21") == 0
    stopped = load(cut / "last.pt")
    assert (stopped["epoch"], stopped["step"], stopped["device"]) == (1, 5, "cuda")
    assert len(stopped["rng"]["cuda"][0]) >= 1  # the CUDA generator's state is saved too
    assert run_cli("train", "--resume", str(cut)) == 0
    a, b = load(straight / "last.pt"), load(cut / "last.pt")
    assert b["global_step"] == 48 and [r["epoch"] for r in b["history"]] == [1, 2, 3]
    # cuDNN may pick other kernels in another process (cudnn.benchmark), so the GPU promises
    # agreement to rounding, not bit-identity.
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-3, atol=1e-4, msg=name)


def test_streamed_batches_are_pinned_and_match_the_in_memory_ones_on_the_gpu(tmp_path):
    from specc.training.data import AugmentConfig, TensorLoader
    from specc.training.data.folder import load_folder
    from specc.training.data.stream import open_stream
    from specc.training.data.streamloader import StreamLoader

    folder = make_folder(tmp_path / "folder")
    memory, stream = load_folder(str(folder), "train", (8, 8)), open_stream("folder", str(folder), "train", (8, 8))
    common = {"shuffle": True, "drop_last": False, "preprocess": lambda x: x / 255, "device": "cuda"}
    common["augment"] = AugmentConfig(flip=True, translate=1)
    expected = list(TensorLoader(torch.from_numpy(memory.images), torch.from_numpy(memory.labels), 16, **common))
    loader = StreamLoader(stream, 16, workers=2, **common)
    assert loader.reader.pin_memory
    got = list(loader.batches())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))
    assert run_cli(
        "train", write(tmp_path, FOLDER_SPEC), "--data-dir", str(folder), "--out", str(tmp_path / "run"),
        "--device", "cuda", "--data-mode", "stream", "--workers", "2",
    ) == 0  # fmt: skip


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_with_ddp_over_nccl(tmp_path):
    spec = write(tmp_path, TINY.replace("epochs: 3", "epochs: 1"))
    out = tmp_path / "run"
    result = subprocess.run(
        specc_command("train", spec, "--out", str(out), "--nproc", "2", "--device", "cuda", "--no-progress"),
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cuda fp32" in result.stdout and "x 2 processes" in result.stdout
    assert "2 processes ended with identical weights" in result.stdout
    saved = load(out / "last.pt")
    assert saved["world_size"] == 2 and saved["device"] == "cuda" and len(saved["rng"]["cuda"]) == 2
