"""Checks that teach: verify a learner's function against mtkit's reference, and explain a failure.

Each ``check_<exercise>(fn)`` runs ``fn`` on a few random and edge-case inputs (fixed seeds, so a failure
repeats) and compares with the reference implementation in mtkit (or torch). On success it returns a
:class:`CheckResult` that lists the cases passed. On failure it raises :class:`CheckFailure` saying which case,
what was expected and what came back (shapes, dtypes, a few values, where the largest difference is) and a
hint; when the wrong answer matches a classic mistake (a missing 1/sqrt(d), a softmax over the wrong axis,
eps in the wrong place...) the hint names that mistake. A stub that still raises ``NotImplementedError``
gives a ``NotImplementedError`` whose message names the function to write and its file.

The helpers of CS231n's assignments are here too: :func:`rel_error` and a numerical gradient check
(:func:`numerical_gradient`, :func:`gradient_check`) by central differences.

=========================  ==================================  ===========================================
exercise file              function                            check (reference)
=========================  ==================================  ===========================================
attention.py               ``attention(q, k, v, mask)``        ``check_attention`` (torch SDPA)
transformer_layer.py       ``layer_forward(layer, x, mask)``   ``check_layer_forward`` (mtkit.model.bert.BertLayer)
adamw.py                   ``adamw_step(p, g, m, v, t, ...)``  ``check_adamw_step`` (mtkit.optim.adamw)
mean_pooling.py            ``mean_pool(h, mask)``              ``check_mean_pool`` (mtkit.model.pooling)
pair_features.py           ``pair_features(u, v)``             ``check_pair_features`` (mtkit.tasks.heads)
llrd.py                    ``llrd_param_groups(model, ...)``   ``check_llrd_groups`` (mtkit.optim.llrd)
pcgrad.py                  ``project_conflicting(g_i, g_j)``   ``check_pcgrad_projection`` (mtkit.surgery)
pcgrad.py                  ``pcgrad(grads, orders)``           ``check_pcgrad`` (mtkit.surgery)
gradient_cosine.py         ``gradient_cosine(gs_i, gs_j)``     ``check_gradient_cosine`` (mtkit.surgery)
=========================  ==================================  ===========================================

``check_exercise("attention", source="exercises")`` loads a file (``mtkit.exercises.load_module``) and runs
every check of it in order.

In a notebook, :class:`Workbook` runs one exercise's check at a time and never stops the notebook::

    book = Workbook(exercise_source)          # None: your exercises/ (see mtkit.exercises.resolve_source)
    attention = book.check("attention")       # prints passed / failed (the check's message) / not written yet
    ...
    save_results(..., checks=book.record())   # per exercise: whose code was checked, and the outcome

``book.check`` returns the function the rest of the notebook should use: yours when it passed, otherwise the
worked answer from ``solutions/``, and it says so.

Taught in notebooks/03_attention_and_minbert.ipynb (first use) and every notebook with an exercise.
"""
from __future__ import annotations

import math
import os
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

from mtkit.exercises.sources import SOURCE_ENV
from pathlib import Path
from mtkit.util.paths import find_root
from mtkit.model.bert import BertLayer
from mtkit.model.bert_config import BertConfig
from mtkit.model.bert import _Mask
from mtkit.optim.adamw import adamw_loop
from mtkit.model.pooling import mean_pool as reference
from mtkit.tasks.heads import PairFeatures
from mtkit.model.bert import depth_of
from mtkit.optim import layerwise_lr_groups
from mtkit.surgery.pcgrad import gram_matrix, pcgrad_weights
from mtkit.surgery.pcgrad import gram_matrix
from mtkit.exercises.sources import load_module
from mtkit.model.bert import BertModel
from mtkit.exercises.sources import resolve_source
from mtkit.exercises.sources import source_folder

__all__ = ["CheckFailure", "CheckResult", "NotWrittenYet", "Outcome", "Workbook", "rel_error", "numerical_gradient",
           "gradient_check",
           "check_attention", "check_layer_forward", "check_adamw_step", "check_mean_pool", "check_pair_features",
           "check_llrd_groups", "check_pcgrad_projection", "check_pcgrad", "check_gradient_cosine",
           "EXERCISES", "check_exercise"]


class CheckFailure(AssertionError):
    """A learner's function gave a wrong answer; the message says on which input, how, and what to try."""


class NotWrittenYet(NotImplementedError):
    """A stub still raises ``NotImplementedError``: ``function`` (the innermost one that raised), ``filename``
    and ``line`` say which to write."""

    def __init__(self, message: str, function: str, filename: str, line: int):
        super().__init__(message)
        self.function, self.filename, self.line = function, filename, line


@dataclass
class CheckResult:
    """A passed check: which function, which cases."""

    check: str
    function: str
    cases: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.check}: {self.function}() passed all {len(self.cases)} cases"

    def __repr__(self) -> str:
        lines = [str(self)] + [f"  ok  {case}" for case in self.cases]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- numeric helpers
