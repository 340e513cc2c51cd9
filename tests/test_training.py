"""Trainer, checkpoints and atomic writes: exact oracles (hand-computed LR/EMA/clipping values,
the linear-Gaussian DSM minimiser), bit-identical resume, failure modes, and 2-process DDP."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from scorematch.io import atomic_save, atomic_write_bytes, atomic_write_text
from scorematch.training import (
    Trainer,
    TrainingDiverged,
    batch_indices,
    ema_decay_at,
    latest_checkpoint,
    learning_rate,
    list_checkpoints,
    load_checkpoint,
)
from scorematch.training.data_order import DataOrder, epoch_permutation


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: threads only add contention (and the suite runs on 2 cores).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Net(nn.Module):
    """Small MLP with dropout, so the global RNG matters for exact resume."""

    def __init__(self, dim: int = 2, width: int = 16, dropout: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Linear(dim, width), nn.Tanh(), nn.Dropout(dropout), nn.Linear(width, dim)
        )

    def forward(self, x, t=None):
        return self.body(x)


class Linear(nn.Module):
    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x, t=None):
        return self.lin(x)


class Scalar(nn.Module):
    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(size, dtype=torch.float64))


def dsm_loss(sigma: float = 0.3):
    """Denoising score matching (Vincent 2011), weighted by σ²: noise from the trainer's generator."""

    def loss(model, batch, generator):
        eps = torch.randn(batch.shape, generator=generator, dtype=batch.dtype, device=batch.device)
        residual = model(batch + sigma * eps) + eps / sigma
        return 0.5 * sigma**2 * residual.pow(2).sum(1).mean()

    return loss


def _data(n: int = 50, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * torch.tensor([1.0, 0.5]) + torch.tensor([1.0, -1.0])


def _kw(**overrides):
    kw = dict(batch_size=16, lr=1e-2, warmup_steps=5, progress=False, log_every=4, seed=3)
    kw.update(overrides)
    return kw


def _csv_without_timing(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return [r[:4] for r in rows]  # step, loss, lr, grad_norm; seconds and steps_per_s are timing


def _assert_same_state(a: Trainer, b: Trainer) -> None:
    for module in ("model", "ema_model"):
        sa, sb = getattr(a, module).state_dict(), getattr(b, module).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (module, k)
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert oa.keys() == ob.keys()
    for i in oa:
        for key in oa[i]:
            assert torch.equal(oa[i][key], ob[i][key]), (i, key)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.step == b.step


# ---------------------------------------------------------------- schedules, clipping, EMA
def test_learning_rate_warmup_and_cosine_values():
    # Warm-up lr·s/W for s < W, then constant: hand values.
    assert learning_rate(1, lr=2e-3, warmup_steps=100) == pytest.approx(2e-5, rel=1e-15)
    assert learning_rate(50, lr=2e-3, warmup_steps=100) == pytest.approx(1e-3, rel=1e-15)
    assert learning_rate(100, lr=2e-3, warmup_steps=100) == 2e-3
    assert learning_rate(10**6, lr=2e-3, warmup_steps=100) == 2e-3
    # Cosine from step W=100 to T=1100: half-way gives the mean of lr and min_lr, T gives min_lr.
    kw = dict(lr=2e-3, warmup_steps=100, schedule="cosine", total_steps=1100, min_lr=1e-4)
    assert learning_rate(100, **kw) == pytest.approx(2e-3, rel=1e-15)
    assert learning_rate(600, **kw) == pytest.approx(1.05e-3, rel=1e-14)
    assert learning_rate(1100, **kw) == pytest.approx(1e-4, rel=1e-14)
    assert learning_rate(5000, **kw) == pytest.approx(1e-4, rel=1e-14)
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(1, lr=1.0, schedule="linear")


def test_trainer_applies_warmup_lr_per_step():
    seen = []

    def loss(model, batch, generator):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return model(batch).pow(2).mean()

    trainer = Trainer(Linear(), loss, _data(), **_kw(lr=0.1, warmup_steps=4, log_every=1))
    result = trainer.fit(6)
    assert seen == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rel=1e-15)
    assert [row["lr"] for row in result.history] == seen


def test_grad_clipping_bounds_global_norm():
    # loss = c·w with c = (3, 4, 0): gradient c, global norm 5 exactly.
    c = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)

    def loss(model, batch, generator):
        return (model.w * c).sum()

    data = torch.zeros(4, 1, dtype=torch.float64)
    clipped = Trainer(Scalar(3), loss, data, **_kw(batch_size=4, grad_clip=0.5))
    result = clipped.fit(1)
    assert result.history[0]["grad_norm"] == pytest.approx(5.0, rel=1e-12)  # logged before clipping
    assert clipped.model.w.grad.norm().item() == pytest.approx(0.5, rel=1e-6)
    torch.testing.assert_close(clipped.model.w.grad, c * 0.1, rtol=1e-6, atol=0)
    free = Trainer(Scalar(3), loss, data, **_kw(batch_size=4, grad_clip=None))
    assert free.fit(1).history[0]["grad_norm"] == pytest.approx(5.0, rel=1e-12)
    torch.testing.assert_close(free.model.w.grad, c, rtol=0, atol=0)


