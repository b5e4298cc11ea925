"""The Mamba encoder: the parallel scan against the sequential reference, causality, padding, parameter names."""

from __future__ import annotations

import math

import pytest
import torch

from world_model.models import mamba
from world_model.models.mamba import (
    MAX_SCAN_STATE_VALUES,
    MambaBlock,
    MambaConfig,
    MambaEncoder,
    backend_for,
    scan_rows,
    selective_scan,
    selective_scan_parallel,
    selective_scan_reference,
)

TINY = MambaConfig(d_model=8, d_state=4, d_conv=3, n_layers=2)


def scan_inputs(batch: int, d_inner: int, d_state: int, length: int, dtype: torch.dtype = torch.float64,
                seed: int = 0, delta_scale: float = 1.0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return {
        "u": randn(batch, d_inner, length),
        "delta": delta_scale * randn(batch, d_inner, length),
        "A": -torch.exp(randn(d_inner, d_state)),  # < 0, as the block's -exp(A_log)
        "B": randn(batch, d_state, length),
        "C": randn(batch, d_state, length),
        "D": randn(d_inner),
        "z": randn(batch, d_inner, length),
        "delta_bias": randn(d_inner),
    }


SHAPES = [  # (batch, d_inner, d_state, L, chunk_size)
    (2, 3, 4, 1, 8),  # a single step
    (1, 2, 3, 5, 8),  # shorter than a chunk
    (2, 3, 4, 16, 4),  # a whole number of chunks, two recursion levels
    (2, 5, 4, 37, 4),  # L not a multiple of the chunk size
    (1, 2, 3, 130, 2),  # deepest recursion
    (1, 3, 2, 100, 7),  # a chunk size that is no power of two
]


METHODS = ["sequential", "chunked"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch, d_inner, d_state, length, chunk_size", SHAPES)
@pytest.mark.parametrize("with_z, with_delta_bias, with_D", [(True, True, True), (False, False, False),
                                                            (True, False, True), (False, True, False)])
def test_parallel_scan_equals_reference(batch, d_inner, d_state, length, chunk_size, with_z, with_delta_bias,
                                        with_D, method) -> None:
    inputs = scan_inputs(batch, d_inner, d_state, length)
    for name, present in (("z", with_z), ("delta_bias", with_delta_bias), ("D", with_D)):
        if not present:
            inputs[name] = None
    expected = selective_scan_reference(**inputs)
    got = selective_scan_parallel(**inputs, chunk_size=chunk_size, method=method)
    assert got.shape == (batch, d_inner, length) and got.dtype == torch.float64 and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("delta_softplus", [True, False])
def test_parallel_scan_without_softplus(delta_softplus: bool, method: str) -> None:
    inputs = scan_inputs(2, 3, 4, 21)
    inputs["delta"] = inputs["delta"].abs()  # positive step sizes without the softplus
    inputs["delta_bias"] = None
    torch.testing.assert_close(
        selective_scan_parallel(**inputs, delta_softplus=delta_softplus, chunk_size=4, method=method),
        selective_scan_reference(**inputs, delta_softplus=delta_softplus), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_parallel_scan_float32_and_half_keep_the_input_dtype(method: str) -> None:
    inputs = scan_inputs(2, 4, 3, 50, dtype=torch.float32)
    expected = selective_scan_reference(**inputs)
    got = selective_scan_parallel(**inputs, method=method)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    half = {name: t.to(torch.bfloat16) if name in ("u", "delta", "z") else t for name, t in inputs.items()}
    got_half = selective_scan_parallel(**half, method=method)
    assert got_half.dtype == torch.bfloat16
    # computed in float32 from the rounded inputs, as the reference does
    torch.testing.assert_close(got_half, selective_scan_reference(**half), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("method", METHODS)
def test_parallel_scan_under_autocast_computes_in_float32_and_backpropagates(method: str) -> None:
    """Mixed-precision training (bfloat16 autocast: CUDA's default, here on the CPU) runs the scan in
    float32 as without autocast; under autocast its bmm had run in bfloat16 and backward had failed."""
    inputs = {name: t.float().requires_grad_(name == "u") for name, t in scan_inputs(2, 4, 3, 30).items()}
    expected = selective_scan_parallel(**inputs, method=method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = selective_scan_parallel(**inputs, method=method)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    assert inputs["u"].grad is not None and inputs["u"].grad.dtype == torch.float32
    encoder = MambaEncoder(TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(torch.randn(2, 10, TINY.d_model))
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("length, chunk_size", [(1, 8), (2, 2), (13, 4), (64, 8), (45, 3)])
def test_parallel_scan_gradients_equal_reference(length: int, chunk_size: int, method: str) -> None:
    inputs = scan_inputs(2, 3, 4, length, seed=1)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    for name in names:
        inputs[name].requires_grad_(True)
    upstream = torch.randn(2, 3, length, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = torch.autograd.grad(selective_scan_reference(**inputs), [inputs[n] for n in names], upstream)
    got = torch.autograd.grad(selective_scan_parallel(**inputs, chunk_size=chunk_size, method=method),
                              [inputs[n] for n in names], upstream)
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"d/d{name}: {m}")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps_per_block", [1, 2, 3])
def test_parallel_scan_gradients_with_blocked_reductions(steps_per_block: int, method: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """dLoss/dA is summed over time block by block: one step per block, two, and a short last block."""
    batch, d_inner, d_state, length = 2, 3, 4, 7
    monkeypatch.setattr(mamba, "_REDUCTION_BLOCK_ELEMENTS", steps_per_block * batch * d_inner * d_state)
    inputs = scan_inputs(batch, d_inner, d_state, length, seed=6)
    names = ["u", "delta", "A", "B", "C", "delta_bias"]
    for name in names:
        inputs[name].requires_grad_(True)
    expected = torch.autograd.grad(selective_scan_reference(**inputs).square().sum(), [inputs[n] for n in names])
    got = torch.autograd.grad(selective_scan_parallel(**inputs, chunk_size=2, method=method).square().sum(),
                              [inputs[n] for n in names])
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"d/d{name}: {m}")


@pytest.mark.parametrize("method, plain_loop_max_length", [("sequential", 32), ("sequential", 3), ("chunked", 32)])
def test_parallel_scan_gradcheck(method: str, plain_loop_max_length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mamba, "PLAIN_LOOP_MAX_LENGTH", plain_loop_max_length)  # 3: blocks of 4 steps
    inputs = scan_inputs(1, 2, 3, 11, seed=3)
    keys = ["u", "delta", "A", "B", "C", "D"]
    tensors = [inputs[k].requires_grad_(True) for k in keys]

    def scan(*args: torch.Tensor) -> torch.Tensor:
        return selective_scan_parallel(*args, z=inputs["z"], delta_bias=inputs["delta_bias"], chunk_size=2,
                                       method=method)

    assert torch.autograd.gradcheck(scan, tensors)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("length", [1, 9])  # L = 1: the time-major u is a view of the caller's
def test_parallel_scan_backward_twice_and_inputs_unwritten(length: int, method: str) -> None:
    """Forward and backward write only buffers of their own: a second backward through the graph agrees."""
    inputs = scan_inputs(2, 3, 4, length, seed=4)
    names = ["u", "delta", "A", "B", "C"]
    for name in names:
        inputs[name].requires_grad_(True)
    before = {name: t.detach().clone() for name, t in inputs.items()}
    out = selective_scan_parallel(**inputs, chunk_size=4, method=method)
    first = torch.autograd.grad(out.sum(), [inputs[n] for n in names], retain_graph=True)
    second = torch.autograd.grad(out.sum(), [inputs[n] for n in names])
    for g1, g2 in zip(first, second):
        assert torch.equal(g1, g2)
    assert all(torch.equal(inputs[name].detach(), t) for name, t in before.items())


def test_auto_method_is_sequential_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    chunked_scan = mamba._chunked_linear_scan

    def counting_scan(*args, **kwargs):
        calls.append(args[0].shape[0])
        return chunked_scan(*args, **kwargs)

    monkeypatch.setattr(mamba, "_chunked_linear_scan", counting_scan)
    for length in (7, 40):  # a plain loop, blocks
        inputs = scan_inputs(2, 3, 4, length, seed=5)
        assert mamba.scan_method_for(inputs["u"]) == "sequential"
        inputs["u"].requires_grad_(True)
        out = selective_scan_parallel(**inputs)
        out.sum().backward()
        assert not calls
        assert torch.equal(out, selective_scan_parallel(**inputs, method="sequential"))
        torch.testing.assert_close(out, selective_scan_reference(**inputs), rtol=1e-10, atol=1e-10)
    assert mamba.scan_method_for(torch.empty(2, 3, 7, device="meta")) == "chunked"  # off the CPU: as before


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("plain_loop_max_length", [32, 0])  # 0: blocks from L = 2 on
def test_sequential_linear_scan_both_directions(plain_loop_max_length: int, reverse: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """In place, against a loop: plain up to 32 steps, then blocks of ceil(sqrt(L)) (short last blocks too)."""
    monkeypatch.setattr(mamba, "PLAIN_LOOP_MAX_LENGTH", plain_loop_max_length)
    for length in range(1, 60):
        generator = torch.Generator().manual_seed(length)
        a = torch.rand(length, 2, 3, dtype=torch.float64, generator=generator)
        x = torch.randn(length, 2, 3, dtype=torch.float64, generator=generator)
        a_before, expected = a.clone(), x.clone()
        for t in (range(length - 2, -1, -1) if reverse else range(1, length)):
            expected[t] += a[t + 1] * expected[t + 1] if reverse else a[t] * expected[t - 1]
        got = mamba._sequential_linear_scan_(a, x, reverse=reverse)
        assert got is x and torch.equal(a, a_before)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=lambda m, n=length: f"L={n}: {m}")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length, chunk_size", [(1, 4), (2, 4), (9, 2), (37, 4), (130, 3)])
def test_linear_scan_both_directions_leave_inputs_unwritten(length: int, chunk_size: int, reverse: bool) -> None:
    generator = torch.Generator().manual_seed(length)
    a = torch.rand(length, 2, 3, dtype=torch.float64, generator=generator)
    x = torch.randn(length, 2, 3, dtype=torch.float64, generator=generator)
    a_before, x_before = a.clone(), x.clone()
    state, expected = torch.zeros(2, 3, dtype=torch.float64), [None] * length
    for t in (reversed(range(length)) if reverse else range(length)):
        state = a[t] * state + x[t]
        expected[t] = state
    got = mamba._chunked_linear_scan(a, x, chunk_size, reverse=reverse)
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-12, atol=1e-12)
    assert torch.equal(a, a_before) and torch.equal(x, x_before)


@pytest.mark.parametrize("method", METHODS)
def test_long_sequence_with_large_steps_stays_finite_and_matches(method: str) -> None:
    inputs = scan_inputs(1, 4, 4, 2048, dtype=torch.float32, delta_scale=20.0)
    inputs["delta_bias"] = torch.full((4,), 5.0)  # softplus(delta) up to ~100: exp(delta * A) underflows to 0
    inputs["A"] = inputs["A"] * 16
    for name in ("u", "delta", "A", "B", "C"):
        inputs[name].requires_grad_(True)
    out = selective_scan_parallel(**inputs, method=method)
    assert torch.isfinite(out).all()
    grads = torch.autograd.grad(out.square().sum(), [inputs[n] for n in ("u", "delta", "A", "B", "C")])
    assert all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        torch.testing.assert_close(out, selective_scan_reference(**inputs), rtol=1e-4, atol=1e-4)


def test_scan_rejects_bad_shapes() -> None:
    inputs = scan_inputs(2, 3, 4, 5)
    inputs["B"] = inputs["B"][:, :, :4]
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_parallel(**inputs)
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan_parallel(**scan_inputs(1, 1, 1, 3), chunk_size=1)
    with pytest.raises(ValueError, match="method"):
        selective_scan_parallel(**scan_inputs(1, 1, 1, 3), method="loop")


def test_dispatch_on_cpu_uses_the_pure_backend() -> None:
    assert backend_for(torch.zeros(1)) == mamba.PURE_BACKEND == "pytorch"
    inputs = scan_inputs(2, 3, 4, 9)
    torch.testing.assert_close(selective_scan(**inputs), selective_scan_parallel(**inputs), rtol=0, atol=0)
    if mamba.selective_scan_fn is None:
        assert mamba.KERNEL_IMPORT_ERROR  # says why the kernel is off


@pytest.mark.skipif(mamba.selective_scan_fn is None or not torch.cuda.is_available(),
                    reason="needs CUDA and an importable mamba_ssm")
def test_kernel_matches_pure_path_on_cuda() -> None:
    inputs = {k: v.float().cuda().requires_grad_(True) for k, v in scan_inputs(2, 64, 16, 300).items()}
    assert backend_for(inputs["u"]) == mamba.KERNEL_BACKEND
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    kernel = selective_scan(**inputs)
    pure = selective_scan_parallel(**inputs)
    torch.testing.assert_close(kernel, pure, rtol=1e-3, atol=1e-3)
    upstream = torch.randn_like(kernel)
    for g, e in zip(torch.autograd.grad(kernel, [inputs[n] for n in names], upstream),
                    torch.autograd.grad(pure, [inputs[n] for n in names], upstream)):
        torch.testing.assert_close(g, e, rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------------------------------------------
# Config and modules
# --------------------------------------------------------------------------------------------------------------

def test_config_resolves_dt_rank_and_presets() -> None:
    assert MambaConfig(d_model=100).dt_rank == math.ceil(100 / 16) == 7
    assert MambaConfig(d_model=8, dt_rank=3).dt_rank == 3
    full = MambaConfig.full()
    assert (full.d_model, full.n_layers, full.d_inner, full.dt_rank, full.d_state) == (512, 4, 1024, 32, 16)
    small = MambaConfig.small(n_layers=3)
    assert (small.d_model, small.n_layers) == (64, 3)
    with pytest.raises(ValueError):
        MambaConfig(d_model=8, dt_min=0.2, dt_max=0.1)
    with pytest.raises(ValueError):
        MambaConfig(d_model=8, dt_rank="full")


def test_block_parameter_names_and_shapes_follow_mamba_simple() -> None:
    config = MambaConfig(d_model=8, d_state=4, d_conv=3)
    d_inner, dt_rank = config.d_inner, config.dt_rank
    shapes = {name: tuple(p.shape) for name, p in MambaBlock(config).named_parameters()}
    assert shapes == {
        "A_log": (d_inner, 4), "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, 8),
        "conv1d.weight": (d_inner, 1, 3), "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * 4, d_inner),
        "dt_proj.weight": (d_inner, dt_rank), "dt_proj.bias": (d_inner,),
        "out_proj.weight": (8, d_inner),
    }
    with_bias = {name for name, _ in MambaBlock(MambaConfig(d_model=8, bias=True, conv_bias=False)).named_parameters()}
    assert with_bias == set(shapes) - {"conv1d.bias"} | {"in_proj.bias", "out_proj.bias"}


def test_block_initialisation_follows_mamba_simple() -> None:
    torch.manual_seed(0)
    config = MambaConfig(d_model=64, dt_min=0.001, dt_max=0.1)
    block = MambaBlock(config)
    dt = torch.nn.functional.softplus(block.dt_proj.bias.detach())
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    A = -torch.exp(block.A_log.detach())
    torch.testing.assert_close(A, -torch.arange(1, 17, dtype=torch.float32).repeat(config.d_inner, 1))
    assert torch.equal(block.D.detach(), torch.ones(config.d_inner))
    bound = config.dt_rank ** -0.5
    assert block.dt_proj.weight.abs().max() <= bound
    assert block.A_log._no_weight_decay and block.D._no_weight_decay


def test_block_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    source, target = MambaBlock(TINY), MambaBlock(TINY)
    target.load_state_dict(source.state_dict())
    x = torch.randn(2, 11, TINY.d_model)
    assert torch.equal(source(x), target(x))


def test_block_shapes_and_causality() -> None:
    torch.manual_seed(0)
    block = MambaBlock(TINY).double()
    x = torch.randn(2, 20, TINY.d_model, dtype=torch.float64)
    out = block(x)
    assert out.shape == x.shape
    for t in (0, 7, 19):
        changed = x.clone()
        changed[:, t] += 10.0
        out_changed = block(changed)
        torch.testing.assert_close(out_changed[:, :t], out[:, :t], rtol=0, atol=1e-12)
        assert not torch.allclose(out_changed[:, t], out[:, t])


def test_block_pure_path_matches_a_reference_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    block = MambaBlock(TINY).double()
    x = torch.randn(2, 13, TINY.d_model, dtype=torch.float64)
    got = block(x)
    monkeypatch.setattr(mamba, "selective_scan", selective_scan_reference)
    torch.testing.assert_close(got, block(x), rtol=1e-10, atol=1e-10)


def test_encoder_right_padding_does_not_leak() -> None:
    torch.manual_seed(0)
    encoder = MambaEncoder(TINY).eval()
    x = torch.randn(3, 12, TINY.d_model)
    lengths = torch.tensor([12, 7, 1])
    mask = torch.arange(12)[None, :] < lengths[:, None]  # [batch, L], True = real
    other = x.clone()
    other[~mask] = torch.randn(int((~mask).sum()), TINY.d_model) * 1e3
    nan_padded = x.masked_fill(~mask.unsqueeze(-1), float("nan"))
    out, out_other, out_nan = (encoder(v, padding_mask=mask) for v in (x, other, nan_padded))
    assert out.shape == x.shape
    assert torch.equal(out[mask], out_other[mask]) and torch.equal(out[mask], out_nan[mask])
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    # a real position's output equals the one the sequence cut to its length gives
    torch.testing.assert_close(out[1, :7], encoder(x[1:2, :7])[0], rtol=1e-5, atol=1e-6)


def test_encoder_rejects_left_padding_and_bad_masks() -> None:
    encoder = MambaEncoder(TINY)
    x = torch.randn(2, 5, TINY.d_model)
    left_padded = torch.tensor([[True] * 5, [False, False, True, True, True]])
    with pytest.raises(ValueError, match="right-padded"):
        encoder(x, padding_mask=left_padded)
    with pytest.raises(ValueError, match="padding_mask must be"):
        encoder(x, padding_mask=torch.ones(2, 4, dtype=torch.bool))


def test_encoder_names_state_dict_and_backward() -> None:
    torch.manual_seed(0)
    encoder = MambaEncoder(TINY)
    names = set(encoder.state_dict())
    assert {"layers.0.norm.weight", "layers.1.mixer.A_log", "layers.1.mixer.in_proj.weight", "norm_f.bias"} <= names
    copy = MambaEncoder(TINY)
    copy.load_state_dict(encoder.state_dict())
    x = torch.randn(2, 9, TINY.d_model)
    assert torch.equal(encoder(x), copy(x))
    encoder(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_scan_rows_bounds_the_pure_scans_state_on_a_cpu() -> None:
    full = MambaConfig(d_model=512)  # d_inner 1024, d_state 16
    rows = scan_rows(full, 257, 4096, torch.device("cpu"))
    assert rows == MAX_SCAN_STATE_VALUES // (257 * 1024 * 16) and 1 <= rows < 4096
    assert scan_rows(MambaConfig(d_model=64), 65, 300, torch.device("cpu")) == 300  # small enough as asked
    assert scan_rows(full, 10**9, 8, torch.device("cpu")) == 1