def rel_error(x, y, eps: float = 1e-8) -> float:
    """The largest relative error max |x - y| / max(eps, |x| + |y|), as in CS231n's assignments.

    Around 1e-7 or less in float64 means the two agree; 1e-2 or more means something is wrong.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}.")
    if x.numel() == 0:
        return 0.0
    return float(((x - y).abs() / (x.abs() + y.abs()).clamp(min=eps)).max())


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """The gradient of the scalar ``f(x)`` by central differences, (f(x + h e_i) - f(x - h e_i)) / 2h per entry.

    Works on a float64 copy of ``x`` (float32 rounding would swamp the differences); costs 2 x numel(x) calls
    of ``f``, so keep ``x`` small.
    """
    x = x.detach().to(torch.float64).clone()
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            plus = float(f(x))
            flat[i] = old - h
            minus = float(f(x))
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * h)
    return grad


def gradient_check(f: Callable[..., torch.Tensor], *inputs: torch.Tensor, h: float = 1e-6) -> float:
    """Compare autograd's gradient of the scalar ``f(*inputs)`` with the numerical one; returns the largest
    :func:`rel_error` over the inputs. Inputs are cast to float64. Below about 1e-6: the backward is right.
    """
    leaves = [x.detach().to(torch.float64).clone().requires_grad_(True) for x in inputs]
    out = f(*leaves)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise ValueError("gradient_check: f must return a scalar tensor (e.g. (output * weights).sum()).")
    analytic = torch.autograd.grad(out, leaves, allow_unused=True)
    worst = 0.0
    for index, (leaf, grad) in enumerate(zip(leaves, analytic)):
        def f_i(x, index=index):
            args = [x if j == index else leaves[j].detach() for j in range(len(leaves))]
            return f(*args)
        numeric = numerical_gradient(f_i, leaf, h)
        grad = torch.zeros_like(numeric) if grad is None else grad
        worst = max(worst, rel_error(grad, numeric))
    return worst


# ---------------------------------------------------------------------------------------------- plumbing
def _preview(t: torch.Tensor, n: int = 4) -> str:
    values = t.detach().flatten()[:n].double().tolist()
    more = ", ..." if t.numel() > n else ""
    return "[" + ", ".join(f"{v:.4g}" for v in values) + more + "]"


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, dtype {str(x.dtype).replace('torch.', '')}, first values {_preview(x)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}: (" + "; ".join(_describe(v) for v in x[:3]) + ")"
    return f"{type(x).__name__} {x!r}"[:200]


def _short_path(filename: str) -> str:
    """A repository file as ``exercises/attention.py``; anything else unchanged."""
    path = Path(filename)
    try:
        return path.resolve().relative_to(find_root()).as_posix()
    except (ValueError, FileNotFoundError, OSError):
        return filename


def _where_raised(err: BaseException) -> tuple[str, str, int]:
    frames = traceback.extract_tb(err.__traceback__)
    frame = frames[-1] if frames else None
    if frame is None:
        return "the function", "?", 0
    return frame.name, _short_path(frame.filename), frame.lineno


class _Runner:
    """Runs one check: calls the learner's function with friendly errors, records cases, fails with context."""

    def __init__(self, check: str, fn: Callable):
        if not callable(fn):
            raise TypeError(f"{check} expects your function itself (e.g. {check}(attention)), got "
                            f"{type(fn).__name__}. Did you call it, {check}(attention(...)), by mistake?")
        self.check, self.fn = check, fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.case = ""
        self.inputs = ""
        self.cases: list[str] = []

    def start(self, case: str, inputs: str) -> None:
        self.case, self.inputs = case, inputs

    def passed(self) -> None:
        self.cases.append(self.case)

    def call(self, *args, **kwargs):
        try:
            return self.fn(*args, **kwargs)
        except NotWrittenYet:
            raise
        except NotImplementedError as err:
            func, filename, line = _where_raised(err)
            raise NotWrittenYet(
                f"{func}() is not written yet: it still raises NotImplementedError ({filename}, line {line}). "
                f"Replace the `raise NotImplementedError()` under `# YOUR CODE HERE` with your code, then run "
                f"{self.check}({self.name}) again.", func, filename, line) from None
        except CheckFailure:
            raise
        except Exception as err:
            func, filename, line = _where_raised(err)
            raise CheckFailure(
                f"{self.check}: {self.name}() raised {type(err).__name__}: {err}\n"
                f"  case: {self.case}\n  inputs: {self.inputs}\n"
                f"  raised in {func}() ({filename}, line {line}).\n"
                f"  Hint: print the shapes of your intermediate tensors; the docstring gives the expected ones."
            ) from err

    def fail(self, message: str, hint: str) -> None:
        raise CheckFailure(f"{self.check}: {self.name}() failed on case '{self.case}'.\n"
                           f"  inputs: {self.inputs}\n{message}\n  Hint: {hint}")

    def tensor(self, what: str, got, expected: torch.Tensor, hint: str, atol: float = 1e-5, rtol: float = 1e-4,
               known_mistakes: dict[str, tuple[torch.Tensor, str]] | None = None) -> None:
        """``got`` must be a tensor equal to ``expected`` (shape, dtype and values, within tolerances)."""
        if not isinstance(got, torch.Tensor):
            self.fail(f"  {what}: expected a tensor of shape {tuple(expected.shape)}, got {_describe(got)}.",
                      "return a torch.Tensor (not a list, a number or None).")
        if tuple(got.shape) != tuple(expected.shape):
            self.fail(f"  {what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.",
                      "compare each dimension with the docstring; a transpose, a missing or extra "
                      "unsqueeze/squeeze, or a sum over the wrong dimension changes the shape.")
        if got.dtype != expected.dtype:
            self.fail(f"  {what}: expected dtype {expected.dtype}, got {got.dtype}.",
                      "keep the input's dtype: build masks and constants with .to(x.dtype) rather than "
                      "float32 defaults, and do not call .float() or .double() on the result.")
        got_d, exp_d = got.detach().double(), expected.detach().double()
        if not torch.isfinite(got_d).all() and torch.isfinite(exp_d).all():
            bad = (~torch.isfinite(got_d)).nonzero()[0].tolist()
            self.fail(f"  {what}: your result holds NaN or inf (first at index {tuple(bad)}); the expected values "
                      f"are all finite: {_preview(exp_d)}.",
                      "a division by zero (clamp the denominator) or an inf - inf (use a large finite negative "
                      "number, torch.finfo(dtype).min, rather than -inf, for masking).")
        if torch.allclose(got_d, exp_d, atol=atol, rtol=rtol, equal_nan=True):
            return
        diff = (got_d - exp_d).abs().nan_to_num(nan=float("inf"))
        index = tuple(torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
        index = tuple(int(i) for i in index)
        message = (f"  {what}:\n    expected {_describe(expected)}\n    got      {_describe(got)}\n"
                   f"    largest difference {float(diff.max()):.3g} at index {index} "
                   f"(expected {float(exp_d[index]):.6g}, got {float(got_d[index]):.6g}); "
                   f"rel_error {rel_error(got_d, exp_d):.2g}")
        for name, (variant, mistake_hint) in (known_mistakes or {}).items():
            if variant.shape == got.shape and torch.allclose(got_d, variant.detach().double(), atol=atol, rtol=rtol):
                self.fail(message + f"\n  Your result matches a classic mistake: {name}.", mistake_hint)
        self.fail(message, hint)

    def result(self) -> CheckResult:
        return CheckResult(self.check, self.name, list(self.cases))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=_gen(seed), dtype=torch.float64) * scale).to(dtype)