@pytest.mark.parametrize(("decay", "warmup"), [(0.5, False), (0.9, True)])
def test_ema_matches_hand_computed_recursion(decay, warmup):
    # loss = w (gradient 1): Adam moves w by exactly −lr·1/(1+eps) per step, so w_k = −k·lr/(1+eps),
    # and the EMA is e_k = d_k e_{k−1} + (1 − d_k) w_k with d_k = ema_decay_at(k), e_0 = w_0 = 0.
    lr, steps, eps = 0.01, 12, 1e-8

    def loss(model, batch, generator):
        return model.w.sum()

    data = torch.zeros(4, 1, dtype=torch.float64)
    trainer = Trainer(
        Scalar(),
        loss,
        data,
        **_kw(
            batch_size=4, lr=lr, warmup_steps=0, grad_clip=None, ema_decay=decay, ema_warmup=warmup
        ),
    )
    trainer.fit(steps)
    e = 0.0
    for k in range(1, steps + 1):
        d = ema_decay_at(k, decay, warmup)
        e = d * e + (1 - d) * (-k * lr / (1 + eps))
    assert trainer.model.w.item() == pytest.approx(-steps * lr / (1 + eps), rel=1e-12)
    assert trainer.ema_model.w.item() == pytest.approx(e, rel=1e-12)
    assert ema_decay_at(1, 0.999) == pytest.approx(2 / 11)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_ema_half_life_halves_weight():
    trainer = Trainer(
        Scalar(), lambda m, b, g: m.w.sum(), torch.zeros(2, 1), ema_half_life=100, progress=False
    )
    assert trainer.ema_decay**100 == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="not both"):
        Trainer(
            Scalar(), lambda m, b, g: m.w.sum(), torch.zeros(2, 1), ema_decay=0.9, ema_half_life=10
        )


# ---------------------------------------------------------------- learning
def test_training_learns_the_linear_gaussian_dsm_minimiser(tmp_path):
    # For data with mean μ and covariance Σ (empirical), the DSM minimiser among affine scores
    # s(x) = Ax + b is the score of N(μ, Σ + σ²I): A = −(Σ + σ²I)⁻¹, b = −Aμ.
    sigma = 0.3
    x = _data(4096, seed=5)
    trainer = Trainer(
        Linear(), dsm_loss(sigma), x, **_kw(batch_size=256, lr=3e-2, warmup_steps=20, log_every=50)
    )
    result = trainer.fit(600)
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / x.shape[0]
    a = -torch.linalg.inv(cov + sigma**2 * torch.eye(2))
    # Minimal σ²-weighted DSM loss = ½(d − σ² tr((Σ + σ²I)⁻¹)) (DSM = ESM + const, Vincent 2011);
    # the untrained (zero) score has loss ½d.  Window means of 50·256 samples: std ≈ 0.005.
    losses = [row["loss"] for row in result.history]
    floor = 0.5 * (2 - sigma**2 * torch.trace(-a).item())
    assert losses[0] > floor + 0.05
    assert losses[-1] == pytest.approx(floor, abs=0.03)
    # Tolerance: SGD noise of the EMA weights with batch 256 at this lr, measured ≈ 0.02.
    torch.testing.assert_close(trainer.ema_model.lin.weight.detach(), a, atol=0.08, rtol=0)
    torch.testing.assert_close(trainer.ema_model.lin.bias.detach(), -a @ mu, atol=0.08, rtol=0)


