"""Gradient surgery for the multitask trainer: PCGrad (Yu et al. 2020), main + auxiliary PCGrad (MTRec, Bi et
al. 2022, as in report C), or none, with gradient-conflict telemetry.

How the trainer uses it, once per optimizer step::

    if surgery.needs_per_task(step):
        for task, batch in batches:              # one backward per task, on its own batch; no retain_graph
            loss(task, batch).backward()         # (several micro-batches per task under accumulation)
            surgery.capture(task)                # shared grads -> row `task` of a flat buffer; heads untouched
        info = surgery.step(step)                # project once; shared .grad <- update; telemetry if due
        if info.skipped:                         # a non-finite task gradient: nothing was written
            optimizer.zero_grad(); continue
    else:                                        # method "none" and no telemetry this step
        sum(losses).backward()
    optimizer.step(); optimizer.zero_grad()

The batches of different tasks are disjoint, so their autograd graphs share only the leaf parameters: K
backward passes do exactly the work of one backward of the summed loss, and PCGrad costs only the copies,
a K x K Gram matrix and one weighted sum (see bench/bench_pcgrad.py).

The pieces: ``pcgrad.py`` (the pure function), ``buffers.py`` (the flat per-task buffers), ``telemetry.py``
(the conflict record). Taught in notebooks/09_gradient_surgery.ipynb.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from mtkit.surgery.buffers import FlatGradBuffers
from mtkit.surgery.gramian import small_dtype
from mtkit.surgery.pcgrad import (
    DEFAULT_EPS,
    REDUCTIONS,
    PCGradResult,
    gram_matrix,
    main_aux_mixing,
    main_aux_pcgrad,
    pcgrad,
    pcgrad_weights,
    visit_orders,
)
from mtkit.surgery.telemetry import GradientTelemetry

__all__ = ["GradientSurgery", "SurgeryInfo", "GradientTelemetry", "FlatGradBuffers", "PCGradResult", "pcgrad",
           "pcgrad_weights", "visit_orders", "main_aux_pcgrad", "main_aux_mixing", "gram_matrix", "METHODS"]

METHODS = ("none", "pcgrad", "main_aux")


@dataclass
class SurgeryInfo:
    """What ``GradientSurgery.step`` did.

    ``conflicts`` (number of conflicting task pairs) and ``removed_norm`` (|plain combination - update|) are
    0-dim tensors on the gradients' device so that reading them is the caller's choice (``float()`` waits for
    the device); they are None when nothing was applied.
    """

    step: int
    applied: bool = False  # an update was written into the shared .grad
    skipped: bool = False  # a task gradient was not finite: nothing written, the optimizer step must be skipped
    nonfinite_tasks: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()  # the tasks that contributed a gradient this step
    conflicts: torch.Tensor | None = None
    removed_norm: torch.Tensor | None = None
    telemetry_recorded: bool = False
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain Python values for logging (waits for the device)."""
        return {"step": self.step, "applied": self.applied, "skipped": self.skipped,
                "nonfinite_tasks": list(self.nonfinite_tasks), "tasks": list(self.tasks),
                "conflicts": None if self.conflicts is None else int(self.conflicts),
                "removed_norm": None if self.removed_norm is None else float(self.removed_norm),
                "telemetry_recorded": self.telemetry_recorded}