def _shapes(**tensors) -> str:
    parts = []
    for name, t in tensors.items():
        if t is None:
            parts.append(f"{name}=None")
        elif isinstance(t, torch.Tensor):
            parts.append(f"{name} {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}")
        else:
            parts.append(f"{name}={t!r}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- attention
def _reference_attention(q, k, v, mask):
    """torch's fused kernel; probabilities recovered by attending over an identity matrix of values."""
    F = torch.nn.functional
    keep = None if mask is None else mask[:, None, None, :].bool()  # (B, 1, 1, T)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, heads, T, D)
    T = k.shape[-2]
    eye = torch.eye(T, dtype=q.dtype).expand(*q.shape[:-2], T, T)  # values = one-hot rows: output = probs
    probs = F.scaled_dot_product_attention(q, k, eye, attn_mask=keep)  # (B, heads, T, T)
    return context, probs


def _attention_mistakes(q, k, v, mask) -> dict[str, tuple[torch.Tensor, str]]:
    D = q.shape[-1]
    raw = q @ k.transpose(-2, -1)
    keep = None if mask is None else mask[:, None, None, :].bool()
    fill = torch.finfo(q.dtype).min

    def finish(scores, softmax_dim=-1, mask_queries=False):
        if keep is not None:
            m = keep.transpose(-1, -2) if mask_queries else keep
            scores = scores.masked_fill(~m, fill)
        return scores.softmax(dim=softmax_dim) @ v

    mistakes = {
        "no 1/sqrt(D) scaling": (finish(raw), "divide the scores by math.sqrt(D), D = q.shape[-1] (the head size)."),
        "scaling by 1/D instead of 1/sqrt(D)": (finish(raw / D), "the scale is 1/sqrt(D), not 1/D."),
        "softmax over the queries (dim -2)": (finish(raw / math.sqrt(D), softmax_dim=-2),
                                              "each query's row must sum to 1: softmax over the last dimension "
                                              "(the keys), dim=-1."),
    }
    if keep is not None:
        mistakes["the mask applied to the queries instead of the keys"] = (
            finish(raw / math.sqrt(D), mask_queries=True),
            "the mask removes padded *keys* (columns of the score matrix): shape it (B, 1, 1, T).")
        mistakes["no padding mask"] = ((raw / math.sqrt(D)).softmax(-1) @ v,
                                       "use attention_mask: set the scores of padded keys to a very negative "
                                       "number before the softmax.")
    return mistakes


def check_attention(attention: Callable) -> CheckResult:
    """Check ``attention(q, k, v, attention_mask) -> (context, probs)`` (notebooks/03_attention_and_minbert)."""
    run = _Runner("check_attention", attention)
    cases = [
        ("one sentence, one head, no mask (None)", (1, 1, 4, 8), None, torch.float32),
        ("2 sentences x 3 heads, mask of all ones", (2, 3, 5, 4), [[1] * 5, [1] * 5], torch.float32),
        ("padding: the 2nd sentence's last 2 tokens are [PAD]", (2, 2, 5, 8), [[1] * 5, [1, 1, 1, 0, 0]],
         torch.float32),
        ("padding in float64, larger head size D=64", (3, 2, 6, 64),
         [[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], torch.float64),
        ("a single token (T = 1)", (2, 1, 1, 4), [[1], [1]], torch.float32),
    ]
    for seed, (case, shape, mask_rows, dtype) in enumerate(cases):
        q, k, v = (_randn(*shape, seed=10 * seed + i, dtype=dtype, scale=1.5) for i in range(3))
        mask = None if mask_rows is None else torch.tensor(mask_rows, dtype=torch.long)
        run.start(case, _shapes(q=q, k=k, v=v, attention_mask=mask))
        expected_context, expected_probs = _reference_attention(q, k, v, mask)
        out = run.call(q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone())
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            run.fail(f"  expected a pair (context, probs), got {_describe(out)}.",
                     "end with `return context, probs`.")
        context, probs = out
        run.tensor("context = probs @ v", context, expected_context,
                   "context = softmax(q @ k^T / sqrt(D), padded keys masked, over the last dimension) @ v.",
                   known_mistakes=_attention_mistakes(q, k, v, mask))
        run.tensor("probs (attention probabilities)", probs, expected_probs,
                   "probs = softmax(q @ k^T / sqrt(D) with padded keys masked) over the last dimension.")
        run.passed()
    # Gradients flow through (no .detach(), no in-place op on a leaf, no numpy round trip).
    q, k, v = (_randn(1, 2, 3, 4, seed=90 + i, dtype=torch.float64) for i in range(3))
    mask = torch.tensor([[1, 1, 0]])
    weights = _randn(1, 2, 3, 4, seed=99, dtype=torch.float64)
    run.start("gradients: autograd through your function vs a numerical gradient (float64)",
              _shapes(q=q, k=k, v=v, attention_mask=mask))
    error = gradient_check(lambda a, b, c: (run.call(a, b, c, mask)[0] * weights).sum(), q, k, v)
    if not error < 1e-5:
        run.fail(f"  rel_error between autograd's and the numerical gradient: {error:.2g} (should be < 1e-5).",
                 "do not .detach() or convert to numpy inside the function, and avoid in-place changes "
                 "(masked_fill_, +=) on tensors that autograd needs.")
    run.passed()
    return run.result()


# ---------------------------------------------------------------------------------------------- transformer layer
def _tiny_layer(seed: int, dtype=torch.float32):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32)
    layer = BertLayer(config).to(dtype).eval()
    with torch.no_grad():  # BERT-like scales: not the near-zero fresh init, so mistakes show
        for p in layer.parameters():
            p.normal_(0.0, 0.2, generator=_gen(seed + p.numel()))
        layer.attention_norm.weight.add_(1.0)
        layer.ffn_norm.weight.add_(1.0)
    return layer


def _reference_layer(layer, x, mask):
    with torch.no_grad():
        return layer(x, _Mask(mask), kind="explicit")[0]  # (B, T, H)


def _layer_mistakes(layer, x, mask) -> dict[str, tuple[torch.Tensor, str]]:
    import torch.nn.functional as F  # imported here: torch is heavy; this module works without it until here
    att = layer.attention

    def forward(gelu=F.gelu, residual=True, pre_ln=False, scale=True):
        B, T, H = x.shape
        heads, D = att.num_heads, H // att.num_heads

        def split(t):
            return t.view(B, T, heads, D).transpose(1, 2)

        def attend(h):
            q, k, v = split(att.query(h)), split(att.key(h)), split(att.value(h))
            scores = q @ k.transpose(-2, -1) / (math.sqrt(D) if scale else 1.0)
            additive = _Mask(mask).additive(scores.dtype)
            scores = scores if additive is None else scores + additive
            return att.output((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H))

        with torch.no_grad():
            if pre_ln:
                h = x + attend(layer.attention_norm(x))
                return h + layer.ffn.down(gelu(layer.ffn.up(layer.ffn_norm(h))))
            r = 1.0 if residual else 0.0
            h = layer.attention_norm(r * x + attend(x))
            return layer.ffn_norm(r * h + layer.ffn.down(gelu(layer.ffn.up(h))))

    return {
        "the tanh approximation of GELU": (forward(gelu=lambda t: F.gelu(t, approximate="tanh")),
                                           "BERT uses the exact GELU: F.gelu(x) (approximate='none')."),
        "ReLU instead of GELU": (forward(gelu=F.relu), "the activation is F.gelu, not ReLU."),
        "no residual connections": (forward(residual=False),
                                    "add the sub-layer's input before each LayerNorm: norm(x + sublayer(x))."),
        "pre-LayerNorm (GPT-2 style) instead of post-LayerNorm": (
            forward(pre_ln=True), "BERT normalises *after* adding the residual: x = norm(x + sublayer(x))."),
        "no 1/sqrt(D) scaling in attention": (forward(scale=False),
                                              "divide the attention scores by sqrt(D), D = H / num_heads."),
    }


def check_layer_forward(layer_forward: Callable) -> CheckResult:
    """Check ``layer_forward(layer, x, attention_mask) -> (B, T, H)`` against ``mtkit.model.bert.BertLayer``."""
    run = _Runner("check_layer_forward", layer_forward)
    cases = [
        ("one sentence, no mask (None)", (1, 5), None, torch.float32),
        ("2 sentences, mask of all ones", (2, 4), [[1] * 4, [1] * 4], torch.float32),
        ("padding: the 2nd sentence has 3 [PAD] tokens (compared on real tokens)", (2, 6),
         [[1] * 6, [1, 1, 1, 0, 0, 0]], torch.float32),
        ("a float64 layer, 3 sentences of different lengths", (3, 5),
         [[1] * 5, [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], torch.float64),
    ]
    for seed, (case, (B, T), mask_rows, dtype) in enumerate(cases):
        layer = _tiny_layer(100 + seed, dtype)
        before = {n: p.detach().clone() for n, p in layer.named_parameters()}
        x = _randn(B, T, 32, seed=200 + seed, dtype=dtype)
        mask = None if mask_rows is None else torch.tensor(mask_rows, dtype=torch.long)
        run.start(case, _shapes(x=x, attention_mask=mask) + "; layer: H=32, 4 heads, eval mode")
        expected = _reference_layer(layer, x, mask)
        with torch.no_grad():
            got = run.call(layer, x.clone(), None if mask is None else mask.clone())
        if isinstance(got, (tuple, list)):
            run.fail(f"  expected one tensor (B, T, H), got {_describe(got)}.",
                     "return only the layer's output x, not (x, probs).")
        mistakes = _layer_mistakes(layer, x, mask)
        if mask is not None:  # padded query positions are meaningless: compare real tokens only
            real = mask.bool()
            expected = expected[real]
            if isinstance(got, torch.Tensor) and got.shape == (B, T, 32):
                got = got[real]
            mistakes = {k: (v[real], h) for k, (v, h) in mistakes.items()}
        run.tensor("layer output", got, expected,
                   "follow the docstring's two lines: attention sub-layer (heads split, scaled, masked, joined, "
                   "output projection), add & norm, then feed-forward (up, GELU, down), add & norm.",
                   atol=1e-4, rtol=1e-4, known_mistakes=mistakes)
        changed = [n for n, p in layer.named_parameters() if not torch.equal(p, before[n])]
        if changed:
            run.fail(f"  your function changed the layer's parameters: {changed[:3]}.",
                     "read the weights, never write them (no in-place ops on layer parameters).")
        run.passed()
    # Training backpropagates through the layer: the gradients must reach x and every weight, and be right.
    layer = _tiny_layer(150, torch.float64)
    x = _randn(2, 4, 32, seed=250, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    real = mask.bool()
    weights = _randn(2, 4, 32, seed=251, dtype=torch.float64)[real]  # (N, H): a random direction on real tokens
    run.start("gradients: autograd through your layer vs through the reference, to x and every weight (float64)",
              _shapes(x=x, attention_mask=mask))
    wrt = [("x", None)] + list(layer.named_parameters())
    x_ref = x.clone().requires_grad_(True)
    expected = torch.autograd.grad((layer(x_ref, _Mask(mask), kind="explicit")[0][real] * weights).sum(),
                                   [x_ref] + [p for _, p in wrt[1:]])
    x_in = x.clone().requires_grad_(True)
    with torch.enable_grad():
        got = run.call(layer, x_in, mask.clone())
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        run.fail("  the output does not depend on the inputs for autograd (no grad_fn).",
                 "do not .detach(), call .item() or go through numpy inside the function, and do not wrap it in "
                 "torch.no_grad().")
    grads = torch.autograd.grad((got[real] * weights).sum(), [x_in] + [p for _, p in wrt[1:]], allow_unused=True)
    for (name, _), g, ref in zip(wrt, grads, expected):
        if g is None:
            run.fail(f"  no gradient reaches {name}: training would never update it.",
                     "use the layer's own modules (layer.attention.query(x), ...) on tensors autograd tracks.")
        run.tensor(f"the gradient of {name}", g, ref, "the forward matches but the backward does not: avoid "
                   "in-place changes (+=, masked_fill_) on tensors autograd needs.", atol=1e-7, rtol=1e-6)
    run.passed()
    return run.result()


# ---------------------------------------------------------------------------------------------- AdamW
def _reference_adamw(p, g, m, v, t, **hyper):
    adamw_loop([p], [g], [m], [v], [t], **hyper)


def _adamw_variant(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, correct_bias, kind):
    """One step of a known-wrong variant, on copies; returns the parameter."""
    p, m, v = p.clone(), m.clone(), v.clone()
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    b1, b2 = 1 - beta1 ** t, 1 - beta2 ** t
    if kind == "torch eps":  # torch.optim.AdamW exactly, its rounded factor included
        p.mul_(1 - lr * weight_decay)
        p.addcdiv_(m / b1, (v / b2).sqrt() + eps, value=-lr)
        return p
    alpha = lr * math.sqrt(b2) / b1 if correct_bias else lr
    if kind == "no bias correction":
        alpha = lr
    if kind == "decay before":
        p.add_(p, alpha=-lr * weight_decay)
    p.addcdiv_(m, v.sqrt() + eps, value=-alpha)
    if kind == "decay with alpha":
        p.add_(p, alpha=-alpha * weight_decay)
    elif kind == "factor":
        p.mul_(1 - lr * weight_decay)
    elif kind == "no decay":
        pass
    elif kind != "decay before":
        p.add_(p, alpha=-lr * weight_decay)
    return p


def check_adamw_step(adamw_step: Callable) -> CheckResult:
    """Check ``adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=, beta1=, beta2=, eps=, weight_decay=,
    correct_bias=)`` (in place) against ``mtkit.optim.adamw.adamw_loop``."""
    run = _Runner("check_adamw_step", adamw_step)
    base = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, correct_bias=True)
    cases = [
        ("the first step (t = 1), no weight decay", [1], {}),
        ("three steps in a row (t = 1, 2, 3): m and v carry over", [1, 2, 3], {}),
        ("weight decay 0.1 at t = 5, lr 0.05", [5], dict(weight_decay=0.1, lr=0.05)),
        ("correct_bias=False (the original BERT optimizer)", [1, 2], dict(correct_bias=False)),
        ("other betas (0.8, 0.99) and eps 1e-3", [1, 2], dict(beta1=0.8, beta2=0.99, eps=1e-3)),
        ("a zero gradient (m and v decay, the parameter barely moves)", [1], dict(weight_decay=0.01)),
    ]
    for seed, (case, steps, changes) in enumerate(cases):
        hyper = base | changes
        shape = (3, 4)
        p = _randn(*shape, seed=300 + seed)
        m, v = torch.zeros(shape), torch.zeros(shape)
        ref_p, ref_m, ref_v = p.clone(), m.clone(), v.clone()
        for t in steps:
            g = torch.zeros(shape) if "zero gradient" in case else _randn(*shape, seed=400 + 10 * seed + t)
            run.start(case + f" [step t = {t}]", _shapes(param=p, grad=g) + f", step={t}, " +
                      ", ".join(f"{k}={val}" for k, val in hyper.items()))
            before = (p.clone(), m.clone(), v.clone())
            _reference_adamw(ref_p, g, ref_m, ref_v, t, **hyper)
            out = run.call(p, g.clone(), m, v, t, **hyper)
            if torch.equal(p, before[0]) and not torch.equal(ref_p, before[0]):
                extra = f" It returned {_describe(out)}." if out is not None else ""
                run.fail(f"  param did not change in place.{extra}",
                         "update the tensors the caller passed, in place: param.addcdiv_(...), exp_avg.mul_(...)"
                         ".add_(...); `param = param - ...` only rebinds a local name.")
            run.tensor("exp_avg (m, first moment) after the step", m, ref_m,
                       "m <- beta1 * m + (1 - beta1) * g, in place (exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)).",
                       atol=1e-7, rtol=1e-6)
            run.tensor("exp_avg_sq (v, second moment) after the step", v, ref_v,
                       "v <- beta2 * v + (1 - beta2) * g * g, in place.", atol=1e-9, rtol=1e-6)
            lr, b1, b2, eps, wd, cb = (hyper[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay",
                                                          "correct_bias"))
            mistakes = {}
            for kind, name, hint in [
                ("torch eps", "torch.optim.AdamW's formula (eps added to sqrt(v_hat), decay before the step)",
                 "the handout adds eps to sqrt(v) (not to sqrt(v_hat)) and folds both corrections into alpha."),
                ("no bias correction", "no bias correction",
                 "with correct_bias=True, alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)."),
                ("decay before", "weight decay applied before the Adam update",
                 "apply the weight decay after the Adam update."),
                ("decay with alpha", "weight decay scaled by alpha instead of lr",
                 "the decay is param -= lr * weight_decay * param, with lr, not the bias-corrected alpha."),
                ("no decay", "no weight decay", "apply param <- param - lr * weight_decay * param."),
            ]:
                mistakes[name] = (_adamw_variant(before[0], g, before[1], before[2], t, lr, b1, b2, eps, wd, cb,
                                                 kind), hint)
            mistakes = {k: val for k, val in mistakes.items() if not torch.allclose(val[0], ref_p, atol=1e-7,
                                                                                     rtol=1e-6)}
            run.tensor("param after the step", p, ref_p,
                       "param <- param - alpha * m / (sqrt(v) + eps), then param <- param - lr * weight_decay * param.",
                       atol=1e-7, rtol=1e-6, known_mistakes=mistakes)
        run.case = case
        run.passed()
    _check_small_decay(run)
    return run.result()


def _check_small_decay(run: _Runner) -> None:
    """A decay of 1e-7 per step (lr 1e-5, weight decay 0.01, a usual BERT setting) on 100,000 float32 weights
    with a zero gradient: the mean relative decay must be lr * weight_decay within 5 %. The factor form
    ``param.mul_(1 - lr * weight_decay)`` fails it, as float32 rounds 1 - 1e-7 to 1 - 2 * 2^-24 (notebook 04)."""
    lr, wd, n = 1e-5, 0.01, 100_000
    hyper = dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=wd, correct_bias=True)
    run.start("a tiny decay in float32: lr * weight_decay = 1e-7, zero gradient, 100,000 weights",
              f"param ({n},) float32, grad zeros, step=1, " + ", ".join(f"{k}={val}" for k, val in hyper.items()))
    p = _randn(n, seed=480)
    p0 = p.clone()
    g, m, v = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    run.call(p, g, m, v, 1, **hyper)
    relative = float(((p0.double() - p.double()) / p0.double()).mean()) / (lr * wd)
    if abs(relative - 1.0) <= 0.05:
        run.passed()
        return
    message = (f"  the weights decayed by {relative:.3f} x lr * weight_decay on average (expected 1 within 5 %: "
               "each weight should end at the float32 nearest to param - lr * weight_decay * param).")
    factor = _adamw_variant(p0, g, torch.zeros(n), torch.zeros(n), 1, lr, 0.9, 0.999, 1e-6, wd, True, "factor")
    if torch.equal(p, factor):
        run.fail(message + "\n  Your result matches a classic mistake: the decay as a rounded factor "
                 "param * (1 - lr * weight_decay).",
                 "in float32 the factor 1 - lr * weight_decay is itself rounded to a multiple of 2^-24 (about "
                 "6e-8), so a small decay comes out biased. Apply the formula as a scaled add, which rounds only "
                 "the result: param.add_(param, alpha=-lr * weight_decay).")
    run.fail(message, "apply param <- param - lr * weight_decay * param after the Adam update "
                      "(param.add_(param, alpha=-lr * weight_decay)).")


# ---------------------------------------------------------------------------------------------- pooling
def check_mean_pool(mean_pool: Callable) -> CheckResult:
    """Check ``mean_pool(last_hidden_state, attention_mask) -> (B, H)`` against ``mtkit.model.pooling.mean_pool``."""
    run = _Runner("check_mean_pool", mean_pool)
    cases = [
        ("no padding (mask of ones)", (2, 4, 6), [[1] * 4, [1] * 4], torch.long, torch.float32),
        ("padding: sentences of 4, 2 and 1 real tokens", (3, 4, 5), [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]],
         torch.long, torch.float32),
        ("a float mask (0./1.) and float64 hidden states", (2, 5, 3), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],
         torch.float32, torch.float64),
        ("a row with no real token at all -> zeros, not NaN", (2, 3, 4), [[1, 1, 0], [0, 0, 0]], torch.long,
         torch.float32),
        ("large values in the padding must not leak in", (2, 4, 3), [[1, 1, 0, 0], [1, 1, 1, 0]], torch.long,
         torch.float32),
    ]
    for seed, (case, shape, rows, mask_dtype, dtype) in enumerate(cases):
        h = _randn(*shape, seed=500 + seed, dtype=dtype)
        mask = torch.tensor(rows, dtype=mask_dtype)
        if "large values" in case:
            h = h.masked_fill(~mask.bool()[..., None], 1e4)
        run.start(case, _shapes(last_hidden_state=h, attention_mask=mask) + f", mask rows {rows}")
        h_in, mask_in = h.clone(), mask.clone()
        got = run.call(h_in, mask_in)
        expected = reference(h, mask)
        mistakes = {
            "a plain mean over all T positions (padding included)": (
                h.mean(dim=1), "multiply by the mask before summing, and divide by the number of real tokens, "
                               "not by T."),
            "the masked sum, not divided by the number of real tokens": (
                (h * mask[..., None].to(dtype)).sum(1), "divide by mask.sum(dim=1, keepdim=True), clamped to >= 1."),
            "dividing by T instead of the number of real tokens": (
                (h * mask[..., None].to(dtype)).sum(1) / shape[1], "divide by the count of real tokens per row."),
        }
        run.tensor("pooled vectors", got, expected,
                   "sum(h * mask[..., None], dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1).",
                   atol=1e-5, rtol=1e-5, known_mistakes=mistakes)
        if not (torch.equal(h_in, h) and torch.equal(mask_in, mask)):
            run.fail("  your function modified its inputs.",
                     "use out-of-place operations (h * mask, not h *= mask or masked_fill_).")
        run.passed()
    # Training backpropagates through pooling into the encoder.
    h = _randn(2, 4, 3, seed=560, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    weights = _randn(2, 3, seed=561, dtype=torch.float64)
    run.start("gradients: autograd through your pooling vs through the reference (float64)",
              _shapes(last_hidden_state=h, attention_mask=mask))
    h_ref = h.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((reference(h_ref, mask) * weights).sum(), [h_ref])
    h_in = h.clone().requires_grad_(True)
    with torch.enable_grad():
        got = run.call(h_in, mask.clone())
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        run.fail("  the output does not depend on last_hidden_state for autograd (no grad_fn).",
                 "do not .detach(), call .item() or go through numpy inside the function.")
    (grad,) = torch.autograd.grad((got * weights).sum(), [h_in])
    run.tensor("the gradient of last_hidden_state", grad, expected,
               "padding positions must get a zero gradient; real ones 1 / (number of real tokens).",
               atol=1e-9, rtol=1e-7)
    run.passed()
    return run.result()


def check_pair_features(pair_features: Callable) -> CheckResult:
    """Check ``pair_features(u, v) -> [u; v; |u - v|]`` against ``mtkit.tasks.heads.PairFeatures``."""
    reference = PairFeatures(("u", "v", "|u-v|"))
    run = _Runner("check_pair_features", pair_features)
    cases = [("a batch of 2 pairs, H = 4", (2, 4), torch.float32),
             ("one pair, H = 3 (batch of 1)", (1, 3), torch.float32),
             ("float64, a batch of 5, H = 8", (5, 8), torch.float64)]
    for seed, (case, shape, dtype) in enumerate(cases):
        u, v = _randn(*shape, seed=600 + seed, dtype=dtype), _randn(*shape, seed=650 + seed, dtype=dtype)
        run.start(case, _shapes(u=u, v=v))
        got = run.call(u.clone(), v.clone())
        mistakes = {
            "[u; v; u - v] (no absolute value)": (torch.cat([u, v, u - v], -1),
                                                  "take the absolute value: (u - v).abs()."),
            "[v; u; |u - v|] (u and v swapped)": (torch.cat([v, u, (u - v).abs()], -1), "u first, then v."),
            "[u; v; u * v]": (torch.cat([u, v, u * v], -1), "the third part is |u - v|, not u * v."),
        }
        if isinstance(got, torch.Tensor) and got.dim() == 3:
            run.fail(f"  expected shape (B, 3H) = {(shape[0], 3 * shape[1])}, got {tuple(got.shape)}.",
                     "torch.stack adds a dimension; torch.cat([...], dim=-1) concatenates along the features.")
        run.tensor("pair features", got, reference(u, v), "torch.cat([u, v, (u - v).abs()], dim=-1).",
                   atol=0, rtol=0, known_mistakes=mistakes)
        run.passed()
    return run.result()


# ---------------------------------------------------------------------------------------------- LLRD
class _TinyMultitask(torch.nn.Module):
    """An encoder under ``encoder.`` and heads under ``heads.``, as a MultitaskModel names them."""

    def __init__(self, num_layers: int = 3, extra: bool = False):
        super().__init__()
        torch.manual_seed(0)
        config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=num_layers, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=16)
        self.encoder = BertModel(config)
        self.heads = torch.nn.ModuleDict({"sst": torch.nn.Linear(16, 5), "para": torch.nn.Linear(48, 1)})
        if extra:
            self.mystery = torch.nn.Linear(2, 2)  # neither a head nor an encoder parameter