def test_iterable_data_restarts_each_epoch():
    x = _data(40)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)
    trainer = Trainer(Linear(), dsm_loss(), loader, **_kw(progress=True))
    assert trainer.fit(7).step == 7  # 3 batches per pass: the loader was restarted twice


def test_data_order_is_a_pure_function_of_seed_step_and_rank():
    # Batch s is positions [(s−1)B, sB) of perm_0 ‖ perm_1 ‖ …; rank r takes the r-th of W slices.
    n, size, world, seed = 50, 16, 2, 3
    stream = torch.cat([epoch_permutation(seed, e, n) for e in range(6)])
    for e in range(6):
        assert sorted(stream[e * n : (e + 1) * n].tolist()) == list(range(n))
    walked = DataOrder(seed, n, size, world)  # keeps a cache of epochs; must not matter
    for step in range(1, 15):
        batch = stream[(step - 1) * size : step * size]
        assert torch.equal(batch_indices(seed, step, num_examples=n, batch_size=size), batch)
        for rank in range(world):
            part = batch[rank * size // world : (rank + 1) * size // world]
            assert torch.equal(walked.indices(step, rank), part)
            fresh = batch_indices(
                seed, step, rank, num_examples=n, batch_size=size, world_size=world
            )
            assert torch.equal(fresh, part)
    assert not torch.equal(epoch_permutation(seed + 1, 0, n), epoch_permutation(seed, 0, n))

    # The Trainer reads exactly these rows.
    seen = []

    def loss(model, batch, generator):
        seen.append(batch[:, 0].long())
        return model(batch).pow(2).mean()

    rows = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 2).contiguous()
    Trainer(Linear(), loss, rows, **_kw(batch_size=size, seed=seed)).fit(7)
    for step, got in enumerate(seen, 1):
        assert torch.equal(got, stream[(step - 1) * size : step * size])
    with pytest.raises(ValueError, match="divisible by the world size"):
        DataOrder(seed, n, 15, 2)


# ---------------------------------------------------------------- checkpoints and resume
def test_checkpoint_round_trip_and_plain_safetensors(tmp_path):
    trainer = Trainer(
        Net(),
        dsm_loss(),
        _data(),
        out_dir=tmp_path,
        config={"objective": "dsm", "sigma": (0.3,)},
        **_kw(),
    )
    result = trainer.fit(9)
    path = result.checkpoint
    assert path == tmp_path / "checkpoints" / "step_00000009.safetensors"
    assert (tmp_path / "config.yaml").read_text().startswith("objective: dsm")

    # Readable with safetensors + json alone (no pickle, no scorematch).
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        torch.testing.assert_close(
            f.get_tensor("ema.body.0.weight"), trainer.ema_model.body[0].weight, rtol=0, atol=0
        )
    assert {
        "model.body.0.weight",
        "ema.body.3.bias",
        "optim.state.0.exp_avg",
        "optim.state.0.step",
    } <= keys
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["step"] == 9 and meta["config"] == {"objective": "dsm", "sigma": [0.3]}
    assert len(meta["config_hash"]) == 64 and meta["tensors_file"] == path.name
    assert meta["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]

    # load_checkpoint: EMA weights by default, raw weights with ema=False.
    fresh = Net(seed=99)
    ckpt = load_checkpoint(tmp_path, fresh)
    assert ckpt.step == 9 and ckpt.config["objective"] == "dsm"
    for k, v in trainer.ema_model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    load_checkpoint(path.with_suffix(".json"), fresh, ema=False)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)

    # A new trainer resumes the full state: weights, EMA, optimizer, generator, step.
    other = Trainer(Net(seed=7), dsm_loss(), _data(), out_dir=tmp_path, **_kw())
    assert other.resume() == 9
    _assert_same_state(trainer, other)


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path):
    # 50 rows, batch 16: batches straddle epochs; dropout uses the global RNG, DSM the generator.
    kw = _kw(checkpoint_every=10)
    full = Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path / "full", **kw)
    full.fit(30)

    # (a) stopped by fit(23) and resumed from its final checkpoint (off the log grid);
    # (b) killed after step 23 before its checkpoint: resume from 20, replaying logged rows 21–23.
    for case in ("a", "b"):
        run = tmp_path / case
        Trainer(Net(), dsm_loss(), _data(), out_dir=run, **kw).fit(23)
        assert "23," in (run / "metrics.csv").read_text()
        if case == "b":
            for suffix in (".json", ".safetensors"):
                (run / "checkpoints" / f"step_00000023{suffix}").unlink()
        resumed = Trainer(Net(seed=123), dsm_loss(), _data(), out_dir=run, **kw)
        resumed.fit(30, resume=True)
        _assert_same_state(full, resumed)
        assert _csv_without_timing(run / "metrics.csv") == _csv_without_timing(
            tmp_path / "full" / "metrics.csv"
        )


