"""minBERT against the references: transformers.BertModel and SentenceTransformer, same weights, fp32 on CPU.

Bounds (issue 2): last_hidden_state on non-padding positions and pooler_output within 1e-5 (max abs);
mean-pooled embeddings against SentenceTransformer.encode with cosine >= 0.99999; explicit and fused attention
within 1e-5; the same for a randomly initialised 12 x 768 BERT saved in both file formats.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from _sentences import generated_sentences, parity_sentences

from mtkit.model.bert import BertModel, BertOutput
from mtkit.model.bert_config import BertConfig
from mtkit.model.names import block_of, depth_of
from mtkit.model.pretrained import default_encoder_dir
from mtkit.model.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers", reason="transformers is the reference oracle (test extra)")

TOL = 1e-5


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, written plainly: sum(h * m) / sum(m)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, H)


def max_diff_on_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return (a - b)[mask.bool()].abs().max().item()


@pytest.fixture(scope="module")
def sentences():
    texts, source = parity_sentences(64)
    assert len(texts) == 64, source
    return texts


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_pretrained()


@pytest.fixture(scope="module")
def batch(tokenizer, sentences):
    return tokenizer(sentences, max_length=128)


@pytest.fixture(scope="module")
def ours():
    return BertModel.from_pretrained()


@pytest.fixture(scope="module")
def reference():
    return transformers.BertModel.from_pretrained(str(default_encoder_dir()), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def outputs(ours, reference, batch):
    """Our two attention paths and the reference on the same batch, computed once."""
    with torch.no_grad():
        ref = reference(**batch)
        sdpa = ours.set_attention("sdpa")(**batch)
        explicit = ours.set_attention("explicit")(**batch)
    ours.set_attention("sdpa")
    return {"ref": ref, "sdpa": sdpa, "explicit": explicit}


# ----- the naming contract ---------------------------------------------------------------------------------------

def test_every_parameter_has_a_block_and_a_depth():
    config = BertConfig.tiny()
    model = BertModel(config)
    L = config.num_hidden_layers
    for name, _ in model.named_parameters():
        block = block_of(name, L)
        depth = depth_of(name, L)
        if block.startswith("layers."):
            i = int(block.split(".")[1])
            assert name.startswith(f"layers.{i}.") and depth == L - 1 - i
        elif block == "pooler":
            assert name.startswith("pooler.") and depth == 0
        else:
            assert name.startswith("embeddings.") and depth == L
    assert block_of("embeddings.word_embeddings.weight", L) == "embeddings.word"
    assert block_of("embeddings.layer_norm.bias", L) == "embeddings.other"
    assert depth_of(f"layers.{L - 1}.ffn.up.weight", L) == 0  # top layer: the base lr (Sun et al. 2019, report D)
    assert depth_of("layers.0.ffn.up.weight", L) == L - 1  # bottom layer
    assert depth_of("embeddings.word_embeddings.weight", L) == L  # one step below the bottom layer
    assert block_of("encoder.layers.1.ffn_norm.weight", L) == "layers.1"  # as seen from a wrapping model


def test_parameter_names_are_exactly_the_contract():
    model = BertModel(BertConfig.tiny())
    names = {n for n, _ in model.named_parameters()}
    expected = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight", "embeddings.layer_norm.weight",
                "embeddings.layer_norm.bias", "pooler.dense.weight", "pooler.dense.bias"}
    for i in range(2):
        for part in ("attention.query", "attention.key", "attention.value", "attention.output", "attention_norm",
                     "ffn.up", "ffn.down", "ffn_norm"):
            expected |= {f"layers.{i}.{part}.weight", f"layers.{i}.{part}.bias"}
    assert names == expected


@pytest.mark.parametrize("name", ["heads.sst.weight", "layers.2.attention.query.weight", "embeddings.LayerNorm.weight",
                                  "layers.0.attention.self.query.weight", ""])
def test_unknown_names_raise_keyerror(name):
    with pytest.raises(KeyError, match="layer|not a minBERT"):
        block_of(name, 2)


# ----- parity with transformers.BertModel on the default encoder -------------------------------------------------

def test_last_hidden_state_matches_transformers(outputs, batch):
    mask = batch["attention_mask"]
    for kind in ("sdpa", "explicit"):
        diff = max_diff_on_tokens(outputs[kind].last_hidden_state, outputs["ref"].last_hidden_state, mask)
        assert diff <= TOL, f"{kind}: max abs diff {diff:.2e}"


def test_pooler_output_matches_transformers(outputs):
    for kind in ("sdpa", "explicit"):
        diff = (outputs[kind].pooler_output - outputs["ref"].pooler_output).abs().max().item()
        assert diff <= TOL, f"{kind}: max abs diff {diff:.2e}"


def test_explicit_and_fused_attention_agree(outputs, batch):
    diff = max_diff_on_tokens(outputs["sdpa"].last_hidden_state, outputs["explicit"].last_hidden_state,
                              batch["attention_mask"])
    assert diff <= TOL
    assert (outputs["sdpa"].pooler_output - outputs["explicit"].pooler_output).abs().max().item() <= TOL


def test_parity_against_transformers_sdpa(ours, batch):
    """The fused reference too (transformers' default attention), not only its eager path."""
    reference = transformers.BertModel.from_pretrained(str(default_encoder_dir()), attn_implementation="sdpa").eval()
    with torch.no_grad():
        diff = max_diff_on_tokens(ours(**batch).last_hidden_state, reference(**batch).last_hidden_state,
                                  batch["attention_mask"])
    assert diff <= TOL


def test_mean_pooled_embeddings_match_sentence_transformers(ours, tokenizer, sentences):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is a reference oracle (test extra)")
    model = st.SentenceTransformer(str(default_encoder_dir()), device="cpu")
    expected = torch.as_tensor(model.encode(sentences, batch_size=64, convert_to_numpy=True))  # (64, 384)
    batch = tokenizer(sentences, max_length=model.max_seq_length)
    with torch.no_grad():
        pooled = masked_mean(ours(**batch).last_hidden_state, batch["attention_mask"])
    cosine = F.cosine_similarity(pooled, expected, dim=-1)
    assert cosine.min().item() >= 0.99999, f"lowest cosine {cosine.min().item():.7f}"


def test_hidden_states_and_attentions_match_transformers(ours, reference, batch):
    sub = {k: v[:8] for k, v in batch.items()}
    with torch.no_grad():
        ref = reference(**sub, output_hidden_states=True, output_attentions=True)
        for kind in ("sdpa", "explicit"):
            out = ours.set_attention(kind)(**sub, output_hidden_states=True, output_attentions=True)
            L = ours.config.num_hidden_layers
            assert len(out.hidden_states) == L + 1 and len(out.attentions) == L
            for mine, theirs in zip(out.hidden_states, ref.hidden_states):
                assert max_diff_on_tokens(mine, theirs, sub["attention_mask"]) <= TOL
            for mine, theirs in zip(out.attentions, ref.attentions):
                assert mine.shape == theirs.shape
                assert (mine - theirs).abs().max().item() <= TOL
    ours.set_attention("sdpa")


def test_gradients_match_transformers(ours, reference, batch):
    """Same loss, same weights, dropout off: every parameter's gradient agrees (padding row of the word table
    included, which must get no gradient in either)."""
    from mtkit.model.pretrained import mtkit_to_hf

    sub = {k: v[:8] for k, v in batch.items()}
    for model in (ours, reference):
        model.zero_grad()
        out = model(**sub)
        loss = masked_mean(out.last_hidden_state, sub["attention_mask"]).pow(2).sum() + out.pooler_output.sum()
        loss.backward()
    ref_params = dict(reference.named_parameters())
    worst = 0.0
    for name, param in ours.named_parameters():
        theirs = ref_params[mtkit_to_hf(name)].grad
        scale = max(theirs.abs().max().item(), 1.0)
        worst = max(worst, (param.grad - theirs).abs().max().item() / scale)
    assert worst <= 1e-4, f"largest relative gradient difference {worst:.2e}"
    assert ours.embeddings.word_embeddings.weight.grad[0].abs().max().item() == 0.0
    ours.zero_grad(set_to_none=True)
    reference.zero_grad(set_to_none=True)


# ----- outputs, masks and defaults --------------------------------------------------------------------------------

def test_output_shapes_and_attention_rows(ours, tokenizer):
    batch = tokenizer(["a short one", "a noticeably longer sentence that needs padding in the other row"])
    B, T = batch["input_ids"].shape
    with torch.no_grad():
        out = ours(**batch, output_hidden_states=True, output_attentions=True)
    assert isinstance(out, BertOutput)
    H, heads, L = ours.config.hidden_size, ours.config.num_attention_heads, ours.config.num_hidden_layers
    assert out.last_hidden_state.shape == (B, T, H) and out.pooler_output.shape == (B, H)
    assert len(out.hidden_states) == L + 1 and all(h.shape == (B, T, H) for h in out.hidden_states)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert len(out.attentions) == L
    pad_keys = ~batch["attention_mask"].bool()  # (B, T)
    for probs in out.attentions:
        assert probs.shape == (B, heads, T, T)
        torch.testing.assert_close(probs.sum(-1), torch.ones(B, heads, T), atol=1e-5, rtol=0)
        assert probs.masked_select(pad_keys[:, None, None, :]).abs().max().item() == 0.0
    with torch.no_grad():
        plain = ours(**batch)
    assert plain.hidden_states is None and plain.attentions is None


def test_padded_positions_are_zero_and_both_paths_agree_everywhere(ours, tokenizer):
    """The fused path packs the real tokens and skips padding; the explicit path computes padding and zeroes it.
    Both return zeros at padding, and the same numbers everywhere, hidden states of every layer included."""
    batch = tokenizer(["a short one", "a noticeably longer sentence, so the first row gets padded", "mid length"])
    pad = ~batch["attention_mask"].bool()
    assert pad.any()
    with torch.no_grad():
        fused = ours.set_attention("sdpa")(**batch, output_hidden_states=True)
        explicit = ours.set_attention("explicit")(**batch, output_hidden_states=True)
    ours.set_attention("sdpa")
    for a, b in zip(fused.hidden_states, explicit.hidden_states):
        assert a[pad].abs().max().item() == 0.0 and b[pad].abs().max().item() == 0.0
        assert (a - b).abs().max().item() <= TOL
    assert torch.equal(fused.hidden_states[-1], fused.last_hidden_state)
    assert (fused.pooler_output - explicit.pooler_output).abs().max().item() <= TOL


def test_fused_path_trains_like_the_explicit_path(tokenizer):
    """Gradients through the packed fused path equal those through the explicit path (dropout off)."""
    model = BertModel.from_pretrained()
    batch = tokenizer(generated_sentences(6, seed=3) + ["short"])
    grads = {}
    for kind in ("sdpa", "explicit"):
        model.zero_grad()
        out = model.set_attention(kind)(**batch)
        (masked_mean(out.last_hidden_state, batch["attention_mask"]).pow(2).sum() + out.pooler_output.sum()).backward()
        grads[kind] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, g in grads["sdpa"].items():
        assert (g - grads["explicit"][name]).abs().max().item() <= 1e-4 * max(1.0, g.abs().max().item()), name


def test_padding_does_not_change_real_tokens(ours, tokenizer):
    alone = tokenizer(["the film is good"])
    padded = tokenizer(["the film is good", "x " * 40])
    n = alone["input_ids"].shape[1]
    with torch.no_grad():
        a = ours(**alone).last_hidden_state[0]
        b = ours(**padded).last_hidden_state[0, :n]
    assert (a - b).abs().max().item() <= TOL


def test_defaults_mean_no_padding_and_sentence_a(ours, tokenizer):
    batch = tokenizer(["one sentence here", "and another one"], padding="max_length", max_length=8)
    ids = batch["input_ids"]
    with torch.no_grad():
        implicit = ours(ids[:, :5]).last_hidden_state
        explicit = ours(ids[:, :5], attention_mask=torch.ones_like(ids[:, :5]),
                        token_type_ids=torch.zeros_like(ids[:, :5])).last_hidden_state
        ours.set_attention("explicit")
        implicit_explicit = ours(ids[:, :5]).last_hidden_state
    ours.set_attention("sdpa")
    assert torch.allclose(implicit, explicit, atol=1e-6)
    assert torch.allclose(implicit, implicit_explicit, atol=TOL)


def test_forward_rejects_bad_shapes_with_a_hint(ours):
    with pytest.raises(ValueError, match="unsqueeze"):
        ours(torch.tensor([101, 2023, 102]))
    with pytest.raises(ValueError, match="position limit"):
        ours(torch.ones(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        ours(torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="tokenizer"):
        ours([[101, 102]])
    with pytest.raises(TypeError, match="integer"):
        ours(torch.ones(1, 4))
    with pytest.raises(ValueError, match="explicit"):
        ours.set_attention("flash")


def test_dtype_and_train_mode(tmp_path):
    model = BertModel.from_pretrained(dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters()) and not model.training
    with torch.no_grad():
        out = model(torch.tensor([[101, 7592, 102]]))
    assert out.last_hidden_state.dtype == torch.bfloat16 and torch.isfinite(out.last_hidden_state.float()).all()


def test_bf16_autocast_stays_close_to_fp32(ours, tokenizer):
    """Mixed precision (as on a GPU) through both paths: the packed fused path must survive autocast's dtypes."""
    batch = tokenizer(generated_sentences(8, seed=2))
    with torch.no_grad():
        reference = masked_mean(ours(**batch).last_hidden_state, batch["attention_mask"])
        for kind in ("sdpa", "explicit"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = ours.set_attention(kind)(**batch)
            pooled = masked_mean(out.last_hidden_state.float(), batch["attention_mask"])
            assert F.cosine_similarity(pooled, reference, dim=-1).min().item() > 0.99, kind
    ours.set_attention("sdpa")


def test_fresh_model_initialisation_and_dropout():
    torch.manual_seed(0)
    config = BertConfig.tiny()
    model = BertModel(config)
    w = model.layers[0].attention.query.weight
    assert abs(w.std().item() - config.initializer_range) < 0.005
    assert model.embeddings.word_embeddings.weight[config.pad_token_id].abs().max().item() == 0.0
    ids = torch.randint(1000, 2000, (2, 6))
    model.train()
    a, b = model(ids).last_hidden_state, model(ids).last_hidden_state
    assert not torch.allclose(a, b)  # dropout is on in training
    model.eval()
    assert torch.equal(model(ids).last_hidden_state, model(ids).last_hidden_state)


# ----- a randomly initialised bert-base-sized model, both file formats ---------------------------------------------

@pytest.fixture(scope="module")
def base_sized_dirs(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, vocab_size=30522)
    model = transformers.BertModel(config).eval()
    dirs = {}
    dirs["safetensors"] = tmp_path_factory.mktemp("bert_base_safetensors")
    model.save_pretrained(dirs["safetensors"])
    # transformers 5 writes safetensors only; the .bin format is torch.save of the same state dict.
    dirs["bin"] = tmp_path_factory.mktemp("bert_base_bin")
    config.to_json_file(dirs["bin"] / "config.json")
    torch.save(model.state_dict(), dirs["bin"] / "pytorch_model.bin")
    assert (dirs["safetensors"] / "model.safetensors").is_file()
    assert (dirs["bin"] / "pytorch_model.bin").is_file() and not (dirs["bin"] / "model.safetensors").exists()
    return model, dirs


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_base_sized_random_bert_parity(base_sized_dirs, tokenizer, fmt):
    reference, dirs = base_sized_dirs
    batch = tokenizer(generated_sentences(6, seed=1) + [""], max_length=64)
    ours = BertModel.from_pretrained(dirs[fmt])
    assert ours.config.num_hidden_layers == 12 and ours.config.hidden_size == 768
    with torch.no_grad():
        ref = reference(**batch)
        for kind in ("sdpa", "explicit"):
            out = ours.set_attention(kind)(**batch)
            assert max_diff_on_tokens(out.last_hidden_state, ref.last_hidden_state, batch["attention_mask"]) <= TOL
            assert (out.pooler_output - ref.pooler_output).abs().max().item() <= TOL
