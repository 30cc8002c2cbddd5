"""The batched engine: K compatible runs trained together as one stacked model.

:func:`implicit_bias.train.train` hands every group of compatible runs (same model
config, data, dtype, steps, loss and batch scheme) to :func:`train_group`. Parameters are
stacked along a leading run dimension (:mod:`implicit_bias.stacked`); each step is one
forward and one backward pass for all K runs, and one update per optimizer structure with
the runs' own learning rates, schedules, β's and ε as vectors: batched sign, batched
normalization, batched SVD or Newton–Schulz. Runs keep their own loss frame F.

Each run is still built as the loop builds it (its own seeded model, its own optimizer
object, which validates the hyperparameters); the engine only reads them. Per-run
results equal the reference loop's to rounding (the tests ask for 1e−10 relative in
float64).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import torch

from . import losses, models, optim, stacked
from .norms import L1, L2, Linf, Spectral, by_name, polar_factors
from .updates import NS_COEFFICIENTS

#: Optimizers the engine leaves to the reference loop, and why.
UNBATCHED = {
    "TorchMuon": "it is torch.optim.Muon itself, kept as an independent oracle",
    "AdamProxy": "it needs per-sample gradients",
}

#: On a CPU, a chunk's activations should stay within about this many bytes: larger
#: stacks are limited by memory traffic, not arithmetic (see benchmarks/batched_engine.py).
CPU_WORKSET = 32 * 2**20

#: The fraction of the free device memory a chunk may use.
MEMORY_FRACTION = 0.5


def why_not(run) -> str | None:
    """Why ``run`` cannot go to the batched engine, or None if it can."""
    if run.optimizer in UNBATCHED:
        return f"{run.optimizer}: {UNBATCHED[run.optimizer]}"
    return None


def group_key(run) -> str:
    """Runs with equal keys can share a stack."""
    return json.dumps([run.model, run.data, run.dtype, run.steps, run.loss, run.batch,
                       run.batch_size], sort_keys=True, default=str)


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-run vector ``(k,)`` shaped to broadcast against ``like`` ``(k, …)``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


# --- batched steepest directions ------------------------------------------------


def _flat(xs):
    return torch.cat([x.reshape(x.shape[0], -1) for x in xs], dim=1)


def _unflat(v, like):
    out, i = [], 0
    for x in like:
        n = x[0].numel()
        out.append(v[:, i:i + n].reshape(x.shape))
        i += n
    return out


def l2_norms(xs) -> torch.Tensor:
    """Per-run ℓ2 norm of a stacked parameter list, scale-safe like :class:`norms.L2`."""
    flat = _flat(xs)
    scale = flat.abs().amax(dim=1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.where(scale > 0, scale * (flat / safe[:, None]).norm(dim=1), scale)


def _matrices(x):
    """Per-run matrix views (``norms.as_matrix`` of every run): ``(k, rows, cols)``."""
    if x.dim() == 1:
        return x.reshape(-1, 1, 1)
    if x.dim() == 2:
        return x.reshape(x.shape[0], 1, -1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _newton_schulz(x, steps, dtype):
    """``updates.newton_schulz`` of every run's matrix view, batched."""
    a, b, c = NS_COEFFICIENTS
    m = _matrices(x)
    z = m.to(dtype or m.dtype)
    tall = z.shape[-2] > z.shape[-1]
    if tall:
        z = z.mT
    z = z / torch.linalg.matrix_norm(z).clamp(min=1e-7)[:, None, None]
    for _ in range(steps):
        gram = z @ z.mT
        z = torch.baddbmm(z, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), z, beta=a)
    if tall:
        z = z.mT
    return z.to(m.dtype).reshape(x.shape)