def test_rotation_and_incomplete_checkpoints(tmp_path):
    trainer = Trainer(
        Net(), dsm_loss(), _data(), out_dir=tmp_path, **_kw(checkpoint_every=2, keep_checkpoints=3)
    )
    trainer.fit(10)
    ckdir = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == [
        f"step_{s:08d}.{ext}" for s in (6, 8, 10) for ext in ("json", "safetensors")
    ]
    # Leftovers of a save killed mid-write: a tensor file without its JSON does not count as a
    # checkpoint; the next save (rotation) removes it and the temporary file.
    (ckdir / "step_00000007.safetensors").write_bytes(b"partial")
    (ckdir / ".step_00000012.abc.tmp.json").write_text("{")
    assert latest_checkpoint(ckdir).name == "step_00000010.safetensors"
    with pytest.raises(FileNotFoundError, match=r"step_00000007\.json"):
        load_checkpoint(ckdir / "step_00000007.safetensors")
    resumed = Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, **_kw(checkpoint_every=2))
    resumed.fit(12, resume=True)
    assert sorted(p.name for p in ckdir.iterdir()) == [
        f"step_{s:08d}.{ext}" for s in (8, 10, 12) for ext in ("json", "safetensors")
    ]

    # A truncated tensor file with a JSON is reported by name (checksum), not loaded, when it is
    # asked for by name; from the folder, the newest good checkpoint stands in for it, and the
    # damaged pair is moved aside (issue #15: fall back instead of stopping).
    target = ckdir / "step_00000012.safetensors"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"step_00000012\.safetensors.*corrupted or truncated"):
        load_checkpoint(target)
    assert load_checkpoint(tmp_path).step == 10
    assert (ckdir / "step_00000012.safetensors.corrupt").is_file()
    assert (ckdir / "step_00000012.json.corrupt").is_file()
    fallback = Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, **_kw())
    assert fallback.fit(14, resume=True).step == 14 and latest_checkpoint(ckdir).stem.endswith("14")
    (ckdir / "step_00000010.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"step_00000010\.json.*corrupted"):
        load_checkpoint(ckdir / "step_00000010.safetensors")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, **_kw()).fit(2)
    with pytest.raises(
        ValueError, match=r"step_00000002\.safetensors.*does not match the model.*shape mismatch"
    ):
        load_checkpoint(tmp_path, Net(width=8))
    with pytest.raises(ValueError, match="does not match the model"):
        Trainer(Net(width=8), dsm_loss(), _data(), out_dir=tmp_path, **_kw()).fit(4, resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, **_kw()).fit(4)


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
    base = dsm_loss()
    calls = []

    def loss(model, batch, generator):
        calls.append(1)
        value = base(model, batch, generator)
        return value * float("nan") if len(calls) == 7 else value

    trainer = Trainer(Net(), loss, _data(), out_dir=tmp_path, **_kw(checkpoint_every=5))
    with pytest.raises(
        TrainingDiverged,
        match=r"loss became NaN/inf at step 7; last good checkpoint: .*step_00000005\.safetensors",
    ) as err:
        trainer.fit(10)
    assert isinstance(err.value, ValueError) and err.value.step == 7
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [
        "step_00000005.safetensors"
    ]
    assert trainer.step == 6  # the bad update was not applied
    assert load_checkpoint(err.value.checkpoint).step == 5

    # A finite loss with an infinite gradient (d√|w|/dw at w = 0) is caught too.
    sqrt_loss = Trainer(
        Scalar(), lambda m, b, g: m.w.abs().sqrt().sum(), torch.zeros(2, 1), progress=False
    )
    with pytest.raises(
        TrainingDiverged,
        match=r"gradient norm became NaN/inf at step 1; last good checkpoint: none",
    ):
        sqrt_loss.fit(3)
    assert sqrt_loss.model.w.item() == 0.0 and sqrt_loss.step == 0


