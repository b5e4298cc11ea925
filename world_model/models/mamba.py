"""The Mamba encoder, with its selective-scan backend chosen at run time.

The layer is Mamba-1 as in ``mamba_ssm/modules/mamba_simple.py`` (Gu & Dao, 2023): per channel of the inner
width, a linear recurrence whose step size, input and output maps depend on the input,

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        h: [d_state] per (batch, channel)
    y_t = C_t . h_t + D * u_t,  then gated by SiLU(z_t).

Backends (``selective_scan`` picks one per call; ``backend_for`` says which):

- ``"mamba_ssm"``: ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``, the fused CUDA kernel, when
  the package imports (it only installs where CUDA and nvcc exist: the ``cuda`` extra) and the tensors are
  on CUDA.
- ``"pytorch"``: ``selective_scan_parallel`` in plain PyTorch, everywhere else: on a CPU a loop over time
  (or over blocks of time steps) of in-place ops, ~15 passes over the [L, batch, d_inner, d_state] tensors
  for forward + backward; off the CPU a chunked log-depth scan. Measured on a 2-core CPU, forward + backward
  at the basket model's batch 256, d_inner 128, d_state 8-16, L 17-65: 3-9x faster than the chunked scan
  that ran on CPUs before, with one thread; 1.3-2.5x with two threads on a CPU loaded by other processes,
  where every multi-threaded op waits ~8 ms for its worker thread (there one thread was 3-15x faster still);
  4x and 1.3-1.5x at d_inner 1024, L 256 (see benchmarks/mamba_scan.py).

Both read the same parameters under the same names as ``mamba_simple.Mamba`` (``in_proj, conv1d, x_proj,
dt_proj, A_log, D, out_proj``), so a checkpoint moves between backends and loads ``mamba_ssm`` weights.
``selective_scan_reference`` is the sequential loop over time: a test reference, not a backend.

Not here (yet): the one-token decoding step with a cached state, and the fused ``mamba_inner_fn`` /
``causal_conv1d`` path (the convolution is a plain depthwise ``nn.Conv1d`` on both backends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

try:  # the fused kernel imports its CUDA extension at module load, so a CPU-only machine fails here
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except (ImportError, OSError) as error:  # OSError: the extension is present but its CUDA libraries are not
    selective_scan_fn = None
    KERNEL_IMPORT_ERROR: str | None = f"{type(error).__name__}: {error}"
else:
    KERNEL_IMPORT_ERROR = None

KERNEL_BACKEND = "mamba_ssm"
PURE_BACKEND = "pytorch"
SCAN_METHODS = ("auto", "sequential", "chunked")
# The sequential scan steps through time one op per step up to this L, in blocks of ceil(sqrt(L)) steps
# beyond (see _sequential_linear_scan_). Measured, forward + backward at batch 256, d_inner 128, d_state 16:
# the blocks took 1.3x the plain loop's time at L 17 with one thread, 1.1-1.2x at L 65, and 0.37x at L 65
# with two threads on a loaded CPU; at d_inner 1024, L 256: 1.1-1.2x and 0.35x.
PLAIN_LOOP_MAX_LENGTH = 32
# The chunked scan's chunk: 2 to 32 measured within ~20% of each other on a CPU (64 to 256 elements per time
# step, L 1024-4096; one thread), where the sequential scan takes 0.3-1.2x its time, and 0.15-0.45x at the
# basket model's sizes; off the CPU, where the chunked scan runs, not measured.
DEFAULT_CHUNK_SIZE = 8
# Elements (16 MiB in float32) in a block of time steps where a sum over time goes block by block: within
# ~10% of 4 MiB blocks with one thread, 4x fewer ops (with two threads on a loaded CPU ~8 ms each).
_REDUCTION_BLOCK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------

@dataclass
class MambaConfig:
    """Sizes and initialisation of a Mamba encoder; the defaults are ``mamba_simple.Mamba``'s."""

    d_model: int
    """Width of the residual stream: the encoder's input and output feature size."""
    d_state: int = 16
    """State size N of the recurrence, per inner channel."""
    d_conv: int = 4
    """Kernel width of the causal depthwise convolution before the scan."""
    expand: int = 2
    """Inner width = expand * d_model: the channels the scan runs over."""
    dt_rank: int | str = "auto"
    """Rank of the low-rank projection that makes the step size delta; "auto" = ceil(d_model / 16)
    (resolved to an int on construction)."""
    dt_min: float = 0.001
    """Smallest initial step size: softplus(dt_proj.bias) starts log-uniform in [dt_min, dt_max]."""
    dt_max: float = 0.1
    """Largest initial step size."""
    dt_init_floor: float = 1e-4
    """Lower clamp on the sampled initial step sizes."""
    bias: bool = False
    """Biases on in_proj and out_proj."""
    conv_bias: bool = True
    """Bias on the depthwise convolution."""
    n_layers: int = 4
    """Residual Mamba layers in the encoder."""

    def __post_init__(self) -> None:
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        elif isinstance(self.dt_rank, str):
            raise ValueError(f"dt_rank must be an int or 'auto', got {self.dt_rank!r}")
        for name in ("d_model", "d_state", "d_conv", "expand", "dt_rank", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @classmethod
    def small(cls, **overrides) -> MambaConfig:
        """A size that trains on a CPU: d_model 64, 2 layers (inner width 128)."""
        return cls(**{"d_model": 64, "n_layers": 2, **overrides})

    @classmethod
    def full(cls, **overrides) -> MambaConfig:
        """The design's size (issue 4): d_model 512, 4 layers (inner width 1024)."""
        return cls(**{"d_model": 512, "n_layers": 4, **overrides})


# --------------------------------------------------------------------------------------------------------------
# Selective scan: shapes as mamba_ssm's selective_scan_fn
#   u, delta, z: [batch, d_inner, L]   A: [d_inner, d_state]   B, C: [batch, d_state, L]
#   D, delta_bias: [d_inner]           result: [batch, d_inner, L], in u's dtype
# Arithmetic is in float32 at least (float64 stays float64), as the kernel computes in float32.
# --------------------------------------------------------------------------------------------------------------

def _check_scan_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                       z: Tensor | None, delta_bias: Tensor | None) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be [batch, d_inner, L], got {tuple(u.shape)}")
    batch, d_inner, length = u.shape
    if A.dim() != 2 or A.shape[0] != d_inner:
        raise ValueError(f"A must be [d_inner={d_inner}, d_state], got {tuple(A.shape)}")
    d_state = A.shape[1]
    expected = {"delta": (delta, (batch, d_inner, length)), "B": (B, (batch, d_state, length)),
                "C": (C, (batch, d_state, length)), "D": (D, (d_inner,)), "z": (z, (batch, d_inner, length)),
                "delta_bias": (delta_bias, (d_inner,))}
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def _compute_dtype(u: Tensor) -> torch.dtype:
    return torch.promote_types(u.dtype, torch.float32)