def steepest(norm, ds):
    """``norm.steepest`` for every run of a stacked list of directions ``(k, …)``."""
    if isinstance(norm, L2):
        n = l2_norms(ds)
        safe = torch.where(n > 0, n, torch.ones_like(n))
        return [torch.where(_col(n, d) > 0, d / _col(safe, d), torch.zeros_like(d)) for d in ds]
    if isinstance(norm, Linf):
        return [torch.sign(d) for d in ds]
    if isinstance(norm, L1):
        flat = _flat(ds)
        rows = torch.arange(flat.shape[0], device=flat.device)
        j = flat.abs().argmax(dim=1)
        u = torch.zeros_like(flat)
        u[rows, j] = torch.sign(flat[rows, j])
        return _unflat(u, ds)
    if isinstance(norm, Spectral):
        if norm.polar == "newton_schulz":
            return [_newton_schulz(d, norm.ns_steps, norm.ns_dtype) for d in ds]
        return [polar_factors(_matrices(d)).reshape(d.shape) for d in ds]
    raise TypeError(f"The batched engine has no steepest direction for {norm!r}.")


def _norm_key(norm):
    if norm is None:
        return None
    return (type(norm).__name__, getattr(norm, "polar", None), getattr(norm, "ns_steps", None),
            str(getattr(norm, "ns_dtype", None)))


def signature(opt, params) -> tuple:
    """What must agree for runs to share one batched update: each parameter group's rule,
    its parameters' positions, its norm and whether it is normalized; the numbers
    (rates, β, ε) may differ."""
    index = {id(p): i for i, p in enumerate(params)}
    return tuple((g["rule"], tuple(index[id(p)] for p in g["params"]), _norm_key(g.get("norm")),
                  g.get("normalized")) for g in opt.param_groups)


# --- the batched optimizer ----------------------------------------------------------------

#: State scaled like the gradients under a new frame; the rest (v, sum) like their squares.
_FIRST_MOMENTS = ("momentum", "m")

#: Each rule's state, named as :class:`optim.RuleOptimizer` names it.
_LOOP_NAMES = {"steepest": {"momentum": "momentum_buffer"}, "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
               "rmsprop": {"v": "square_avg"}, "adagrad": {"sum": "sum"}}