def test_sample_fn_sees_ema_and_leaves_training_unchanged(tmp_path):
    calls = []

    def sample_fn(ema_model, step, out_dir):
        torch.randn(100)  # a sampler using the global RNG must not change the training run
        calls.append((step, ema_model.training, out_dir))

    with_samples = Trainer(
        Net(), dsm_loss(), _data(), out_dir=tmp_path, sample_every=4, sample_fn=sample_fn, **_kw()
    )
    with_samples.fit(10)
    plain = Trainer(Net(), dsm_loss(), _data(), **_kw())
    plain.fit(10)
    assert calls == [(4, False, tmp_path), (8, False, tmp_path)]
    _assert_same_state(with_samples, plain)


def test_bad_arguments_raise_clear_errors():
    x = _data()
    for kwargs, match in [
        (dict(batch_size=0), "batch_size"),
        (dict(lr=-1.0), "lr"),
        (dict(schedule="step"), "schedule"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(sample_every=5), "sample_fn"),
        (dict(keep_checkpoints=0), "keep_checkpoints"),
    ]:
        with pytest.raises(ValueError, match=match):
            Trainer(Net(), dsm_loss(), x, **kwargs)
    with pytest.raises(ValueError, match="NaN"):
        Trainer(Net(), dsm_loss(), torch.full((4, 2), math.nan))
    with pytest.raises(ValueError, match="scalar tensor"):
        Trainer(Net(), lambda m, b, g: m(b), x, progress=False).fit(1)
    with pytest.raises(ValueError, match="resume=True needs an out_dir"):
        Trainer(Net(), dsm_loss(), x, progress=False).fit(1, resume=True)


# ---------------------------------------------------------------- atomic writes
def test_atomic_writes(tmp_path):
    target = tmp_path / "plot.png"
    atomic_write_text(target, "old")
    seen = []

    def failing(tmp):
        seen.append(tmp)
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save(target, failing)
    assert target.read_text() == "old" and seen[0].suffix == ".png" and seen[0].parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]  # temp file removed
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")


# ---------------------------------------------------------------- data parallel
def _ddp_target(x):
    return torch.sin(2 * x)


def _regression_loss(model, batch, generator):
    # Deterministic mean loss: DDP's averaged gradient equals the full-batch gradient.
    return (model(batch) - _ddp_target(batch)).pow(2).mean()


def _ddp_kw():
    return dict(
        batch_size=8,
        lr=1e-2,
        warmup_steps=2,
        progress=False,
        log_every=2,
        checkpoint_every=3,
        seed=4,
    )


def _ddp_worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    tmp = Path(tmp)
    try:
        x = _data(20)
        # Different initial weights per rank: the trainer must start every rank from rank 0's.
        full = Trainer(
            Net(dropout=0.0, seed=rank), _regression_loss, x, out_dir=tmp / "full", **_ddp_kw()
        )
        full.fit(6)
        Trainer(
            Net(dropout=0.0, seed=rank), _regression_loss, x, out_dir=tmp / "cut", **_ddp_kw()
        ).fit(4)
        resumed = Trainer(
            Net(dropout=0.0, seed=50 + rank), _regression_loss, x, out_dir=tmp / "cut", **_ddp_kw()
        )
        resumed.fit(6, resume=True)
        tensors = {f"full.{k}": v for k, v in full.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in full.ema_model.state_dict().items()})
        tensors.update({f"resumed.{k}": v for k, v in resumed.model.state_dict().items()})
        tensors.update({f"resumed_ema.{k}": v for k, v in resumed.ema_model.state_dict().items()})
        save_file(
            {k: v.contiguous() for k, v in tensors.items()}, str(tmp / f"rank{rank}.safetensors")
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # ranks stay bit-identical
    for k in [k for k in r0 if k.startswith(("full.", "ema."))]:
        prefix, name = k.split(".", 1)
        assert torch.equal(r0[k], r0[f"resumed{'' if prefix == 'full' else '_ema'}.{name}"]), k

    single = Trainer(Net(dropout=0.0, seed=0), _regression_loss, _data(20), **_ddp_kw())
    single.fit(6)
    # Same global batches; only the summation order of the gradient mean differs (float32 ulps).
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[f"full.{k}"], v, rtol=1e-5, atol=1e-6)
    rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "2", "4", "6"]
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == [
        f"step_{s:08d}.{e}" for s in (3, 6) for e in ("json", "safetensors")
    ]


