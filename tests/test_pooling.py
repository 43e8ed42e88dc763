"""Pooling against hand computation, against sentence-transformers' Pooling, in fp16/bf16, and its errors."""
from __future__ import annotations

import pytest
import torch

from mtkit.model.pooling import POOLING_MODES, Pooling, cls_pool, max_pool, mean_pool, pool


def _batch():
    """B=2, T=3, H=2; the second row has one padding token whose values would win if not masked."""
    h = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [5.0, 0.0]],
                      [[-1.0, 1.0], [2.0, -3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 1],
                         [1, 1, 0]])
    return h, mask


def test_by_hand():
    h, mask = _batch()
    assert torch.equal(cls_pool(h, mask), torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    # mean: row 0 over 3 tokens, row 1 over its 2 real tokens
    expected_mean = torch.tensor([[(1 + 3 + 5) / 3, (2 - 4 + 0) / 3],
                                  [(-1 + 2) / 2, (1 - 3) / 2]])
    torch.testing.assert_close(mean_pool(h, mask), expected_mean)
    expected_max = torch.tensor([[5.0, 2.0], [2.0, 1.0]])  # the 100s are padding
    assert torch.equal(max_pool(h, mask), expected_max)
    # without a mask every token counts
    torch.testing.assert_close(mean_pool(h), h.mean(dim=1))
    assert torch.equal(max_pool(h), torch.tensor([[5.0, 2.0], [100.0, 100.0]]))
    # the module and the by-name function give the same
    for mode in POOLING_MODES:
        assert torch.equal(Pooling(mode)(h, mask), pool(h, mask, mode))


def test_mask_dtypes_and_input_untouched():
    h, mask = _batch()
    before = h.clone()
    for m in (mask, mask.bool(), mask.float(), mask.to(torch.int32)):
        torch.testing.assert_close(mean_pool(h, m), mean_pool(h, mask))
        assert torch.equal(max_pool(h, m), max_pool(h, mask))
    assert torch.equal(h, before)  # max pooling did not write -inf into the caller's tensor


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_matches_sentence_transformers(mode):
    pytest.importorskip("sentence_transformers")
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling as STPooling
    except ImportError:  # 3.x - 5.x
        from sentence_transformers.models import Pooling as STPooling
    g = torch.Generator().manual_seed(0)
    B, T, H = 5, 7, 16
    h = torch.randn(B, T, H, generator=g)
    lengths = torch.tensor([7, 1, 4, 6, 2])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # right padding, as mtkit's collate does
    reference = STPooling(H, pooling_mode=mode)
    expected = reference({"token_embeddings": h.clone(), "attention_mask": mask})["sentence_embedding"]
    torch.testing.assert_close(pool(h, mask, mode), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu(dtype):
    g = torch.Generator().manual_seed(1)
    B, T, H = 3, 40, 8
    # large values: an fp16 running sum of 40 tokens of ~3000 overflows 65504 if not accumulated in float32
    h32 = 3000.0 + torch.rand(B, T, H, generator=g) * 100.0
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 25:] = 0
    h = h32.to(dtype)
    out = mean_pool(h, mask)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert torch.isinf((h * mask[..., None].to(dtype)).sum(dim=1)).any() == (dtype == torch.float16)
    reference = mean_pool(h.float(), mask)  # float32 math on the same (rounded) inputs
    torch.testing.assert_close(out.float(), reference, rtol=torch.finfo(dtype).eps, atol=0.0)
    out_max = max_pool(h, mask)
    assert out_max.dtype == dtype
    assert torch.equal(out_max.float(), max_pool(h.float(), mask))  # max is exact in any dtype
    # negative values and padding: the finfo.min fill never wins over a real token
    neg = (-h32).to(dtype)
    assert torch.equal(max_pool(neg, mask).float(), max_pool(neg.float(), mask))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_all_padding_row_gives_zeros_and_no_nan_gradient(dtype):
    h = torch.randn(2, 4, 3).to(dtype).requires_grad_(True)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    for fn in (mean_pool, max_pool):
        out = fn(h, mask)
        assert torch.equal(out[1].float(), torch.zeros(3))
        assert torch.isfinite(out.float()).all()
        (grad,) = torch.autograd.grad(out.float().sum(), h)
        assert torch.isfinite(grad.float()).all()
        assert torch.equal(grad[1].float(), torch.zeros(4, 3))  # nothing flows into an all-padding row
        assert torch.equal(grad[0, 2:].float(), torch.zeros(2, 3))  # nor into padding


def test_mean_gradient_by_hand():
    h = torch.zeros(1, 4, 2, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0]])
    mean_pool(h, mask).sum().backward()
    expected = torch.tensor([[[1 / 3, 1 / 3], [1 / 3, 1 / 3], [1 / 3, 1 / 3], [0.0, 0.0]]])
    torch.testing.assert_close(h.grad, expected)


def test_errors_teach():
    h, mask = _batch()
    with pytest.raises(ValueError, match="was it pooled twice"):
        mean_pool(h[:, 0], mask)
    with pytest.raises(ValueError, match=r"does not match.*\(B, T\) = \(2, 3\)"):
        max_pool(h, mask[:, :2])
    with pytest.raises(TypeError, match="input_ids"):
        cls_pool(torch.ones(2, 3, 4, dtype=torch.long))

    class Output:
        last_hidden_state = h

    with pytest.raises(TypeError, match="pass output.last_hidden_state"):
        mean_pool(Output(), mask)
    with pytest.raises(ValueError, match=r"'avg' is not known.*\['cls', 'mean', 'max'\]"):
        Pooling("avg")
    assert "mode='cls'" in repr(Pooling("cls"))