def _llrd_mistakes(lr: float, decay: float, num_layers: int) -> list[tuple[str, Callable[[str], float], str]]:
    """Classic wrong depth rules of layer-wise decay: (name, parameter name -> its lr under that rule, hint).

    The right rule (Sun et al. 2019, report D) keeps the top layer at the base lr: layers.{i} at
    lr * decay ** (L - 1 - i), the pooler with the top layer, the embeddings at lr * decay ** L, heads at lr."""
    L = num_layers

    def rule(embeddings: int, layer: Callable[[int], int], pooler: int) -> Callable[[str], float]:
        def lr_of(name: str) -> float:
            if name.startswith("heads."):
                return lr
            bare = name[len("encoder."):]
            if bare.startswith("embeddings."):
                return lr * decay ** embeddings
            if bare.startswith("pooler."):
                return lr * decay ** pooler
            return lr * decay ** layer(int(bare.split(".")[1]))
        return lr_of

    return [
        ("the decay starts at the top layer (top layer and pooler at lr * decay, layers.i at "
         "lr * decay ** (L - i)), one factor of decay too many on every layer",
         rule(L, lambda i: L - i, 1),
         "the top layer keeps the base lr, as in Sun et al. 2019 (eta^(k-1) = xi * eta^k, the top layer at eta) "
         "and report D (the i-th layer from the top at lr * xi^(i-1)): layers.i gets lr * decay ** (L - 1 - i), "
         "the embeddings lr * decay ** L. mtkit.model.bert.depth_of(name, num_layers) gives that exponent."),
        ("every encoder block one step too deep (top layer at lr * decay, embeddings at lr * decay ** (L + 1))",
         rule(L + 1, lambda i: L - i, 1),
         "count from 0 at the top layer: report D's i-th layer from the top gets lr * xi^(i-1), so the top layer "
         "(i = 1) keeps lr; the embeddings sit one step below the bottom layer, at lr * decay ** L. "
         "mtkit.model.bert.depth_of(name, num_layers) gives the exponent."),
        ("the embeddings at the bottom layer's lr (lr * decay ** (L - 1)) instead of one step below it",
         rule(L - 1, lambda i: L - 1 - i, 0),
         "the embeddings are a block of their own under the bottom layer: lr * decay ** L "
         "(mtkit.model.bert.depth_of gives num_layers for every embeddings.* parameter)."),
        ("depth counted from the bottom (the embeddings at lr, the top layer at lr * decay ** L)",
         rule(0, lambda i: i + 1, L),
         "the decay grows going down, away from the heads: the top layer gets lr, the embeddings the smallest lr, "
         "lr * decay ** L."),
    ]


