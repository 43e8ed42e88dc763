"""The checks of scaled dot-product attention and of one transformer layer's forward (notebook 03)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mtkit.exercises.checks.runner import CheckResult, _describe, _gen, _randn, _Runner, _shapes, gradient_check
from mtkit.model.bert import BertLayer, AttentionMask
from mtkit.model.bert_config import BertConfig

__all__ = ['check_attention', 'check_layer_forward']


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
        return layer(x, AttentionMask(mask), kind="explicit")[0]  # (B, T, H)


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
            additive = AttentionMask(mask).additive(scores.dtype)
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
    expected = torch.autograd.grad((layer(x_ref, AttentionMask(mask), kind="explicit")[0][real] * weights).sum(),
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
