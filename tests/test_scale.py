"""Beyond one CPU process, in the library: devices, thread defaults, mixed precision (bf16/fp16
against fp32 on the objectives that differentiate twice), gradient accumulation (exactly one
batch K times larger), torch.compile, the two ways gradients are averaged over ranks (DDP and the
explicit all-reduce, each against the single-process result) and the row blocks of sampling.

The command line under torchrun is tests/test_distributed_cli.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from scorematch.devices import default_threads, resolve_device
from scorematch.energy import EnergyScore
from scorematch.models import build_model
from scorematch.objectives import ism, ssm
from scorematch.runs import sharding
from scorematch.runs.build import Unconditional
from scorematch.runs.execution import Execution, record_execution
from scorematch.runs.sharding import BLOCK_ROWS, block_seed, map_blocks
from scorematch.training import Trainer
from scorematch.training.precision import Precision


class Net(nn.Module):
    def __init__(self, dim: int = 2, width: int = 16, seed: int = 0, dtype=torch.float32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, dim))
        self.to(dtype)

    def forward(self, x, t=None):
        return self.body(x)


def _data(n: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.8 + 0.3).to(dtype)


def _regression_loss(model, batch, generator):
    # Deterministic and a mean over rows: every way of splitting a batch has the same gradient.
    return (model(batch) - torch.sin(2 * batch)).pow(2).mean()


def _ism_loss(model, batch, generator):
    return ism(lambda y: model(y), batch)


def _kw(**overrides):
    kw = dict(batch_size=8, lr=1e-2, warmup_steps=2, progress=False, log_every=2, seed=4)
    kw.update(overrides)
    return kw


# ---------------------------------------------------------------- devices and threads
def test_resolve_device_names_what_exists_and_refuses_the_rest(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == cpu
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    for bad in ("gpu", "tpu", "cuda:x", ""):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match="CUDA is not available"):
                resolve_device(name)
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            resolve_device("mps")


def test_default_threads_is_omp_num_threads_else_one(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    for unset in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert default_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == 1


# ---------------------------------------------------------------- mixed precision
def _second_order_case(name: str, dim: int, seed: int):
    """A score model with weights of unit scale (none zero-initialised) and a batch."""
    net = build_model(name, (dim,), seed=seed, width=64, depth=2, time_embed_dim=0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(100 + seed)
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
    model = EnergyScore(net) if name == "energy-mlp" else Unconditional(net)
    x = torch.randn(256, dim, generator=torch.Generator().manual_seed(seed))
    return model, x


# Unit roundoff u: half the gap between 1 and the next number (bf16: 8 significant bits, fp16: 11).
UNIT_ROUNDOFF = {"bf16": 2.0**-8, "fp16": 2.0**-11}


@pytest.mark.parametrize("model_name", ["mlp", "energy-mlp"])
@pytest.mark.parametrize("objective", ["ism", "ssm", "ssm-vr"])
def test_low_precision_keeps_the_second_order_objectives_correct(model_name, objective):
    """bf16/fp16 autocast of the network against fp32, for the losses that differentiate twice.

    Tolerance: autocast rounds the inputs of every matrix product to the low precision, a
    relative error of at most u per element (u = 2⁻⁸ for bf16, 2⁻¹¹ for fp16); the network's
    own few layers, the Jacobian–vector products of the trace and the backward pass compose
    O(10) such roundings whose errors are independent, so the loss (terms of unit scale) and
    the gradient (relative, in norm) stay within a few u.  Measured: at most 1.7 u (bf16) and
    1.3 u (fp16) over these cases and seeds; allowed: 4 u.  The loss's own sums run in float32
    (Autocast casts the network's output back), and the gradient must differ from fp32's by more
    than u/20 — proof that the network really ran in low precision.
    """
    for seed, dim in ((0, 2), (1, 16)):
        model, x = _second_order_case(model_name, dim, seed)
        results = {}
        for precision in ("fp32", "bf16", "fp16"):
            wrapped = Precision(precision, torch.device("cpu")).wrap(model)
            model.zero_grad()
            g = torch.Generator().manual_seed(7)
            if objective == "ism":
                loss = ism(wrapped, x)
            else:
                loss = ssm(wrapped, x, variance_reduced=objective == "ssm-vr", generator=g)
            loss.backward()
            assert loss.dtype == torch.float32
            grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results[precision] = (float(loss.detach()), grad.clone())
        loss32, grad32 = results["fp32"]
        for precision, u in UNIT_ROUNDOFF.items():
            loss, grad = results[precision]
            rel = float((grad - grad32).norm() / grad32.norm())
            assert abs(loss - loss32) <= 4 * u, (precision, seed, loss, loss32)
            assert u / 20 < rel <= 4 * u, (precision, seed, rel)


def test_fp16_training_resumes_exactly_with_its_gradient_scaler(tmp_path):
    """The scaler's state (scale, growth tracker) is checkpointed: stop + resume = one run."""
    x = _data(40)
    full = Trainer(Net(), _ism_loss, x, precision="fp16", **_kw())
    full.fit(6)
    Trainer(Net(), _ism_loss, x, out_dir=tmp_path, precision="fp16", **_kw()).fit(3)
    resumed = Trainer(Net(seed=9), _ism_loss, x, out_dir=tmp_path, precision="fp16", **_kw())
    resumed.fit(6, resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.engine.precision.scaler.get_scale() == full.engine.precision.scaler.get_scale()
    with pytest.raises(ValueError, match="precision must be one of"):
        Trainer(Net(), _ism_loss, x, precision="fp8", **_kw())


def test_bf16_training_follows_fp32_training():
    x = _data(40)
    runs = {p: Trainer(Net(), _ism_loss, x, precision=p, **_kw()) for p in ("fp32", "bf16")}
    for trainer in runs.values():
        trainer.fit(10)
    # Ten Adam steps of lr 1e-2 from the same start: the paths differ by the bf16 gradient
    # error (≤ 4u ≈ 1.6 % per step, relative), far less than they moved.
    for (k, a), b in zip(
        runs["fp32"].model.state_dict().items(), runs["bf16"].model.state_dict().values()
    ):
        moved = float((a - Net().state_dict()[k]).abs().max())
        assert float((a - b).abs().max()) < 0.1 * moved, k


# ---------------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("grad_accum", [3, 5])
def test_grad_accum_is_exactly_the_update_of_one_batch_k_times_larger(grad_accum):
    """float64, a deterministic mean loss, clipping active: K micro-batches (12 rows into 3 × 4,
    or unevenly into 3+3+2+2+2) give the update of the whole batch up to float64 rounding."""
    x = _data(60, torch.float64)
    kw = _kw(batch_size=12, grad_clip=0.05, lr=5e-2)
    one = Trainer(Net(dtype=torch.float64), _regression_loss, x, **kw)
    many = Trainer(Net(dtype=torch.float64), _regression_loss, x, grad_accum=grad_accum, **kw)
    r1, rk = one.fit(8), many.fit(8)
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(many.model.state_dict()[k], v, rtol=1e-12, atol=1e-14)
    for a, b in zip(r1.history, rk.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-12)
    with pytest.raises(ValueError, match="exceeds the 12 rows"):
        Trainer(
            Net(), _regression_loss, _data(20), batch_size=12, grad_accum=13, progress=False
        ).fit(1)


# ---------------------------------------------------------------- torch.compile
def test_compile_trains_like_eager_and_is_refused_for_second_order_losses():
    x = _data(40)
    eager = Trainer(Net(), _regression_loss, x, first_order=True, **_kw())
    compiled = Trainer(Net(), _regression_loss, x, first_order=True, compile="eager", **_kw())
    eager.fit(4)
    compiled.fit(4)
    for k, v in eager.model.state_dict().items():  # the same operations, traced once
        torch.testing.assert_close(compiled.model.state_dict()[k], v, rtol=1e-6, atol=1e-7)
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())  # no _orig_mod.
    with pytest.raises(ValueError, match="compile needs a first-order loss"):
        Trainer(Net(), _ism_loss, x, compile=True, **_kw())


def test_run_settings_are_recorded_checked_and_kept_on_resume():
    config = {"objective": {"name": "ism"}, "model": {"name": "mlp"}, "training": {}}
    cpu = Execution(torch.device("cpu"))
    record_execution(config, cpu, precision="bf16", grad_accum=2)
    assert config["training"] == {
        "precision": "bf16",
        "compile": False,
        "grad_accum": 2,
        "device": "cpu",
        "world_size": 1,
    }
    record_execution(config, cpu, resume=True)  # a resume keeps what the run used
    assert config["training"]["precision"] == "bf16" and config["training"]["grad_accum"] == 2
    record_execution(config, cpu, resume=False)  # a new run starts from the defaults
    assert config["training"]["precision"] == "fp32"
    with pytest.raises(ValueError, match="--compile applies to the first-order objectives"):
        record_execution(config, cpu, compile=True)
    with pytest.raises(ValueError, match="unknown precision 'fp64'"):
        record_execution(config, cpu, precision="fp64")
    with pytest.raises(ValueError, match="grad_accum must be a positive integer"):
        record_execution(config, cpu, grad_accum=0)


# ---------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    try:
        tensors = {}
        for name, loss, first_order, accum in (
            ("ddp", _regression_loss, True, 2),  # DDP, with no_sync on the first micro-batch
            ("allreduce", _ism_loss, False, 1),  # torch.func/create-graph loss: explicit
        ):
            trainer = Trainer(
                Net(seed=rank), loss, _data(24), first_order=first_order, grad_accum=accum, **_kw()
            )
            assert trainer.engine.sync == ("ddp" if first_order else "all-reduce")
            trainer.fit(6)
            tensors.update({f"{name}.{k}": v for k, v in trainer.model.state_dict().items()})
        save_file(tensors, str(Path(tmp) / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_ddp_and_the_explicit_all_reduce_give_the_single_process_result(tmp_path):
    """The one rule (first-order loss → DDP, else the explicit all-reduce) on two gloo ranks.

    Tolerance: the ranks see the same global batches and start from rank 0's weights, so they
    differ from one process only in the order of the gradient sums (a per-rank mean, then the
    mean over ranks): float32 rounding, ~1e-7 relative per step, over 6 Adam steps."""
    mp.spawn(_sync_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # the ranks stay identical
    for name, loss in (("ddp", _regression_loss), ("allreduce", _ism_loss)):
        single = Trainer(Net(seed=0), loss, _data(24), **_kw())
        single.fit(6)
        for k, v in single.model.state_dict().items():
            torch.testing.assert_close(r0[f"{name}.{k}"], v, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- row blocks
def test_rows_come_in_blocks_seeded_alone_and_split_over_ranks_by_block(monkeypatch):
    seen = []
    out = map_blocks(lambda k, a, b: seen.append((k, a, b)) or b - a, 2500)
    assert seen == [(0, 0, 1000), (1, 1000, 2000), (2, 2000, 2500)] and out == [1000, 1000, 500]
    assert BLOCK_ROWS == 1000 and block_seed(7, 0) == 7 and block_seed(7, 1) != block_seed(8, 1)
    # Each rank computes a contiguous share of the blocks (the gather, faked here, returns only
    # this rank's part): every block exactly once, in order, whatever the number of ranks.
    monkeypatch.setattr(sharding, "gather", lambda obj, world_size: [obj])
    for world, expected in ((2, [[0], [1, 2]]), (3, [[0], [1], [2]]), (4, [[], [0], [1], [2]])):
        shares = [
            [k for k, _, _ in map_blocks(lambda k, a, b: (k, a, b), 2500, world_size=world, rank=r)]
            for r in range(world)
        ]
        assert shares == expected
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        map_blocks(lambda k, a, b: None, 10, block_rows=0)