def check_llrd_groups(llrd_param_groups: Callable) -> CheckResult:
    """Check ``llrd_param_groups(model, lr, decay, weight_decay) -> list of groups`` against
    ``mtkit.optim.layerwise_lr_groups`` (each parameter's lr and weight decay, and exactly-once placement)."""
    run = _Runner("check_llrd_groups", llrd_param_groups)
    cases = [
        ("3 layers, lr 1e-3, decay 0.9, weight decay 0.01", dict(num_layers=3), dict(lr=1e-3, decay=0.9,
                                                                                   weight_decay=0.01), None),
        ("decay 1.0 (no decay: one lr for all)", dict(num_layers=2), dict(lr=2e-5, decay=1.0, weight_decay=0.0),
         None),
        ("frozen embeddings (requires_grad=False) are left out", dict(num_layers=4),
         dict(lr=1e-4, decay=0.8, weight_decay=0.1), "encoder.embeddings."),
    ]
    for case, model_kw, kw, frozen_prefix in cases:
        model = _TinyMultitask(**model_kw)
        if frozen_prefix:
            for name, p in model.named_parameters():
                if name.startswith(frozen_prefix):
                    p.requires_grad_(False)
        run.start(case, f"a model with {model_kw['num_layers']} encoder layers under 'encoder.' and heads "
                        f"'heads.sst', 'heads.para'; " + ", ".join(f"{k}={v}" for k, v in kw.items()))
        groups = run.call(model, **kw)
        if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
            run.fail(f"  expected a list of dicts (parameter groups), got {_describe(groups)}.",
                     "return [{'params': [...], 'lr': ..., 'weight_decay': ...}, ...].")
        for i, g in enumerate(groups):
            missing = [key for key in ("params", "lr") if key not in g]
            if missing:
                run.fail(f"  group {i} lacks the keys {missing} (it has {sorted(g)}).",
                         "every group needs 'params' (a list of parameters) and 'lr'; add 'weight_decay' too.")
        names = {id(p): n for n, p in model.named_parameters()}
        placed: dict[int, list[int]] = {}
        for i, g in enumerate(groups):
            for p in list(g["params"]):
                placed.setdefault(id(p), []).append(i)
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        frozen = [names[i] for i in placed if i in names and i not in trainable]
        twice = [names.get(i, "?") for i, where in placed.items() if len(where) > 1]
        missing = [names[i] for i in trainable if i not in placed]
        if twice:
            run.fail(f"  {len(twice)} parameters are in more than one group, e.g. {twice[:3]}.",
                     "each parameter must land in exactly one group (torch refuses duplicates).")
        if frozen:
            run.fail(f"  frozen parameters were put in groups, e.g. {frozen[:3]}.",
                     "skip parameters with requires_grad=False.")
        if missing:
            run.fail(f"  {len(missing)} trainable parameters are in no group, e.g. {missing[:3]}.",
                     "loop over model.named_parameters() and place every trainable one.")
        reference = layerwise_lr_groups(model, encoder_prefix="encoder.", head_prefixes=("heads.",), **kw)
        expected = {id(p): (g["lr"], g["weight_decay"]) for g in reference.groups for p in g["params"]}
        num_layers = model.encoder.config.num_hidden_layers
        wrong = []
        for pid, where in placed.items():
            g = groups[where[0]]
            got = (float(g["lr"]), float(g.get("weight_decay", 0.0)))
            want = expected[pid]
            if not (math.isclose(got[0], want[0], rel_tol=1e-9, abs_tol=1e-15)
                    and math.isclose(got[1], want[1], rel_tol=1e-9, abs_tol=1e-15)):
                name = names[pid]
                depth = 0 if name.startswith("heads.") else depth_of(name[len("encoder."):], num_layers)
                wrong.append(f"{name} (depth {depth}): expected lr {want[0]:.6g}, weight_decay {want[1]:g}; "
                             f"got lr {got[0]:.6g}, weight_decay {got[1]:g}")
        if wrong:
            lines = "\n    ".join(wrong[:6])
            more = f"\n    ... and {len(wrong) - 6} more" if len(wrong) > 6 else ""
            message = f"  {len(wrong)} parameters have the wrong lr or weight decay:\n    {lines}{more}"
            for mistake, lr_of, mistake_hint in _llrd_mistakes(kw["lr"], kw["decay"], num_layers):
                if all(math.isclose(float(groups[where[0]]["lr"]), lr_of(names[pid]), rel_tol=1e-9, abs_tol=1e-15)
                       for pid, where in placed.items()):
                    run.fail(message + f"\n  Your learning rates match a classic mistake: {mistake}.", mistake_hint)
            run.fail(message,
                     "an encoder parameter gets lr * decay ** depth_of(name without 'encoder.', num_layers): the "
                     "top layer and the pooler the base lr (depth 0), the embeddings lr * decay ** num_layers; "
                     "heads get lr; biases and LayerNorm weights (uses_weight_decay(name) is False) get "
                     "weight_decay 0.")
        try:
            torch.optim.AdamW([dict(g) for g in groups], lr=kw["lr"])
        except (ValueError, TypeError) as err:
            run.fail(f"  torch.optim.AdamW does not accept your groups: {err}", "check the groups' keys and values.")
        run.passed()
    # An unknown parameter must be an error, not a silent lr.
    model = _TinyMultitask(num_layers=2, extra=True)
    run.start("a parameter that is neither a head nor the encoder ('mystery.weight') -> ValueError",
              "the 2-layer model plus a module 'mystery'")
    try:
        run.fn(model, lr=1e-3, decay=0.9, weight_decay=0.0)
    except ValueError:
        pass
    except NotImplementedError:
        raise
    except Exception as err:
        run.fail(f"  raised {type(err).__name__}: {err}", "raise ValueError naming the parameter.")
    else:
        run.fail("  no error was raised; 'mystery.weight' silently got some learning rate.",
                 "raise ValueError(f'{name} is neither a head nor an encoder parameter') for any other name.")
    run.passed()
    return run.result()