def _step_sizes(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                             z: Tensor | None = None, delta_bias: Tensor | None = None,
                             delta_softplus: bool = True) -> Tensor:
    """The selective scan as a sequential loop over time (``mamba_ssm``'s ``selective_scan_ref``).

    A test reference only: L small steps in Python, each a [batch, d_inner, d_state] update. Note that
    ``delta_softplus`` defaults to True here (the Mamba layer's setting), False in ``mamba_ssm``.
    """
    _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype_in, dtype = u.dtype, _compute_dtype(u)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = _step_sizes(delta, delta_bias, delta_softplus)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))  # [b, d_inner, L, d_state]
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)  # [b, d_inner, L, d_state]
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # [b, d_inner, d_state]
    ys = []
    # unbind, not decay[:, :, t]: the backward of L slices would write L full-size zero gradients (O(L^2))
    for decay_t, drive_t, C_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(2)):
        state = decay_t * state + drive_t
        ys.append(torch.einsum("bdn,bn->bd", state, C_t))  # [b, d_inner]
    y = torch.stack(ys, dim=2)  # [b, d_inner, L]
    return _skip_and_gate(y, u, D, z).to(dtype_in)


def _chunked_linear_scan(a: Tensor, x: Tensor, chunk_size: int, reverse: bool = False) -> Tensor:
    """h_t = a_t * h_{t-1} + x_t along the first dimension (h_{-1} = 0), without autograd; a, x are not written.

    ``reverse=True`` runs the other way: h_t = a_t * h_{t+1} + x_t (h_L = 0).

    1. Split time into chunks of T = chunk_size (padded, at the end the scan reaches last, with the identity
       pair a=1, x=0).
    2. Within every chunk at once, a Hillis-Steele scan over (a, x) pairs: at offset k = 1, 2, 4, ... < T,
       x_t <- x_t + a_t * x_{t-k} and a_t <- a_t * a_{t-k}. After ceil(log2 T) steps x_t is the chunk-local
       state (zero state entering the chunk) and a_t the product of the chunk's a up to t.
    3. The chunks' last pairs are a sequence of length L/T: scan it with this same function (recursion depth
       log_T L) to get the state at the end of every chunk.
    4. Add the state entering each chunk, carried by the prefix products: h_t = x_t + a_t * h_start.

    Depth ~log2 L whole-tensor steps, no loop over L. Work ~(2 log2 T + 1) passes over the tensor per
    level, levels shrinking by T; the reference loop makes ~2. Every factor multiplied in is a product of
    a's in [0, 1], so nothing can overflow (small products underflow to 0, which is their value).
    Time is the first dimension so that every shifted slice is made of whole contiguous time steps.
    """
    length = a.shape[0]
    if length == 1:
        return x.clone()
    chunk = min(chunk_size, length)
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:
        identity_a, identity_x = a.new_ones((pad, *a.shape[1:])), x.new_zeros((pad, *x.shape[1:]))
        a = torch.cat([identity_a, a] if reverse else [a, identity_a])
        x = torch.cat([identity_x, x] if reverse else [x, identity_x])
    a = a.reshape(n_chunks, chunk, *a.shape[1:])  # [n_chunks, T, ...]
    x = x.reshape(n_chunks, chunk, *x.shape[1:])

    def split(t: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """(the first `step` positions the scan meets, which keep their value; the others; their partners)."""
        if reverse:
            return t[:, -step:], t[:, :-step], t[:, step:]
        return t[:, :step], t[:, step:], t[:, :-step]

    # each step writes fresh buffers (two per tensor, used in turn): the right-hand sides read the old values,
    # and the caller's tensors are never written
    spare_a = spare_x = None
    step = 1
    while step < chunk:
        new_a = torch.empty_like(a) if spare_a is None else spare_a
        new_x = torch.empty_like(x) if spare_x is None else spare_x
        (a_kept, a_updated, a_partner), (x_kept, x_updated, x_partner) = split(a, step), split(x, step)
        new_a_kept, new_a_updated, _ = split(new_a, step)
        new_x_kept, new_x_updated, _ = split(new_x, step)
        new_x_kept.copy_(x_kept)
        torch.addcmul(x_updated, a_updated, x_partner, out=new_x_updated)
        new_a_kept.copy_(a_kept)
        torch.mul(a_updated, a_partner, out=new_a_updated)
        if step > 1:  # a, x are buffers of ours from here on
            spare_a, spare_x = a, x
        a, x = new_a, new_x
        step *= 2
    if n_chunks > 1:
        last = 0 if reverse else -1
        chunk_end_states = _chunked_linear_scan(a[:, last], x[:, last], chunk_size, reverse)  # [n_chunks, ...]
        if reverse:
            x[:-1].addcmul_(a[:-1], chunk_end_states[1:].unsqueeze(1))
        else:
            x[1:].addcmul_(a[1:], chunk_end_states[:-1].unsqueeze(1))
    h = x.reshape(n_chunks * chunk, *x.shape[2:])
    return h[pad:] if reverse else h[:length]


def _sequential_linear_scan_(a: Tensor, x: Tensor, reverse: bool = False) -> Tensor:
    """h_t = a_t * h_{t-1} + x_t along the first dimension (h_{-1} = 0), written over x, which it returns.

    ``reverse=True`` runs the other way with the next step's factor: h_t = a_{t+1} * h_{t+1} + x_t (h_L = 0,
    a_0 unused), the recurrence of the backward pass. a is not written.

    Up to L = PLAIN_LOOP_MAX_LENGTH a plain loop: one in-place op per step, one pass over a and x. Longer,
    blocks of T = ceil(sqrt(L)) steps (the one the scan reaches last may be shorter), each op taking the same
    step of every block at once (a strided view):

    1. every block from a zero state, into small [L/T, ...] buffers: its end state and the product of its
       factors after its first step (2 ops per step of a block);
    2. the state entering each block, times the block's first factor: a loop over the blocks;
    3. that added to each block's first step, then the loop over the steps of a block, in place.

    ~3T + L/T ops instead of L and ~2 passes instead of 1: measured (forward + backward of the selective
    scan, L 65-1024) 10-20% slower with one thread and 2-3x faster with two on a loaded CPU, where every
    multi-threaded op waits for a worker thread the scheduler has put aside. Nothing is multiplied but
    products of a's, so nothing overflows where a is in [0, 1].
    """
    length = x.shape[0]
    if length <= PLAIN_LOOP_MAX_LENGTH:
        if reverse:
            for a_next, x_next, x_t in zip(a.unbind(0)[:0:-1], x.unbind(0)[:0:-1], x.unbind(0)[-2::-1]):
                x_t.addcmul_(a_next, x_next)
        else:
            for a_t, x_prev, x_t in zip(a.unbind(0)[1:], x.unbind(0), x.unbind(0)[1:]):
                x_t.addcmul_(a_t, x_prev)
        return x
    block = math.isqrt(length - 1) + 1  # ceil(sqrt(L)) >= 2
    n_blocks = -(-length // block)

    def step(i: int) -> tuple[slice, slice, slice, slice]:
        """Step i of every block that has one: (its rows, the rows of the step before, the factor's rows, its
        places in the [n_blocks] buffers, which hold the blocks in the order of their rows)."""
        count = -(-(length - i) // block)
        if reverse:  # the blocks end at L, L - T, ...: step i of a block is row L - 1 - i - k T
            first = (length - 1 - i) % block
            rows, before = slice(first, length - i, block), slice(first + 1, length - i + 1, block)
            return rows, before, before, slice(n_blocks - count, n_blocks)
        rows, before = slice(i, length, block), slice(i - 1, length - 1, block)
        return rows, before, rows, slice(0, count)

    # 1. end states from a zero state, and products of the factors after the first step
    ends = x[step(0)[0]].clone()  # [n_blocks, ...]
    products = torch.ones_like(ends)
    for i in range(1, block):
        rows, _, factor, places = step(i)
        torch.addcmul(x[rows], a[factor], ends[places], out=ends[places])
        products[places].mul_(a[factor])
    # 2. carry_k, for every block k but the last in scan order: the state leaving block k times the first
    #    factor f of the next block, carry_k = f_(k+1) (ends_k + products_k carry_(k-1)) in scan order
    if reverse:  # block 0 (rows L - T to L - 1) has the last place
        first = (length - 1) % block
        feeding = slice(1, n_blocks)
        entry_rows, entry_factor = slice(first, length - block, block), slice(first + 1, length - block + 1, block)
    else:
        feeding = slice(0, n_blocks - 1)
        entry_rows = entry_factor = slice(block, length, block)
    carry = ends[feeding].mul_(a[entry_factor])
    decay = products[feeding].mul_(a[entry_factor])
    carries, decays = carry.unbind(0), decay.unbind(0)
    for k in (range(n_blocks - 3, -1, -1) if reverse else range(1, n_blocks - 1)):
        carries[k].addcmul_(decays[k], carries[k + 1 if reverse else k - 1])
    # 3. into the blocks' first steps, then through the blocks
    x[entry_rows].add_(carry)
    for i in range(1, block):
        rows, before, factor, _ = step(i)
        x[rows].addcmul_(a[factor], x[before])
    return x


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t . h_t, h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t (h_{-1} = 0), time-major, with its backward.

    forward(delta, u, A, B, C, chunk_size): delta, u [L, b, d_inner] (delta after bias and softplus), A
    [d_inner, d_state], B, C [L, b, d_state], of one dtype, delta, u, B, C contiguous; y [L, b, d_inner].
    ``chunk_size=None`` runs the recurrence as ``_sequential_linear_scan_``, in place; otherwise
    ``_chunked_linear_scan`` with that chunk size.

    The sequential scan makes three [L, b, d_inner, d_state] tensors in all: a = exp(delta A) and
    x = delta u B, which it turns into h, in forward (a and h kept for backward), and g in backward (and, for
    long L, two of ~1/sqrt(L) that size); the chunked scan adds its buffers. With g_t = dLoss/dh_t through
    all later steps (the adjoint), g_t = C_t dLoss/dy_t + a_{t+1} g_{t+1}: the same recurrence in reversed
    time. Then dLoss/d(delta_t u_t B_t) = g_t, and dLoss/d(delta_t A) = g_t a_t h_{t-1} (0 at t = 0),
    written over g. The contractions over d_state or d_inner are batched vector-matrix products (bmm); the
    one over time and batch for dLoss/dA goes over blocks of time steps into one block-sized buffer. Only
    buffers made here are written, so a second backward through a retained graph gives the same gradients.
    """

    @staticmethod
    def forward(ctx, delta: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int | None) -> Tensor:
        length, batch, d_inner = delta.shape
        rows, d_state = length * batch, A.shape[1]
        du = delta * u  # [L, b, d_inner]
        a = torch.mul(delta.unsqueeze(-1), A).exp_()  # [L, b, d_inner, d_state], in (0, 1]
        x = torch.mul(du.unsqueeze(-1), B.unsqueeze(2))  # [L, b, d_inner, d_state]
        if chunk_size is None:
            h = _sequential_linear_scan_(a, x)  # h_t = a_t h_{t-1} + x_t, written over x
        else:
            h = _chunked_linear_scan(a, x, chunk_size)
        # y_t = C_t . h_t as [1, d_state] @ [d_state, d_inner] per row (3x faster here than h_t @ C_t)
        y = torch.bmm(C.view(rows, 1, d_state), h.view(rows, d_inner, d_state).transpose(1, 2))  # [L*b, 1, d_inner]
        ctx.save_for_backward(delta, u, du, A, B, C, a, h)
        ctx.chunk_size = chunk_size
        return y.view(length, batch, d_inner)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        delta, u, du, A, B, C, a, h = ctx.saved_tensors
        length, batch, d_inner = delta.shape
        rows, d_state = length * batch, A.shape[1]
        grad_y = grad_y.contiguous()
        grad_h = torch.mul(grad_y.unsqueeze(-1), C.unsqueeze(2))  # [L, b, d_inner, d_state]
        if ctx.chunk_size is None:  # g_t = grad_h_t + a_{t+1} g_{t+1}, written over grad_h
            g = _sequential_linear_scan_(a, grad_h, reverse=True)
        else:
            a_next = torch.empty_like(a)  # a_{t+1}; past the end it multiplies the zero state
            a_next[:-1] = a[1:]
            a_next[-1] = 0.0
            g = _chunked_linear_scan(a_next, grad_h, ctx.chunk_size, reverse=True)
        h_rows, g_rows = h.view(rows, d_inner, d_state), g.view(rows, d_inner, d_state)
        grad_C = torch.bmm(grad_y.view(rows, 1, d_inner), h_rows).view(length, batch, d_state)
        grad_du = torch.bmm(B.view(rows, 1, d_state), g_rows.transpose(1, 2)).view(length, batch, d_inner)
        grad_B = torch.bmm(du.view(rows, 1, d_inner), g_rows).view(length, batch, d_state)
        g[0] = 0.0  # g becomes dLoss/d(delta A): h_{-1} = 0
        g[1:].mul_(a[1:]).mul_(h[:-1])
        # dLoss/dA = sum over time and batch of g * delta, block by block of time steps (fewer ops than step by
        # step, a buffer that stays in cache rather than one of g's size)
        steps = max(1, min(length, _REDUCTION_BLOCK_ELEMENTS // g[0].numel()))
        grad_A = torch.mul(g[:steps], delta[:steps].unsqueeze(-1))  # [steps, b, d_inner, d_state]
        for start in range(steps, length, steps):
            stop = min(start + steps, length)
            grad_A[:stop - start].addcmul_(g[start:stop], delta[start:stop].unsqueeze(-1))
        grad_delta = g.mul_(A).sum(-1).add_(grad_du * u)
        return grad_delta, grad_du * delta, grad_A.sum((0, 1)), grad_B, grad_C, None


def selective_scan_parallel(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                            z: Tensor | None = None, delta_bias: Tensor | None = None,
                            delta_softplus: bool = True, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                            method: str = "auto") -> Tensor:
    """The selective scan in plain PyTorch; same arguments and result as the reference.

    ``method``: "sequential", ``_sequential_linear_scan_``, a loop over time (or over blocks of time steps)
    of in-place ops on [batch, d_inner, d_state] slices; "chunked", the log-depth ``_chunked_linear_scan``
    with chunks of ``chunk_size``; "auto" (the default), the one ``scan_method_for`` names: sequential on a
    CPU, chunked elsewhere. Both are ``_SelectiveScan``: a = exp(delta * A) in (0, 1] (A < 0, delta > 0, so
    the only exponentials have exponents <= 0) and x = delta * B * u, time-major [L, batch, d_inner,
    d_state], the recurrence over them and y = C . h, with a hand-written backward; then + D u and the gate,
    by autograd.

    Cost: memory: a and h of L*batch*d_inner*d_state each, kept for backward, and one more such tensor in
    backward (more while the chunked scan runs), as the reference loop. Work: sequential ~5 passes over such
    tensors forward and ~10 backward (+2 in blocks), in ~2L (in blocks ~8 sqrt(L)) + 30 ops; chunked
    ~(2 log2 T + 1) passes more per scan, in ~log2 L steps of a few ops (T = chunk_size >= 2): on a CPU the
    passes count (see benchmarks/mamba_scan.py), on a GPU the steps. Differentiable once (no double
    backward).
    """
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be >= 2, got {chunk_size}")
    if method not in SCAN_METHODS:
        raise ValueError(f"method must be one of {SCAN_METHODS}, got {method!r}")
    _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype_in, dtype = u.dtype, _compute_dtype(u)
    # Autocast off: under it the scan's bmm would run in bfloat16 / float16 whatever ``dtype`` says (the
    # forward drifting from the reference, and backward meeting a half-precision gradient against float32
    # states); the scan is computed in ``dtype`` and its result cast back to the input's dtype.
    with torch.autocast(u.device.type, enabled=False):
        u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
        delta = _step_sizes(delta, delta_bias, delta_softplus)
        if method == "auto":
            method = scan_method_for(u)
        # [L, b, d_inner or d_state]
        delta_t, u_t, B_t, C_t = (t.permute(2, 0, 1).contiguous() for t in (delta, u, B, C))
        y = _SelectiveScan.apply(delta_t, u_t, A, B_t, C_t, None if method == "sequential" else chunk_size)
        y = y.permute(1, 2, 0).contiguous()  # [b, d_inner, L]
        return _skip_and_gate(y, u, D, z).to(dtype_in)


def scan_method_for(tensor: Tensor) -> str:
    """The method ``selective_scan_parallel(method="auto")`` runs for tensors like this one.

    "sequential" on a CPU, "chunked" elsewhere (a CUDA tensor without mamba_ssm): there every op is a kernel
    launch, the sequential scan's ~2L (in blocks ~8 sqrt(L)) ops against the chunked scan's ~log2 L steps; not
    measured on a GPU, and the choice before the sequential scan existed.
    """
    return "sequential" if tensor.device.type == "cpu" else "chunked"


def backend_for(tensor: Tensor) -> str:
    """The backend ``selective_scan`` uses for tensors like this one: "mamba_ssm" or "pytorch"."""
    return KERNEL_BACKEND if selective_scan_fn is not None and tensor.is_cuda else PURE_BACKEND


MAX_SCAN_STATE_VALUES = 2**26
"""Largest [L, rows, d_inner, d_state] tensor ``scan_rows`` lets the pure-PyTorch scan build: 256 MB in
float32 (the scan keeps a few such alive at once)."""


def scan_rows(config: MambaConfig, length: int, requested: int, device: torch.device) -> int:
    """How many sequences of ``length`` steps an inference loop should encode at once on ``device``:
    ``requested``, or fewer where the pure-PyTorch scan runs, so that its state tensor stays within
    ``MAX_SCAN_STATE_VALUES`` (the fused kernels never materialize it). At least 1."""
    if backend_for(torch.empty(0, device=device)) == KERNEL_BACKEND:
        return requested
    return max(1, min(requested, MAX_SCAN_STATE_VALUES // max(1, length * config.d_inner * config.d_state)))


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = True) -> Tensor:
    """The selective scan on the best backend for ``u`` (see ``backend_for``); arguments as the reference."""
    if backend_for(u) == KERNEL_BACKEND:
        return selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    return selective_scan_parallel(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


# --------------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------------

class MambaBlock(nn.Module):
    """One Mamba mixer, [batch, L, d_model] -> [batch, L, d_model], causal in L.

    Parameter names, shapes and initialisation are ``mamba_simple.Mamba``'s, so state dicts are interchangeable:
    in_proj.weight [2*d_inner, d_model], conv1d.weight [d_inner, 1, d_conv] (+ conv1d.bias),
    x_proj.weight [dt_rank + 2*d_state, d_inner], dt_proj.weight [d_inner, dt_rank], dt_proj.bias [d_inner],
    A_log [d_inner, d_state], D [d_inner], out_proj.weight [d_model, d_inner] (+ biases when config.bias).
    """

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.config = config
        d_model, d_inner, d_state, dt_rank = config.d_model, config.d_inner, config.d_state, int(config.dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=config.bias)
        # depthwise; padding d_conv - 1 on both sides, the right side cut in forward: a causal convolution
        self.conv1d = nn.Conv1d(d_inner, d_inner, kernel_size=config.d_conv, groups=d_inner,
                                padding=config.d_conv - 1, bias=config.conv_bias)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=config.bias)
        self.reset_dt_parameters()
        # markers read by mamba_ssm-style optimiser and init code
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.dt_proj.bias._no_reinit = True

    @torch.no_grad()
    def reset_dt_parameters(self) -> None:
        """mamba_simple's dt init: weight ~ U(+-dt_rank^-0.5); softplus(bias) log-uniform in [dt_min, dt_max]."""
        config = self.config
        nn.init.uniform_(self.dt_proj.weight, -int(config.dt_rank) ** -0.5, int(config.dt_rank) ** -0.5)
        log_min, log_max = math.log(config.dt_min), math.log(config.dt_max)
        dt = torch.exp(torch.rand(config.d_inner) * (log_max - log_min) + log_min).clamp(min=config.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, hidden: Tensor) -> Tensor:
        config = self.config
        length = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # [b, 2*d_inner, L]
        x, z = xz.chunk(2, dim=1)  # [b, d_inner, L] each; z gates the output
        x = F.silu(self.conv1d(x)[..., :length])  # [b, d_inner, L]
        x_dbl = self.x_proj(x.transpose(1, 2))  # [b, L, dt_rank + 2*d_state]
        dt, B, C = torch.split(x_dbl, [int(config.dt_rank), config.d_state, config.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # [b, d_inner, L]; its bias goes in the scan
        B = B.transpose(1, 2).contiguous()  # [b, d_state, L]
        C = C.transpose(1, 2).contiguous()  # [b, d_state, L]
        A = -torch.exp(self.A_log.float())  # [d_inner, d_state], < 0
        y = selective_scan(x, delta, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                           delta_softplus=True)  # [b, d_inner, L]
        return self.out_proj(y.transpose(1, 2))  # [b, L, d_model]


class MambaLayer(nn.Module):
    """Pre-norm residual layer: h + mixer(norm(h)). Names follow mamba_ssm's ``Block`` (norm, mixer)."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.mixer = MambaBlock(config)

    def forward(self, hidden: Tensor) -> Tensor:
        return hidden + self.mixer(self.norm(hidden))  # [b, L, d_model]


class MambaEncoder(nn.Module):
    """n_layers residual Mamba layers and a final LayerNorm: [batch, L, d_model] -> [batch, L, d_model].

    Names follow mamba_ssm's ``MixerModel`` (``layers.{i}.mixer.*``, ``norm_f``), and so does the init of the
    residual output projections (scaled by 1/sqrt(n_layers), as GPT-2).

    ``padding_mask`` [batch, L], True at real positions, must be right-padded (real positions first). The
    encoder is causal, so padding after the real positions cannot reach them anyway; the padded inputs are
    also replaced by zeros (whatever they hold, NaN included) and the padded outputs set to zero, so the
    result does not depend on the padding's values at all. Left padding is rejected: a zero input still
    writes into the state (through the LayerNorm and convolution biases) and would shift the real positions.
    """

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(MambaLayer(config) for _ in range(config.n_layers))
        self.norm_f = nn.LayerNorm(config.d_model)
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight /= math.sqrt(config.n_layers)

    def forward(self, hidden: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if padding_mask is not None:
            padding_mask = _check_right_padded(padding_mask, hidden)
            hidden = hidden.masked_fill(~padding_mask.unsqueeze(-1), 0.0)  # [b, L, d_model]
        for layer in self.layers:
            hidden = layer(hidden)  # [b, L, d_model]
        hidden = self.norm_f(hidden)
        if padding_mask is not None:
            hidden = hidden.masked_fill(~padding_mask.unsqueeze(-1), 0.0)
        return hidden


def _check_right_padded(padding_mask: Tensor, hidden: Tensor) -> Tensor:
    if tuple(padding_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(f"padding_mask must be [batch, L] = {tuple(hidden.shape[:2])}, "
                         f"got {tuple(padding_mask.shape)}")
    padding_mask = padding_mask.to(device=hidden.device, dtype=torch.bool)
    if (padding_mask[:, 1:] & ~padding_mask[:, :-1]).any():
        raise ValueError("padding_mask must be right-padded: a real position (True) follows a padded one")
    return padding_mask
