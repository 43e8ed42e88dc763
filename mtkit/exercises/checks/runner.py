"""What every check shares: the result and failure types, numeric helpers (CS231n's rel_error and
numerical gradient checks) and the runner that compares a learner's function with the reference."""
from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtkit.util.paths import find_root

__all__ = ['CheckFailure', 'NotWrittenYet', 'CheckResult', 'rel_error', 'numerical_gradient', 'gradient_check']


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