# ---------------------------------------------------------------------------------------------- PCGrad
def _reference_pcgrad_rows(grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """(K, P) projected gradients g_i^PC from mtkit.surgery's Gram-matrix formulation."""
    weights = pcgrad_weights(gram_matrix(grads.double()), orders)  # (K, K)
    return (weights @ grads.double()).to(grads.dtype)  # (K, P)


def check_pcgrad_projection(project_conflicting: Callable) -> CheckResult:
    """Check ``project_conflicting(g_i, g_j) -> g_i^PC`` against ``mtkit.surgery.pcgrad`` (two tasks)."""
    run = _Runner("check_pcgrad_projection", project_conflicting)
    d = torch.float64
    cases = [
        ("no conflict (acute angle): g_i comes back unchanged", torch.tensor([1.0, 1.0], dtype=d),
         torch.tensor([1.0, 0.2], dtype=d)),
        ("orthogonal (dot = 0): unchanged", torch.tensor([0.0, 2.0], dtype=d), torch.tensor([3.0, 0.0], dtype=d)),
        ("conflict in 2-D: g_i loses its component along g_j", torch.tensor([1.0, 1.0], dtype=d),
         torch.tensor([-2.0, 0.5], dtype=d)),
        ("exactly opposite: the projection is zero", torch.tensor([1.0, -2.0, 3.0], dtype=d),
         torch.tensor([-1.0, 2.0, -3.0], dtype=d)),
        ("g_j is all zeros: unchanged, no NaN", torch.tensor([1.0, 2.0], dtype=d), torch.zeros(2, dtype=d)),
        ("random 1000-dim float32 gradients that conflict", _randn(1000, seed=700), None),
    ]
    for case, g_i, g_j in cases:
        if g_j is None:
            g_j = -0.5 * g_i + _randn(1000, seed=701)
        run.start(case, _shapes(g_i=g_i, g_j=g_j) + (f", g_i={g_i.tolist()}, g_j={g_j.tolist()}"
                                                     if g_i.numel() < 5 else ""))
        a, b = g_i.clone(), g_j.clone()
        got = run.call(a, b)
        expected = _reference_pcgrad_rows(torch.stack([g_i, g_j]), torch.tensor([[1], [0]]))[0]
        conflict = float(g_i.double() @ g_j.double()) < 0
        mistakes = {}
        if conflict:
            dot, sq = g_i @ g_j, g_j @ g_j
            mistakes = {
                "adding the component instead of removing it": (g_i + dot / sq * g_j,
                                                                "subtract: g_i - (g_i . g_j) / |g_j|^2 * g_j."),
                "dividing by |g_j| instead of |g_j|^2": (g_i - dot / sq.sqrt() * g_j,
                                                         "divide by the squared norm, g_j . g_j."),
                "projecting g_j instead of g_i": (g_j - dot / (g_i @ g_i) * g_i,
                                                  "return the projected g_i (the first argument)."),
            }
        else:
            mistakes = {"projecting even without a conflict": (
                g_i - (g_i @ g_j) / (g_j @ g_j + 1e-12) * g_j,
                "only project when g_i . g_j < 0; otherwise return g_i unchanged.")}
        atol = 1e-5 if g_i.dtype == torch.float32 else 1e-9
        run.tensor("g_i^PC", got, expected, "if g_i . g_j < 0: g_i - (g_i . g_j) / (|g_j|^2 + eps) * g_j, else g_i.",
                   atol=atol, rtol=1e-5, known_mistakes=mistakes)
        if not (torch.equal(a, g_i) and torch.equal(b, g_j)):
            run.fail("  your function modified its inputs.", "build a new tensor (g_i - ...), not g_i -= ...; "
                                                              "return g_i.clone() when nothing changes.")
        if conflict and float(got.double() @ g_j.double()) > 1e-6 * float(g_j.norm() * g_i.norm()):
            run.fail("  after a conflict, g_i^PC . g_j should be 0.", "see the formula in the docstring.")
        run.passed()
    return run.result()


def check_pcgrad(pcgrad: Callable) -> CheckResult:
    """Check ``pcgrad(grads (K, P), orders (K, K - 1)) -> update (P,)`` against ``mtkit.surgery.pcgrad``."""
    run = _Runner("check_pcgrad", pcgrad)
    d = torch.float64
    two = torch.tensor([[1.0, 1.0], [-2.0, 0.5]], dtype=d)
    three = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-0.5, -1.0, 1.0]], dtype=d)
    cases = [
        ("one task (K = 1): the update is its gradient", _randn(1, 5, seed=800, dtype=d),
         torch.zeros(1, 0, dtype=torch.long)),
        ("two tasks that agree: the plain sum", torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=d),
         torch.tensor([[1], [0]])),
        ("two tasks in conflict (2-D)", two, torch.tensor([[1], [0]])),
        ("three tasks, visiting order 0: [1, 2], 1: [0, 2], 2: [0, 1]", three, torch.tensor([[1, 2], [0, 2], [0, 1]])),
        ("the same three tasks, other orders 0: [2, 1], 1: [2, 0], 2: [1, 0] (the order matters)", three,
         torch.tensor([[2, 1], [2, 0], [1, 0]])),
        ("four random 50-dim float32 gradients", _randn(4, 50, seed=801),
         torch.stack([torch.tensor([j for j in torch.randperm(4, generator=_gen(802 + i)).tolist() if j != i])
                      for i in range(4)])),
    ]
    for case, grads, orders in cases:
        run.start(case, _shapes(grads=grads, orders=orders) + (f", grads={grads.tolist()}, orders={orders.tolist()}"
                                                               if grads.numel() <= 9 else ""))
        g_in = grads.clone()
        got = run.call(g_in, orders.clone())
        rows = _reference_pcgrad_rows(grads, orders)
        expected = rows.sum(dim=0)
        mistakes = {"the plain sum (no projection)": (grads.sum(0), "project each g_i off the conflicting g_j "
                                                                    "(use project_conflicting) before summing.")}
        if grads.shape[0] > 1:
            mistakes["the mean instead of the sum"] = (expected / grads.shape[0],
                                                       "the paper sums the projected gradients (no division by K).")
        atol = 1e-5 if grads.dtype == torch.float32 else 1e-9
        run.tensor("update", got, expected, "g_i^PC starts as g_i; for j in orders[i]: g_i^PC = project(g_i^PC, "
                                            "grads[j]) (off the original g_j); update = sum of the g_i^PC.",
                   atol=atol, rtol=1e-5, known_mistakes=mistakes)
        if not torch.equal(g_in, grads):
            run.fail("  your function modified grads.", "work on copies: g = grads[i] then g = project(g, ...).")
        run.passed()
    return run.result()