class GradientSurgery:
    """Per-task gradients of the shared encoder, combined by "none" (sum), "pcgrad" or "main_aux".

    ``shared_params``: (name, parameter) pairs of the shared encoder only (an ``nn.Module`` works too); names may
    carry a prefix such as ``encoder.``. ``task_names``: the K tasks, in a fixed order. ``method``: "none",
    "pcgrad" or "main_aux" (then ``main_task`` names the main task and ``aux_weight`` scales the sum of the
    others). ``reduction``: "sum" (the paper) or "mean" (divides by the number of tasks that contributed a
    gradient this step; 2 for main_aux). ``telemetry_every``: record conflict telemetry every N optimizer
    steps (0 or None: off). ``num_layers``: encoder depth, for the per-layer blocks (inferred from the names
    when None). ``generator``: the source of PCGrad's random visiting orders; without one, a private
    generator seeded from ``torch.initial_seed()`` is used, so surgery never shifts the global random stream
    (dropout masks stay those of the run without surgery). ``block_fn(name, num_layers)`` groups parameters
    for telemetry (default ``mtkit.model.names.block_of``).

    Precision: the buffers are float32 whatever the parameters (bf16 autocast needs no loss scaler). With
    fp16 and a ``GradScaler`` the captured gradients would be scaled: PCGrad's projections do not change under
    a common scale, but the telemetry norms would, and ``step`` does not unscale; use bf16.

    Host synchronisation: ``step`` waits for the device once per step, to read the K finiteness flags (it must
    know whether to write the update); everything else stays on the device, and telemetry copies its few
    numbers to the host only at telemetry steps.

    Taught in notebooks/09_gradient_surgery.ipynb.
    """

    def __init__(self, shared_params: Iterable[tuple[str, torch.nn.Parameter]] | torch.nn.Module,
                 task_names: Iterable[str], method: str = "pcgrad", main_task: str | None = None,
                 aux_weight: float = 0.3, reduction: str = "sum", telemetry_every: int | None = 50,
                 num_layers: int | None = None, generator: torch.Generator | None = None, eps: float = DEFAULT_EPS,
                 block_fn: Callable[[str, int], str] | None = None) -> None:
        self.task_names = list(task_names)
        if not self.task_names:
            raise ValueError("GradientSurgery needs at least one task name.")
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"task names must be unique; got {self.task_names}.")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be 'sum' (the paper's choice) or 'mean'; got {reduction!r}.")
        if method == "main_aux":
            if main_task not in self.task_names:
                raise ValueError(f"method 'main_aux' needs main_task to be one of {self.task_names}; "
                                 f"got {main_task!r}.")
            if len(self.task_names) < 2:
                raise ValueError("method 'main_aux' needs at least one auxiliary task besides the main task.")
        if telemetry_every is not None and (not isinstance(telemetry_every, int) or telemetry_every < 0):
            raise ValueError(f"telemetry_every must be a non-negative int or None; got {telemetry_every!r}.")
        self.method = method
        self.main_task = main_task
        self.aux_weight = float(aux_weight)
        self.reduction = reduction
        self.telemetry_every = int(telemetry_every or 0)
        self.eps = float(eps)
        self.index = {name: k for k, name in enumerate(self.task_names)}
        if generator is None:
            generator = torch.Generator(device="cpu").manual_seed(torch.initial_seed())
        self.generator = generator

        if isinstance(shared_params, torch.nn.Module):
            shared_params = shared_params.named_parameters()
        pairs = [(n, p) for n, p in shared_params if p.requires_grad]
        self.enabled = bool(pairs)
        if not self.enabled:
            warnings.warn("GradientSurgery got no trainable shared parameters (a frozen encoder?): there is nothing "
                          "to project or measure, so surgery and telemetry are off.", stacklevel=2)
            self.buffers = None
            blocks = []
        else:
            self.buffers = FlatGradBuffers(pairs, len(self.task_names), num_layers=num_layers, block_fn=block_fn)
            blocks = self.buffers.block_names
        self.telemetry = GradientTelemetry(self.task_names, blocks, meta={
            "method": method, "reduction": reduction, "main_task": main_task, "aux_weight": self.aux_weight,
            "telemetry_every": self.telemetry_every, "eps": self.eps})
        # a learner's pcgrad(grads (K, P), orders (K, K - 1)) -> (P,) (exercises/pcgrad.py), run on the task
        # gradients instead of the Gram-matrix formulation; the `implementations` training option sets it
        self.pcgrad_fn: Callable | None = None
        self._orders: torch.Tensor | None = None
        # counters
        self.steps_applied = 0
        self.steps_skipped = 0
        self.skipped_by_task = {name: 0 for name in self.task_names}
        self.skipped_steps: list[int] = []

    # ---- the trainer's calls ------------------------------------------------------------------------------------
    def telemetry_due(self, step: int) -> bool:
        return self.enabled and self.telemetry_every > 0 and step % self.telemetry_every == 0

    def needs_per_task(self, step: int) -> bool:
        """True when this step needs one backward per task followed by ``capture``; False when the trainer may
        do one backward of the summed loss (method "none" and no telemetry due)."""
        return self.enabled and (self.method != "none" or self.telemetry_due(step))

    def capture(self, task_name: str) -> None:
        """After ``loss_task.backward()``: move the shared ``.grad`` into the task's row (adds under
        accumulation) and set them to None. Task-head gradients are left alone."""
        if task_name not in self.index:
            raise KeyError(f"unknown task {task_name!r}; this surgery was built for {self.task_names}.")
        if self.enabled:
            self.buffers.capture(self.index[task_name])

    def discard(self) -> None:
        """Forget the gradients captured so far this step (e.g. after a non-finite loss the trainer skips)."""
        if self.enabled:
            self.buffers.reset()
            for p in self.buffers.params:
                p.grad = None

    @torch.no_grad()
    def step(self, step: int) -> SurgeryInfo:
        """Combine the captured task gradients once for this optimizer step and write the shared ``.grad``.

        Checks every task's gradient for non-finite values *before* combining: if any is not finite nothing is
        written, the step is counted and reported (``info.skipped``), and the trainer must skip
        ``optimizer.step()``. Returns a ``SurgeryInfo``. Does nothing when nothing was captured.
        """
        if not self.enabled or not any(self.buffers.captured):
            return SurgeryInfo(step=step)
        buffers = self.buffers
        buffers.finalize_rows()
        present_list = list(buffers.captured)
        tasks = tuple(n for n, p in zip(self.task_names, present_list) if p)
        block_grams = buffers.block_grams()  # (B, K, K) float64
        gram = block_grams.sum(dim=0)  # (K, K)
        # A row is finite exactly when its squared norm is (inf and NaN propagate through the sum of squares);
        # a finite row whose partial sums of squares overflow float32 (entries near 1e19) is flagged too.
        finite = torch.isfinite(gram.diagonal()).cpu().tolist()  # the one host synchronisation per step
        if not all(finite):
            bad = tuple(n for n, ok in zip(self.task_names, finite) if not ok)
            for name in bad:
                self.skipped_by_task[name] += 1
            self.steps_skipped += 1
            self.skipped_steps.append(int(step))
            buffers.reset()
            for p in buffers.params:
                p.grad = None
            return SurgeryInfo(step=step, skipped=True, nonfinite_tasks=bad, tasks=tasks)

        present = torch.tensor(present_list, device=gram.device)  # (K,) bool
        coefficients, weights = self._coefficients(gram, present)  # (K,), (K, K) or None
        if self.pcgrad_fn is not None and self.method != "none":
            buffers.write_flat(self._learner_update(present))
        else:
            buffers.write_update(coefficients)
        plain = self._plain_coefficients(present, gram.device)  # (K,)
        G = gram.to(coefficients.dtype)
        removed = plain - coefficients  # (K,) the update surgery took away, as a combination of the task rows
        removed_norm = (removed @ G @ removed).clamp_min(0).sqrt()
        pair_conflict = (gram < 0) & present[:, None] & present[None, :]
        conflicts = pair_conflict.triu(diagonal=1).sum()
        recorded = False
        if self.telemetry_due(step):
            plain_norm = (plain @ G @ plain).clamp_min(0).sqrt()
            update_norm = (coefficients @ G @ coefficients).clamp_min(0).sqrt()
            if weights is not None:  # pcgrad: what surgery removed from each task's own gradient
                R = torch.eye(len(present), dtype=G.dtype, device=G.device) - weights  # (K, K)
                removed_task = torch.einsum("ik,kl,il->i", R, G, R).clamp_min(0).sqrt()  # (K,)
            elif self.method == "none":
                removed_task = torch.zeros(len(present), dtype=G.dtype, device=G.device)
            else:  # main_aux projects combinations of tasks, so there is no per-task removal to report
                removed_task = torch.full((len(present),), float("nan"), dtype=G.dtype, device=G.device)
            self.telemetry.record(step, block_grams, present, plain_norm, update_norm, removed_norm, removed_task)
            recorded = True
        buffers.reset()
        self.steps_applied += 1
        return SurgeryInfo(step=step, applied=True, tasks=tasks, conflicts=conflicts, removed_norm=removed_norm,
                           telemetry_recorded=recorded)

    def _learner_update(self, present: torch.Tensor) -> torch.Tensor:
        """The (P,) update from ``pcgrad_fn`` on the task gradients (K, P), with the visiting orders the library
        formulation drew this step; "main_aux" runs it on the two rows [g_main; g_aux]."""
        rows = self.buffers.rows  # (K, P) float32, absent tasks' rows are zeros
        if self.method == "main_aux":
            A = main_aux_mixing(len(self.task_names), self.index[self.main_task], self.aux_weight,
                                dtype=rows.dtype, device=rows.device)  # (2, K)
            rows = A @ rows  # (2, P): g_main, g_aux
        update = self.pcgrad_fn(rows, self._orders)  # (P,)
        if not isinstance(update, torch.Tensor) or tuple(update.shape) != (rows.shape[1],):
            raise ValueError(f"your pcgrad returned {type(update).__name__} of shape "
                             f"{tuple(getattr(update, 'shape', ()))}; expected one flat update ({rows.shape[1]},).")
        if self.reduction == "mean":
            update = update / (2 if self.method == "main_aux" else present.sum().clamp_min(1))
        return update

    # ---- the combination, on the K x K side -------------------------------------------------------------------------
    def _plain_coefficients(self, present: torch.Tensor, device: torch.device) -> torch.Tensor:
        c = present.to(torch.float64 if device.type != "mps" else torch.float32)  # (K,) 1 for each task present
        if self.reduction == "mean":
            c = c / c.sum().clamp_min(1)
        return c

    def _coefficients(self, gram: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        K = len(self.task_names)
        if self.method == "none":
            return self._plain_coefficients(present, gram.device), None
        if self.method == "pcgrad":
            orders = visit_orders(K, self.generator, device=gram.device)  # (K, K - 1)
            self._orders = orders
            weights = pcgrad_weights(gram, orders, self.eps)  # (K, K); absent tasks have zero rows: no effect
            coefficients = weights.sum(dim=0)  # (K,)
            if self.reduction == "mean":
                coefficients = coefficients / present.sum().clamp_min(1)
            return coefficients, weights
        # main_aux: PCGrad between g_main and g_aux = aux_weight * (sum of the others)
        A = main_aux_mixing(K, self.index[self.main_task], self.aux_weight, device=gram.device)  # (2, K)
        A = A.to(small_dtype(gram.device))
        gram2 = A @ gram.to(A.dtype) @ A.T  # (2, 2)
        orders = visit_orders(2, self.generator, device=gram.device)  # (2, 1)
        self._orders = orders
        weights2 = pcgrad_weights(gram2, orders, self.eps)  # (2, 2)
        coefficients = weights2.sum(dim=0) @ A  # (K,)
        if self.reduction == "mean":
            coefficients = coefficients / 2
        return coefficients, None

    # ---- resume -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Counters, the generator state and the telemetry so far (tensors, strings and numbers only)."""
        return {"task_names": list(self.task_names), "method": self.method, "steps_applied": self.steps_applied,
                "steps_skipped": self.steps_skipped, "skipped_by_task": dict(self.skipped_by_task),
                "skipped_steps": list(self.skipped_steps), "generator_state": self.generator.get_state(),
                "telemetry": self.telemetry.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if list(state["task_names"]) != self.task_names:
            raise ValueError(f"this surgery state is for tasks {state['task_names']}, not {self.task_names}: "
                             "resume with the same task list, in the same order.")
        if state["method"] != self.method:
            warnings.warn(f"resuming a run saved with surgery method {state['method']!r} under {self.method!r}.",
                          stacklevel=2)
        self.steps_applied = int(state["steps_applied"])
        self.steps_skipped = int(state["steps_skipped"])
        self.skipped_by_task = {k: int(v) for k, v in state["skipped_by_task"].items()}
        self.skipped_steps = [int(s) for s in state["skipped_steps"]]
        self.generator.set_state(state["generator_state"])
        if self.enabled:
            self.telemetry.load_state_dict(state["telemetry"])

    def summary(self) -> str:
        """One line for logs: method, steps applied and skipped (with the tasks at fault)."""
        bad = {k: v for k, v in self.skipped_by_task.items() if v}
        return (f"gradient surgery {self.method!r}: {self.steps_applied} steps applied, {self.steps_skipped} skipped "
                f"for non-finite gradients{f' {bad}' if bad else ''}, {len(self.telemetry)} telemetry records")
