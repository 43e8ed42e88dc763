"""Export (issue 24): checkpoints transformers cannot mistake for BERT, and `mtkit export` to transformers and
sentence-transformers, round-tripped through both libraries and back into mtkit.

A two-step run of the tiny encoder on the demo set is exported in both formats; the exports must load with no
missing or unexpected key and no warning, compute what mtkit computes (1e-5 on real tokens, and for the
sentence vectors), and give back heads that predict what the trained model predicted. The slow test does the
same for the default encoder fine-tuned on STS and compares the two libraries' STS dev Pearson.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtkit.cli import main
from mtkit.export import choose_sentence_embedding, export, load_exported, load_source
from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.pooling import max_pool, mean_pool
from mtkit.model.tokenizer import Tokenizer
from mtkit.train.checkpoint import MODEL_FILE, RUN_CONFIG, read_checkpoint
from mtkit.train.config import TrainConfig
from mtkit.train.ensemble import Ensemble, Member
from mtkit.train.trainer import Trainer, load_checkpoint_model

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

REPO = Path(__file__).resolve().parents[1]
OLD_RUN = REPO / "tests" / "fixtures" / "old_checkpoint_run"
TOL = 1e-5
SENTENCES = ["A man is playing a guitar.", "Café déjà vu: the film was NOT good!", "a dog runs", "",
             "Two people are walking on the beach near the water at sunset, talking quietly."]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 48, "dev": 24, "test": 8})


def _train(demo, out: Path, **changes) -> Path:
    base = dict(encoder="tiny", data_dir=str(demo), output_dir=str(out), train_limit=16, dev_limit=16, batch_size=8,
                epochs=1, lr=1e-3, dropout=0.0, encoder_dropout=0.0, progress=False, write_predictions=False, seed=1,
                telemetry_every=0, max_steps=2, max_length=32)
    Trainer(TrainConfig(**(base | changes))).fit()
    return out


@pytest.fixture(scope="module")
def run_a(demo, tmp_path_factory):
    """Defaults: mean pooling, a cosine head for STS (so the sentence-transformers export normalises)."""
    return _train(demo, tmp_path_factory.mktemp("run-a") / "run")


@pytest.fixture(scope="module")
def run_b(demo, tmp_path_factory):
    """A shared pair layer, [CLS] for SST, max pooling and a regression head (no cosine) for STS."""
    return _train(demo, tmp_path_factory.mktemp("run-b") / "run", shared_pair_layer=16,
                  tasks={"sst": {"pooling": "cls"}, "para": {},
                         "sts": {"pooling": "max", "head": "sigmoid_regression"}})


@contextlib.contextmanager
def no_warnings():
    """Fail if anything warns: Python warnings, or warning records of transformers / sentence-transformers (the
    MISSING / UNEXPECTED load report is one)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.WARNING)
    loggers = [logging.getLogger(), logging.getLogger("transformers"), logging.getLogger("sentence_transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in records]
    assert not messages, messages


def max_diff_on_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    keep = mask.bool()
    return (a[keep] - b[keep]).abs().max().item()


# ------------------------------------------------------------------------------------------------ raw checkpoints
def test_a_raw_checkpoint_is_never_taken_for_bert_base(run_a):
    """Before issue 24 this loaded a random bert-base (768 x 12) with only a load report."""
    folder = run_a / "best" / "step-00000002"
    names = {p.name for p in folder.iterdir()}
    assert {MODEL_FILE, RUN_CONFIG} <= names and not names & {"config.json", "model.safetensors"}, names
    with pytest.raises(OSError):
        transformers.BertModel.from_pretrained(str(folder))
    with pytest.raises((OSError, ValueError)):
        transformers.AutoModel.from_pretrained(str(folder))
    with pytest.raises((OSError, ValueError)):
        sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    with pytest.raises(FileNotFoundError, match="mtkit training checkpoint.*mtkit export"):
        BertModel.from_pretrained(folder)


def test_a_checkpoint_records_the_kit_that_wrote_it(run_a):
    from mtkit import __version__
    manifest = read_checkpoint(run_a / "best" / "step-00000002", load_state=False).manifest
    assert manifest["mtkit"]["version"] == __version__
    commit = manifest["mtkit"]["commit"]
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)


def test_an_old_checkpoint_still_loads_evaluates_and_exports(tmp_path):
    """tests/fixtures/old_checkpoint_run has the layout before issue 24: config.json held the run config."""
    folder = OLD_RUN / "best" / "step-00000002"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors"} <= names and not names & {MODEL_FILE, RUN_CONFIG}, names
    old_config = json.loads((folder / "config.json").read_text())
    assert "model_type" not in old_config and old_config["tasks"]  # a TrainConfig, not a BertConfig
    checkpoint = read_checkpoint(OLD_RUN / "best" / "step-00000002")
    assert checkpoint.config == old_config
    model, config, meta, tokenizer = load_checkpoint_model(OLD_RUN)
    assert config.task_names == ["sst", "sts"] and tokenizer.vocab_size == 40
    from safetensors.torch import load_file
    saved = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    out = tmp_path / "old-export"
    result = export(OLD_RUN, out, format="transformers")
    assert result.source.run_config_file == "config.json"
    with no_warnings():
        hf, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert hf.config.hidden_size == 8 and hf.config.num_hidden_layers == 1
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert "not recorded" in (out / "README.md").read_text()  # an old checkpoint has no commit


def test_export_needs_neither_transformers_nor_sentence_transformers(tmp_path):
    """The kit writes plain files: with both libraries made unimportable, the export still works."""
    script = ("import sys; sys.modules['transformers'] = None; sys.modules['sentence_transformers'] = None\n"
              "from mtkit.cli import main\n"
              f"sys.exit(main(['export', {str(OLD_RUN)!r}, '--out', {str(tmp_path / 'st')!r}, "
              "'--format', 'sentence-transformers']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "st" / "modules.json").is_file()


# ------------------------------------------------------------------------------------------------ save_pretrained
def test_save_pretrained_always_writes_the_tokenizer_it_was_loaded_with(tmp_path):
    from mtkit.model.pretrained import default_encoder_dir
    model = BertModel.from_pretrained(None)
    out = model.save_pretrained(tmp_path / "copy")  # no vocab_file: the one it was loaded with
    assert (out / "vocab.txt").read_bytes() == (default_encoder_dir() / "vocab.txt").read_bytes()
    with no_warnings():
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    ours = Tokenizer.from_pretrained(None)
    assert len(hf_tokenizer) == ours.vocab_size == 30522
    theirs = hf_tokenizer(SENTENCES, padding=True, truncation=True, max_length=64, return_tensors="pt")
    mine = ours(SENTENCES, max_length=64)
    assert torch.equal(theirs["input_ids"], mine["input_ids"])
    assert torch.equal(theirs["attention_mask"], mine["attention_mask"])
    with pytest.raises(ValueError, match="no vocabulary of its own"):
        BertModel(BertConfig.tiny()).save_pretrained(tmp_path / "random")


# ------------------------------------------------------------------------------------------------ transformers
def test_transformers_export_loads_cleanly_and_equals_the_encoder(run_a, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", str(run_a), "--out", str(out), "--format", "transformers"]) == 0
    printed = capsys.readouterr().out
    assert "exporting best/step-00000002" in printed and "the best model, selected on dev" in printed
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("bert", 64, 2)
    with no_warnings():
        hf, info = transformers.AutoModel.from_pretrained(str(out), output_loading_info=True)
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    source = load_source(run_a)
    batch = source.tokenizer(SENTENCES, max_length=32)
    theirs = hf_tokenizer(SENTENCES, padding=True, truncation=True, max_length=32, return_tensors="pt")
    assert torch.equal(batch["input_ids"], theirs["input_ids"])
    with torch.no_grad():
        ours = source.model.encoder(**batch).last_hidden_state
        ref = hf.eval()(**theirs).last_hidden_state
    diff = max_diff_on_tokens(ours, ref, batch["attention_mask"])
    print(f"transformers export: max |mtkit - AutoModel| on real tokens = {diff:.2e}")
    assert diff <= TOL


# ------------------------------------------------------------------------------------------------ sentence-transformers
def _kit_vectors(source, pooling: str, shared: bool, normalize: bool) -> torch.Tensor:
    """The kit's sentence vectors, computed here from the encoder's states (not through mtkit.export)."""
    batch = source.tokenizer(SENTENCES, max_length=32)
    with torch.no_grad():
        states = source.model.encoder(**batch).last_hidden_state
        pool = {"mean": mean_pool, "max": max_pool, "cls": lambda h, m: h[:, 0]}[pooling]
        vectors = pool(states, batch["attention_mask"])
        if shared:
            vectors = source.model.heads["shared_pair"](vectors)
    return F.normalize(vectors, dim=1) if normalize else vectors


@pytest.mark.parametrize("which, task, pooling, shared, normalize", [
    ("a", None, "mean", False, True),  # STS with the cosine head: normalised
    ("b", None, "max", True, False),  # STS with a regression head after the shared layer: Dense, not normalised
    ("b", "sst", "cls", False, False),  # the sentiment task's own vectors
])
def test_sentence_transformers_export_encodes_like_the_kit(run_a, run_b, tmp_path, which, task, pooling, shared,
                                                          normalize):
    run = {"a": run_a, "b": run_b}[which]
    out = tmp_path / "st"
    argv = ["export", str(run), "--out", str(out), "--format", "sentence-transformers"]
    assert main(argv + (["--task", task] if task else [])) == 0
    modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling"] + ["Dense"] * shared + ["Normalize"] * normalize
    with no_warnings():
        st = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == 32
    theirs = st.encode(SENTENCES, convert_to_tensor=True, batch_size=2)
    source = load_source(run)
    kit = _kit_vectors(source, pooling, shared, normalize)
    embedding = choose_sentence_embedding(source.model, source.config, task=task)
    via_export = embedding.encode(source.model, source.tokenizer, SENTENCES)
    diff = (theirs.cpu() - kit).abs().max().item()
    print(f"sentence-transformers export ({which}, {pooling}, dense={shared}, normalize={normalize}): "
          f"max |mtkit - encode| = {diff:.2e}")
    assert diff <= TOL and (via_export - kit).abs().max().item() <= TOL
    assert theirs.shape == (len(SENTENCES), 16 if shared else 64)


# ------------------------------------------------------------------------------------------------ heads
@pytest.mark.parametrize("fmt", ["transformers", "sentence-transformers"])
def test_mtkit_reloads_the_heads_and_predicts_the_same_labels(run_b, demo, tmp_path, fmt):
    out = tmp_path / "export"
    export(run_b, out, format=fmt)
    model, config, tokenizer = load_exported(out)
    original = Ensemble.load(run_b)
    member = original.members[0]
    reloaded = Ensemble([Member(path=out, model=model, config=config, specs=member.specs, tokenizer=tokenizer)])
    for task in ("sst", "para", "sts"):
        _, expected = original.predict(task, "dev")
        _, got = reloaded.predict(task, "dev", data_dir=demo)
        if task == "sts":
            np.testing.assert_allclose(got, expected, atol=1e-5)
        else:
            assert np.array_equal(got, expected), task
    onto = load_exported(out, encoder=BertModel.from_pretrained(out))[0]  # heads onto an encoder given
    assert onto.task_names == ["sst", "para", "sts"]
    with pytest.raises(ValueError, match="does not fit the heads"):
        load_exported(out, encoder=BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                        intermediate_size=64)))


def test_the_model_card_says_what_was_trained_and_how(run_a, tmp_path):
    from mtkit import __version__
    from mtkit.util.provenance import kit_provenance
    out = tmp_path / "card"
    export(run_a, out, format="sentence-transformers")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers\n")
    best = read_checkpoint(run_a / "best" / "step-00000002").state["best"]
    for text in ("## Base encoder", "randomly initialised", "| sts | pair_regression | bi | mean | cosine |",
                 "ids-sst-train.csv", f"overall: {best['overall']:.4f}",
                 f"pearson {best['metrics']['sts']['pearson']:.4f}",
                 "lr: 0.001", f"mtkit {__version__}", "normalised"):
        assert text in card, text
    commit = kit_provenance()["commit"]
    if commit:
        assert commit in card


def test_export_errors_are_clear(run_a, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(run_a), "--out", str(out)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(["export", str(run_a), "--out", str(out), "--overwrite"]) == 1
    assert "not an mtkit export" in capsys.readouterr().err and (out / "notes.txt").is_file()
    fresh = tmp_path / "fresh"
    assert main(["export", str(run_a), "--out", str(fresh)]) == 0
    assert main(["export", str(run_a), "--out", str(fresh), "--format", "sentence-transformers", "--overwrite"]) == 0
    assert (fresh / "modules.json").is_file()
    capsys.readouterr()
    assert main(["export", str(run_a), "--out", str(tmp_path / "x"), "--format", "sentence-transformers",
                 "--task", "cola"]) == 1
    assert "no such task" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "y")]) == 1
    assert "No complete mtkit checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the default encoder