def check_gradient_cosine(gradient_cosine: Callable) -> CheckResult:
    """Check ``gradient_cosine(grads_i, grads_j) -> float`` against ``mtkit.surgery``'s Gram matrix."""
    run = _Runner("check_gradient_cosine", gradient_cosine)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    base = [_randn(*s, seed=900 + i) for i, s in enumerate(shapes)]
    other = [_randn(*s, seed=950 + i) for i, s in enumerate(shapes)]
    cases = [
        ("three tensors of different shapes (4x3, 3, 2x2x2)", base, other),
        ("the same gradient twice -> 1", base, [g.clone() for g in base]),
        ("opposite gradients -> -1", base, [-2.0 * g for g in base]),
        ("one tensor each, orthogonal -> 0", [torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 3.0])]),
        ("task j's gradient is all zeros -> nan", base, [torch.zeros_like(g) for g in base]),
        ("the cosine is over all tensors at once, not an average of per-tensor cosines",
         [torch.tensor([1.0, 0.0]), torch.tensor([10.0])], [torch.tensor([1.0, 0.0]), torch.tensor([-0.1])]),
    ]
    for case, gi, gj in cases:
        run.start(case, "grads_i: " + ", ".join(str(tuple(g.shape)) for g in gi))
        got = run.call([g.clone() for g in gi], [g.clone() for g in gj])
        flat = torch.stack([torch.cat([g.flatten() for g in gi]), torch.cat([g.flatten() for g in gj])])
        G = gram_matrix(flat)
        denom = math.sqrt(float(G[0, 0]) * float(G[1, 1]))
        expected = float("nan") if denom == 0 else float(G[0, 1]) / denom
        try:
            value = float(got)
        except (TypeError, ValueError):
            run.fail(f"  expected a number, got {_describe(got)}.", "return float(cosine).")
        if math.isnan(expected):
            if not math.isnan(value):
                run.fail(f"  expected nan (an all-zero gradient has no direction), got {value!r}.",
                         "check the product of the norms; if it is 0, return float('nan').")
        elif not math.isclose(value, expected, rel_tol=1e-5, abs_tol=1e-6):
            per_tensor = sum(float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))
                             for a, b in zip(gi, gj)) / len(gi)
            hint = ("flatten every tensor and concatenate them into one vector per task, then take a single "
                    "cosine (torch.cat([g.flatten() for g in grads])).")
            if math.isclose(value, per_tensor, rel_tol=1e-5, abs_tol=1e-6):
                hint = "you averaged per-tensor cosines; " + hint
            run.fail(f"  expected cosine {expected:.6f}, got {value:.6f}.", hint)
        run.passed()
    return run.result()


# ---------------------------------------------------------------------------------------------- by exercise file
EXERCISES: dict[str, list[tuple[str, Callable]]] = {
    "attention": [("attention", check_attention)],
    "transformer_layer": [("layer_forward", check_layer_forward)],
    "adamw": [("adamw_step", check_adamw_step)],
    "mean_pooling": [("mean_pool", check_mean_pool)],
    "pair_features": [("pair_features", check_pair_features)],
    "llrd": [("llrd_param_groups", check_llrd_groups)],
    "pcgrad": [("project_conflicting", check_pcgrad_projection), ("pcgrad", check_pcgrad)],
    "gradient_cosine": [("gradient_cosine", check_gradient_cosine)],
}


def check_exercise(name: str, source: str = "solutions", root=None) -> list[CheckResult]:
    """Load ``<source>/<name>.py`` and run every check of that exercise, in order; returns their results.

    ``source="solutions"`` checks the worked answers, ``source="exercises"`` your own. The first function
    still left as a stub raises ``NotImplementedError`` naming it.
    """
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; the exercises are {sorted(EXERCISES)}.")
    module = load_module(name, source=source, root=root)
    results = []
    for function, check in EXERCISES[name]:
        fn = getattr(module, function, None)
        if fn is None:
            raise AttributeError(f"{module.__file__} has no function {function}(); keep the names of the exercise.")
        results.append(check(fn))
    return results


# ---------------------------------------------------------------------------------------------- learner mode
PASSED, FAILED, NOT_WRITTEN = "passed", "failed", "not written yet"