class BatchedOptimizer:
    """The updates of runs ``start … start + k − 1`` of a stack, whose optimizers share one
    :func:`signature` (``positions``: each parameter group's parameters, as positions in
    the stack). ``step(params, grads, t)`` takes the whole stack's tensors."""

    def __init__(self, opts, schedules, stack_params, start: int, runs, positions):
        self.start, self.k, self.runs = start, len(opts), list(runs)
        self.groups = []
        first = opts[0]
        dev, dtype = stack_params[0].device, stack_params[0].dtype
        for gi, (group, idx) in enumerate(zip(first.param_groups, positions, strict=True)):
            numbers = {key: np.array([float(o.param_groups[gi][key]) for o in opts])
                       for key in ("lr", "momentum", "beta1", "beta2", "eps") if key in group}
            self.groups.append(dict(rule=group["rule"], idx=list(idx), norm=group.get("norm"),
                                    normalized=group.get("normalized", True), numbers=numbers,
                                    tensors={k: torch.as_tensor(v, device=dev, dtype=dtype)
                                             for k, v in numbers.items()},
                                    state={}))
        self.schedules = np.asarray(schedules, dtype=float)
        self.grad_scale = np.ones(self.k)
        self._dev, self._dtype = dev, dtype
        self._warned_dead = False

    def _vec(self, values):
        return torch.as_tensor(values, device=self._dev, dtype=self._dtype)

    def _buffer(self, group, name, like):
        state = group["state"]
        if name not in state:
            state[name] = [torch.zeros_like(x) for x in like]
        return state[name]

    @torch.no_grad()
    def step(self, params, grads, t: int):
        rows = slice(self.start, self.start + self.k)
        # η_t = η_0 t^{-a}: numpy's pow is C's, as in torch's LambdaLR (Python floats).
        decay = np.power(float(t), -self.schedules)
        for group in self.groups:
            ps = [params[i][rows] for i in group["idx"]]
            gs = [grads[i][rows] for i in group["idx"]]
            lr = self._vec(group["numbers"]["lr"] * decay)
            steps = getattr(self, "_" + group["rule"])(group, gs, t)
            for p, u in zip(ps, steps):
                p.sub_(_col(lr, u) * u)

    @torch.no_grad()
    def export(self, j: int, opt, t: int) -> None:
        """Write run ``j``'s (of this segment) state after step ``t`` into its own
        optimizer object ``opt``, as the reference loop would hold it: the rules' buffers,
        Adam's step count, the scheduled rate and the gradient scale."""
        for group, own in zip(self.groups, opt.param_groups, strict=True):
            own["grad_scale"] = float(self.grad_scale[j])
            # LambdaLR after t steps: η_0 (t + 1)^{-a}, in Python floats as there.
            own["lr"] = float(group["numbers"]["lr"][j]) * (t + 1.0) ** (-float(self.schedules[j]))
            for name, bufs in group["state"].items():
                if name == "momentum" and group["numbers"]["momentum"][j] == 0:
                    continue  # the loop keeps no momentum buffer at β = 0
                for p, buf in zip(own["params"], bufs, strict=True):
                    opt.state[p][_LOOP_NAMES[group["rule"]][name]] = buf[j].clone()
            if group["rule"] == "adam":
                for p in own["params"]:
                    opt.state[p]["step"] = t

    def _eps(self, group):
        """ε in the units of the rescaled gradients, per run (kept until the next rescale)."""
        cached = group.get("eps_scaled")
        if cached is None or cached[0] is not self.grad_scale:
            eps = group["numbers"]["eps"]
            with np.errstate(invalid="ignore"):  # 0 · inf: ε = 0 stays 0 (see RuleOptimizer._eps)
                cached = group["eps_scaled"] = (self.grad_scale,
                                                self._vec(np.where(eps > 0, eps * self.grad_scale, 0.0)))
        return cached[1]

    def _ema(self, group, name, xs, beta):
        bufs = self._buffer(group, name, xs)
        beta = group["tensors"][beta]
        for i, x in enumerate(xs):
            b = _col(beta, x)
            bufs[i] = bufs[i] * b + x * (1.0 - b)
        return bufs

    def _steepest(self, group, gs, t):
        if np.any(group["numbers"]["momentum"] > 0):
            gs = self._ema(group, "momentum", gs, "momentum")
        u = steepest(group["norm"], gs)
        if group["normalized"]:
            return u
        scale = l2_norms(gs) / self._vec(self.grad_scale)  # only L2 is ever unnormalized
        return [x * _col(scale, x) for x in u]

    def _scaled_by_root(self, xs, accs, eps):
        out = []
        for x, acc in zip(xs, accs):
            denom = acc.sqrt() + _col(eps, acc)
            dead = denom == 0
            if bool(dead.any()):
                self._warn_dead()
                out.append(torch.where(dead, torch.zeros_like(x), x / torch.where(dead, 1.0, denom)))
            else:
                out.append(x / denom)
        return out

    def _warn_dead(self):
        if not self._warned_dead:
            self._warned_dead = True
            optim.warn_dead_coordinates(stacklevel=5)

    def _adam(self, group, gs, t):
        m = self._ema(group, "m", gs, "beta1")
        v = self._ema(group, "v", [g * g for g in gs], "beta2")
        c1 = self._vec(1.0 - np.power(group["numbers"]["beta1"], t))
        c2 = self._vec(1.0 - np.power(group["numbers"]["beta2"], t))
        return self._scaled_by_root([x / _col(c1, x) for x in m], [x / _col(c2, x) for x in v],
                                    self._eps(group))

    def _rmsprop(self, group, gs, t):
        v = self._ema(group, "v", [g * g for g in gs], "beta2")
        return self._scaled_by_root(gs, v, self._eps(group))

    def _adagrad(self, group, gs, t):
        acc = self._buffer(group, "sum", gs)
        for i, g in enumerate(gs):
            acc[i] = acc[i] + g * g
        return self._scaled_by_root(gs, acc, self._eps(group))

    @torch.no_grad()
    def rescale_gradients(self, ratios: np.ndarray) -> None:
        """Per-run :meth:`optim.RuleOptimizer.rescale_gradients`."""
        with np.errstate(over="ignore"):  # e^F may overflow to inf, as a Python float does
            self.grad_scale = self.grad_scale * ratios
        r = self._vec(ratios)
        for group in self.groups:
            for name, bufs in group["state"].items():
                for i, x in enumerate(bufs):
                    c = _col(r, x)
                    bufs[i] = x * c if name in _FIRST_MOMENTS else x * c * c
                    bad = ~bufs[i].reshape(self.k, -1).isfinite().all(dim=1)
                    if bool(bad.any()):
                        from .train import RunFailed

                        j = int(bad.nonzero()[0])
                        raise RunFailed(self.runs[j], (
                            f"{self.runs[j].label}: rescaling the optimizer state by {ratios[j]:.3g} "
                            "overflowed: the loss fell faster than the optimizer's memory decays, "
                            "beyond float64's range. Lower the learning rate or use a decaying schedule."))