def test_resume_names_the_config_keys_that_changed(tmp_path, caplog):
    config = {"model": {"width": 16}, "training": {"steps": 8}}
    Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, config=config, **_kw()).fit(8)
    changed = {"model": {"width": 32}, "training": {"steps": 12}}
    with caplog.at_level("WARNING", logger="scorematch.training"):
        Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, config=changed, **_kw()).resume()
    assert "different config: model.width, training.steps" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="scorematch.training"):
        trainer = Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, config=changed, **_kw())
        trainer.resume(expected_changes={"training.steps"})
    assert "different config: model.width" in caplog.text and "training.steps" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="scorematch.training"):
        trainer = Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, config=config, **_kw())
        trainer.resume()
    assert "different config" not in caplog.text


# ---------------------------------------------------------------- settings and the train state
def test_settings_whole_or_as_keywords_train_the_same_and_integers_are_checked_once():
    import numpy as np

    from scorematch._checks import check_positive_int
    from scorematch.training import TrainingSettings

    settings = TrainingSettings(
        batch_size=np.int64(16), lr=1e-2, warmup_steps=5, seed=3, log_every=4, progress=False
    )
    whole = Trainer(Net(), dsm_loss(), _data(), settings)
    keywords = Trainer(Net(), dsm_loss(), _data(), **_kw())
    mixed = Trainer(Net(), dsm_loss(), _data(), TrainingSettings(lr=0.5), **_kw())
    assert whole.settings == keywords.settings == mixed.settings
    assert isinstance(whole.settings.batch_size, int)
    for trainer in (whole, keywords, mixed):
        trainer.fit(9)
    _assert_same_state(whole, keywords)
    _assert_same_state(whole, mixed)
    with pytest.raises(TypeError, match=r"unknown option.*learning_rate"):
        Trainer(Net(), dsm_loss(), _data(), learning_rate=0.1)
    for bad in (3.0, True, 0, "4"):
        with pytest.raises(ValueError, match=r"^batch_size must be a positive integer, got "):
            TrainingSettings(batch_size=bad)
        with pytest.raises(ValueError, match=r"^n must be a positive integer, got "):
            check_positive_int(bad, "n")
    assert check_positive_int(np.int64(3), "n") == 3 and check_positive_int(np.uint8(2), "n") == 2


def test_the_train_state_is_one_dict_of_its_parts_state_dicts(tmp_path):
    trainer = Trainer(Net(), dsm_loss(), _data(), out_dir=tmp_path, **_kw())
    trainer.fit(6)
    state = trainer.state.state_dict()
    assert set(state) == {
        "step",
        "elapsed_seconds",
        "model",
        "ema",
        "optimizer",
        "rng",
        "world_size",
        "data_order",
        "validation",
        "step_engine",
        "metrics_window",
    }
    assert state["data_order"]["examples_consumed"] == 6 * 16
    # What the checkpoint gives back is what was saved: a fresh state loads it and equals it.
    ckpt = load_checkpoint(tmp_path)
    back = ckpt.train_state()
    assert back["step"] == 6 and back["metrics_window"] == state["metrics_window"]
    other = Trainer(Net(seed=5), dsm_loss(), _data(), **_kw())
    other.state.load_state_dict(back, "test")
    _assert_same_state(trainer, other)
    assert other.state.window.state_dict() == trainer.state.window.state_dict()