@dataclass
class Outcome:
    """One function's check, run by :class:`Workbook`: whose code (``source``), which file, what happened.

    ``status`` is ``"passed"``, ``"failed"`` or ``"not written yet"``; ``message`` is what the learner reads
    (the check's own message on a failure); ``outcome`` is the short form the results files record.
    """

    exercise: str  # exercise file, e.g. "attention"
    function: str  # e.g. "attention"
    check: str  # e.g. "check_attention"
    source: str  # "exercises", "solutions" or a folder
    file: str  # e.g. "exercises/attention.py"
    status: str
    message: str
    result: CheckResult | None = None
    fallback: str | None = None  # the file whose function the notebook uses instead (None: this one)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def outcome(self) -> str:
        """``"passed"``, ``"not written yet"`` or ``"failed: <the check's first line>"`` (with the classic
        mistake, when the check recognised one)."""
        if self.status != FAILED:
            return self.status
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        text = lines[0] if lines else "failed"
        mistake = next((line for line in lines if line.startswith("Your result matches a classic mistake")), None)
        if mistake:
            text += " " + mistake
        return f"failed: {text[:300]}"

    def __str__(self) -> str:
        return self.message


def _first_stub_line(err: NotImplementedError) -> tuple[str, str, int]:
    if isinstance(err, NotWrittenYet):
        return err.function, err.filename, err.line
    return _where_raised(err)


class Workbook:
    """Checks a notebook's exercises one at a time, prints what happened, and records it for the results file.

    ``Workbook(source)``: ``source`` is whose answers to check: ``"exercises"`` (yours), ``"solutions"`` (the
    worked answers) or a folder; None follows :func:`mtkit.exercises.resolve_source` (yours, unless
    ``$MTKIT_EXERCISE_SOURCE`` says otherwise). ``check(exercise, function)`` never raises for the learner's
    code: a stub prints "not written yet: open exercises/X.py, function Y", a wrong answer prints the check's
    message (expected, got, a hint), and either way the function returned is the worked answer's, so that
    the cells after it still run. Only when the worked answers themselves fail (``source="solutions"``), which
    is a bug of the kit, does it raise.

    Taught in notebooks/03_attention_and_minbert.ipynb (first use) and every notebook with an exercise.
    """

    def __init__(self, source: str | None = None, root=None, fallback: str = "solutions", verbose: bool = True):
        self.source = resolve_source(source)
        self.from_environment = source is None and bool(os.environ.get(SOURCE_ENV))
        self.root = root
        self.fallback = fallback
        self.verbose = verbose
        self.outcomes: dict[tuple[str, str], Outcome] = {}

    # ------------------------------------------------------------------------------------------------ checking
    def _file(self, exercise: str, source: str) -> str:
        try:
            return _short_path(str(source_folder(source, self.root) / f"{exercise}.py"))
        except FileNotFoundError:
            return f"{source}/{exercise}.py"

    def _function_name(self, exercise: str, function: str | None) -> str:
        if exercise not in EXERCISES:
            raise KeyError(f"no exercise {exercise!r}; the exercises are {sorted(EXERCISES)}.")
        names = [f for f, _ in EXERCISES[exercise]]
        if function is None:
            if len(names) > 1:
                raise ValueError(f"exercises/{exercise}.py holds {len(names)} functions ({', '.join(names)}); "
                                 f"name the one to check, e.g. book.check({exercise!r}, {names[0]!r}).")
            return names[0]
        if function not in names:
            raise KeyError(f"exercises/{exercise}.py has no checked function {function!r}; it has {names}.")
        return function

    def run(self, exercise: str, function: str | None = None,
            source: str | None = None) -> tuple[Outcome, Callable | None]:
        """Check one function of ``source`` (default: this workbook's) without printing or recording; returns
        the outcome and the function that was checked (None when it could not be loaded)."""
        function = self._function_name(exercise, function)
        source = self.source if source is None else source
        check = dict(EXERCISES[exercise])[function]
        file = self._file(exercise, source)

        def outcome(status, message, result=None):
            return Outcome(exercise, function, check.__name__, source, file, status, message, result)

        try:
            module = load_module(exercise, source=source, root=self.root)
        except FileNotFoundError as err:
            return outcome(FAILED, f"{check.__name__}: {err}"), None
        except Exception as err:  # a syntax error or an import that fails: the learner's file does not load
            detail = f"line {err.lineno}: {err.msg}" if isinstance(err, SyntaxError) else str(err)
            hint = f"  Hint: fix the file so that `python {file}` runs, then run this cell again."
            return outcome(FAILED, f"{check.__name__}: {file} does not load: {type(err).__name__} ({detail})\n"
                                   + hint), None
        fn = getattr(module, function, None)
        if not callable(fn):
            return outcome(FAILED, f"{check.__name__}: {file} has no function {function}(); keep the names and "
                                   f"signatures of the exercise."), None
        try:
            with torch.random.fork_rng(devices=[]):  # the checks seed torch; the caller's random stream is untouched
                result = check(fn)
        except NotImplementedError as err:
            func, filename, line = _first_stub_line(err)
            where = filename if filename.endswith(f"{exercise}.py") else file
            return outcome(NOT_WRITTEN, f"{check.__name__}: not written yet: open {where}, function {func}() "
                                        f"(line {line} still raises NotImplementedError)."), fn
        except CheckFailure as err:
            return outcome(FAILED, str(err)), fn
        except Exception as err:  # the check itself could not run the function (e.g. a wrong signature)
            return outcome(FAILED, f"{check.__name__}: could not check {function}() in {file}: "
                                   f"{type(err).__name__}: {err}\n  Hint: keep the signature of the exercise."), fn
        cases = "\n".join(f"  ok  {case}" for case in result.cases)
        return outcome(PASSED, f"{check.__name__}: {function}() in {file} passed all {len(result.cases)} cases\n"
                               f"{cases}", result), fn

    def check(self, exercise: str, function: str | None = None) -> Callable:
        """Check ``function`` of ``exercise`` (the only one when the file has one), print the outcome, record
        it, and return the function to use from here on: yours when it passed, else the worked answer's."""
        outcome, fn = self.run(exercise, function)
        if not outcome.passed:
            if outcome.source == self.fallback:
                raise RuntimeError(f"the worked answer {outcome.file} fails its own check; this is a bug of "
                                   f"the kit, please report it:\n{outcome.message}")
            fallback_outcome, fn = self.run(exercise, outcome.function, source=self.fallback)
            if not fallback_outcome.passed:
                raise RuntimeError(f"the worked answer {fallback_outcome.file} fails its own check; this is a "
                                   f"bug of the kit, please report it:\n{fallback_outcome.message}")
            outcome.fallback = fallback_outcome.file
        self.outcomes[(exercise, outcome.function)] = outcome
        if self.verbose:
            print(self.describe(outcome))
        return fn

    def describe(self, outcome: Outcome) -> str:
        """What ``check`` prints: the outcome, then whose function the notebook goes on with."""
        text = outcome.message
        if outcome.passed and outcome.source == self.fallback:
            yours = outcome.file.replace(self.fallback, "exercises", 1)
            if self.from_environment:
                text += (f"\n(These are the worked answers: ${SOURCE_ENV} is {self.fallback!r}, as in the kit's "
                         f"tests and in the outputs saved with this notebook. Run the notebook yourself to check "
                         f"yours, {yours}.)")
            else:
                text += (f"\n(These are the worked answers: exercise_source is {self.fallback!r}. Set it to None "
                         f"to check yours, {yours}.)")
        elif outcome.status == NOT_WRITTEN:
            text += (f"\nReplace the `raise NotImplementedError()` under `# YOUR CODE HERE` with your code and run "
                     f"this cell again; until then this notebook uses the worked answer, {outcome.fallback}.")
        elif not outcome.passed:
            text += (f"\nUntil it passes, this notebook uses the worked answer, {outcome.fallback}; fix yours and "
                     f"run this cell again.")
        return text

    # ------------------------------------------------------------------------------------------------ results
    def outcome(self, exercise: str) -> str | None:
        """The exercise's outcome: "passed" when every checked function passed, else the first other one."""
        found = [o for (name, _), o in self.outcomes.items() if name == exercise]
        if not found:
            return None
        failing = next((o for o in found if not o.passed), None)
        return (failing or found[0]).outcome

    def record(self) -> dict:
        """Per exercise: whose code was checked, its file, the outcome, and each checked function's outcome;
        what a notebook passes to ``save_results(..., checks=book.record())``."""
        out: dict[str, dict] = {}
        for (exercise, function), o in self.outcomes.items():
            entry = out.setdefault(exercise, {"source": o.source, "file": o.file, "outcome": None, "functions": {}})
            entry["functions"][function] = o.outcome
            if o.fallback:
                entry["used_instead"] = o.fallback
        for exercise, entry in out.items():
            entry["outcome"] = self.outcome(exercise)
        return out
