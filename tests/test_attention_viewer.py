"""mtkit.teach.attention_viewer: maps equal the model's attention, figures are labelled, the widget updates."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.tokenizer import Tokenizer
from mtkit.teach.attention_viewer import (
    AttentionMaps,
    AttentionViewer,
    attention_maps,
    plot_attention,
    plot_attention_heads,
)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_pretrained(None)
    model = BertModel(BertConfig.tiny(vocab_size=tokenizer.vocab_size)).eval()
    return model, tokenizer


def test_maps_are_the_models_attention_probabilities(setup):
    model, tokenizer = setup
    maps = attention_maps(model, tokenizer, "the movie was good .", pair="it was fine .")
    batch = tokenizer(["the movie was good ."], pairs=["it was fine ."])
    with torch.no_grad():
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], output_attentions=True)
    assert maps.probs.shape == (2, 4, len(maps.tokens), len(maps.tokens))
    assert np.allclose(maps.probs, torch.stack([a[0] for a in out.attentions]).numpy())
    assert np.allclose(maps.probs.sum(-1), 1.0, atol=1e-5)
    assert maps.tokens[0] == "[CLS]" and maps.tokens.count("[SEP]") == 2
    assert np.allclose(maps.map(1), maps.probs[1].mean(axis=0))
    with pytest.raises(ValueError, match="layers 0..1"):
        maps.map(2)
    with pytest.raises(ValueError, match="heads 0..3"):
        maps.map(0, 7)


def test_figures_have_labels_and_titles(setup):
    model, tokenizer = setup
    maps = attention_maps(model, tokenizer, "a short sentence .")
    fig = plot_attention(maps, layer=1, head=2)
    ax = fig.axes[0]
    assert ax.get_title() == "Attention, layer 1, head 2"
    assert "query" in ax.get_ylabel() and "key" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == maps.tokens
    grid = plot_attention_heads(maps, layer=0, columns=3)
    assert "all 4 heads" in grid._suptitle.get_text()


def test_viewer_follows_its_controls_and_reports_errors(setup):
    model, tokenizer = setup
    maps = {"one": attention_maps(model, tokenizer, "one sentence ."),
            "two": attention_maps(model, tokenizer, "another , longer sentence here .")}
    viewer = AttentionViewer(maps)
    assert viewer.figure.axes[0].get_title() == "Attention, layer 0, mean over heads"
    viewer.layer.value = 1
    viewer.head.value = 3
    assert viewer.figure.axes[0].get_title() == "Attention, layer 1, head 3"
    viewer.sentence.value = "two"
    assert len(viewer.figure.axes[0].get_xticklabels()) == len(maps["two"].tokens)
    assert viewer.selection == {"sentence": "two", "layer": 1, "head": 3}
    assert viewer.errors == []
    with pytest.raises(ValueError, match="1 tokens for maps over 2 positions"):
        AttentionMaps(probs=np.zeros((1, 1, 2, 2)), tokens=["a"])
    # A failing update is recorded and, outside a kernel, raised (never swallowed by ipywidgets).
    viewer.maps["two"] = None
    with pytest.raises(AttributeError):
        viewer.layer.value = 0
    assert len(viewer.errors) == 1 and "AttributeError" in viewer.errors[0]