@pytest.mark.slow
def test_sts_pearson_is_the_same_under_sentence_transformers_and_mtkit_evaluate(demo, tmp_path, capsys):
    """The default encoder fine-tuned briefly on STS: the export's EmbeddingSimilarityEvaluator Pearson equals
    `mtkit evaluate`'s (the cosine head maps cos linearly onto 0..5, which Pearson does not see)."""
    try:  # sentence-transformers 6 moved it; the old path still works there, with a DeprecationWarning
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    except ImportError:
        from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    from mtkit.data.tasks import load_split
    run = _train(demo, tmp_path / "run", encoder=None, tasks=["sts"], lr=2e-5, max_steps=3, train_limit=24)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    kit = json.loads(capsys.readouterr().out)["metrics"]["sts"]["pearson"]
    out = tmp_path / "st"
    export(run, out, format="sentence-transformers")
    source = load_source(run)
    examples, _ = load_split(source.specs[0], demo, "dev")
    evaluator = EmbeddingSimilarityEvaluator([ex.sentence1 for ex in examples], [ex.sentence2 for ex in examples],
                                             [float(ex.label) for ex in examples], name="sts-dev")
    with no_warnings():
        st = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    theirs = evaluator(st)["sts-dev_pearson_cosine"]
    print(f"STS dev Pearson: mtkit evaluate {kit:.8f}, sentence-transformers {theirs:.8f} "
          f"(difference {abs(theirs - kit):.1e})")
    assert abs(theirs - kit) <= 1e-4
    shutil.rmtree(run)