# --- chunking ---------------------------------------------------------------------------


def _hidden_units(spec: dict) -> int:
    kind = spec.get("kind")
    if kind == "two_layer":
        return int(spec.get("width", 64))
    if kind == "mlp":
        return int(sum(spec.get("hidden", []))) + 1
    return 1


def free_memory(dev: torch.device) -> int:
    """Free bytes on ``dev``: CUDA's own count, or the system's available memory."""
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def chunk_size(run, n: int, n_params: int, dev: torch.device) -> int:
    """How many runs like ``run`` to stack at once: what fits in
    :data:`MEMORY_FRACTION` of the free memory (activations and optimizer state) and, on
    a CPU, what keeps a step's activations within :data:`CPU_WORKSET`."""
    itemsize = torch.finfo(getattr(torch, run.dtype)).bits // 8
    rows = n + (run.batch_size or 0)
    activations = 3 * rows * _hidden_units(run.model) * itemsize
    per_run = activations + 8 * n_params * itemsize
    fits = max(1, int(MEMORY_FRACTION * free_memory(dev) // per_run))
    if dev.type == "cpu":
        fits = min(fits, max(1, CPU_WORKSET // activations))
    return fits


def peak_memory(dev: torch.device) -> int:
    """Peak bytes: CUDA's allocator peak on a GPU, the process's peak RSS on a CPU."""
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


# --- training -------------------------------------------------------------------------


def train_group(runs, X, y, norms, log_points, frame, dev, bar, observe=None):
    """Train compatible ``runs`` (one :func:`group_key`) as one stack, exactly as
    :func:`train.train`'s loop would one by one; returns their histories in order.
    ``observe`` is called as in the loop, on each run's own model and optimizer objects,
    which are given the run's parameters, gradients and state at each logged step."""
    from .train import (
        DTYPES,
        FRAME_SLACK,
        RunFailed,
        _history,
        _observe,
        _record,
        _warn_underflow,
        batches,
        log_grid,
    )

    start_time = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    first = runs[0]
    dtype = DTYPES[first.dtype]
    X, y = X.to(dtype), y.to(dtype)
    d = X.shape[1] if X.dim() == 2 else tuple(X.shape[1:])
    nets = [models.build(r.model, d, seed=r.seed, dtype=dtype).to(dev) for r in runs]
    plist = [list(m.parameters()) for m in nets]
    opts = [optim.make(r.optimizer, ps, r.lr, **r.options) for r, ps in zip(runs, plist)]
    sigs = [signature(o, ps) for o, ps in zip(opts, plist)]
    distinct = list(dict.fromkeys(sigs))
    order = sorted(range(len(runs)), key=lambda k: distinct.index(sigs[k]))
    position = {k: i for i, k in enumerate(order)}
    stack = stacked.stack([nets[k] for k in order])
    segments, at = [], 0
    for sig in distinct:
        members = [k for k in order if sigs[k] == sig]
        segments.append(BatchedOptimizer(
            [opts[k] for k in members], [runs[k].schedule for k in members], stack.params, at,
            [runs[k] for k in members], [idx for _, idx, _, _ in sig]))
        at += len(members)

    grid = log_grid(first.steps, log_points)
    norm_objs = {name: by_name(name, plist[0]) for name in norms}
    records = [{"log_loss": [], "param_norm": [], "directions": [], **{n: [] for n in norms}}
               for _ in runs]
    observed = [{} for _ in runs]
    segment_of = {}
    for seg in segments:
        for j in range(seg.k):
            segment_of[seg.start + j] = (seg, j)
    K = len(runs)
    F = np.zeros(K)  # each run's frame, in stack order
    frames = torch.zeros(K, 1, device=dev, dtype=dtype)  # F as a column, for the loss slopes
    n = X.shape[0]
    samplers = None
    if first.batch != "full":
        samplers = [batches(first.batch, n, first.batch_size, runs[k].seed) for k in order]
    ys = y.expand(K, n)

    def log(q_all, t, grads):
        for k in range(K):
            i = position[k]
            _record(records[k], stack.run_params(i), q_all[i], stack.degree, first.loss, norm_objs)
            if observe is not None:
                with torch.no_grad():
                    for p, P, G in zip(plist[k], stack.params, grads, strict=True):
                        p.copy_(P[i])
                        p.grad = G[i].clone()
                    seg, j = segment_of[i]
                    seg.export(j, opts[k], t)
                _observe(observed[k], observe, nets[k], opts[k], float(F[i]))

    next_log, pending, grads = 0, False, None
    for t in range(1, first.steps + 1):
        if samplers is None:
            q = y * stack.forward(X)
            q_all = q
            terms = losses.log_terms(q, first.loss)
            log_l = losses.logsumexp(terms)
            ys_step = ys
        else:
            q_all = y * stack.outputs(X)
            log_l = losses.log_loss(q_all, first.loss)
            idx = torch.stack([next(s) for s in samplers]).to(dev)
            ys_step = y[idx]
            q = ys_step * stack.forward(X[idx])
            weights = n / idx.shape[1]
        if pending:  # the last step's log point: its margins are this step's, before the update
            log(q_all, t - 1, grads)
            pending = False
        log_l = log_l.cpu().numpy()
        if not np.isfinite(log_l).all():
            k = order[int(np.flatnonzero(~np.isfinite(log_l))[0])]
            raise RunFailed(runs[k], f"{runs[k].label}: the loss became {log_l[position[k]]} at "
                                     f"step {t}; lower the learning rate.")
        moved = np.abs(log_l + F) > FRAME_SLACK
        if frame and moved.any():
            shift = np.where(moved, -log_l - F, 0.0)
            while np.any(shift != 0):  # in pieces, as the loop does: no ratio overflows
                piece = np.clip(shift, -700.0, 700.0)
                ratios = np.exp(piece)
                for seg in segments:
                    seg.rescale_gradients(ratios[seg.start:seg.start + seg.k])
                shift = shift - piece
            F = np.where(moved, -log_l, F)
            frames = torch.as_tensor(F, device=dev, dtype=dtype)[:, None]
        if samplers is not None:
            # ℓ falls with q: a batch's largest framed log-loss term is its smallest margin's.
            _warn_underflow((losses.log_terms(q.amin(dim=1), first.loss) + frames[:, 0]).min())
        dq = losses.framed_slopes(q, frames, first.loss)
        if samplers is not None:
            dq = dq * weights
        grads = stack.backward(dq * ys_step)
        for seg in segments:
            seg.step(stack.params, grads, t)
        if bar is not None:
            bar.update(K)
        if t == grid[next_log]:
            pending = True
            next_log += 1
    if pending:
        log(y * stack.outputs(X), first.steps, grads)

    seconds = (time.perf_counter() - start_time) / K
    engine = {"name": "batched", "runs": K, "peak_bytes": peak_memory(dev)}
    out = []
    with torch.no_grad():
        for k, (run, net) in enumerate(zip(runs, nets)):
            for p, P in zip(net.parameters(), stack.params):
                p.copy_(P[position[k]])
            out.append(_history(run, grid, records[k], net, seconds, engine, observed[k]))
    return out


__all__ = ["train_group", "why_not", "group_key", "chunk_size", "steepest", "l2_norms",
           "BatchedOptimizer", "signature", "free_memory", "peak_memory", "UNBATCHED"]
