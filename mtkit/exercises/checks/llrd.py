"""The check of layer-wise learning-rate decay's parameter groups (notebook 08)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mtkit.exercises.checks.runner import CheckResult, _describe, _Runner
from mtkit.model.bert import BertModel
from mtkit.model.names import depth_of
from mtkit.model.bert_config import BertConfig
from mtkit.optim import layerwise_lr_groups

__all__ = ['check_llrd_groups']


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
         "the embeddings lr * decay ** L. mtkit.model.names.depth_of(name, num_layers) gives that exponent."),
        ("every encoder block one step too deep (top layer at lr * decay, embeddings at lr * decay ** (L + 1))",
         rule(L + 1, lambda i: L - i, 1),
         "count from 0 at the top layer: report D's i-th layer from the top gets lr * xi^(i-1), so the top layer "
         "(i = 1) keeps lr; the embeddings sit one step below the bottom layer, at lr * decay ** L. "
         "mtkit.model.names.depth_of(name, num_layers) gives the exponent."),
        ("the embeddings at the bottom layer's lr (lr * decay ** (L - 1)) instead of one step below it",
         rule(L - 1, lambda i: L - 1 - i, 0),
         "the embeddings are a block of their own under the bottom layer: lr * decay ** L "
         "(mtkit.model.names.depth_of gives num_layers for every embeddings.* parameter)."),
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
