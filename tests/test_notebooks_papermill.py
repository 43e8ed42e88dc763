"""Every notebook runs headless through papermill with small parameters, and its results are sane.

The run goes through ``mtkit.teach.notebook_runner`` (the code behind ``make demo``), once for the module, with the
``small`` profile on the demo data. Each notebook's JSON is checked against bounds that a working notebook
meets and a broken one does not (e.g. accuracy above the majority baseline). The runner passes
``exercise_source="solutions"``, so the notebooks run every worked solution through its check too (and
notebook 05 fine-tunes with them swapped in); tests/test_learner_mode.py runs 03 and 04 on the stubs.

The runner's pieces that need no kernel are tested separately, fast.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mtkit.exercises.checks import EXERCISES
from mtkit.teach import notebook_runner as nr

REPO = Path(__file__).resolve().parents[1]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# Bounds per notebook: (metric name, predicate, what it means). Keep them loose enough for any CPU, tight enough
# that a notebook that learns nothing or compares nothing fails.
BOUNDS = {
    "01_setup_and_data": [
        ("sst_train", lambda v: v == 48, "train_limit is applied"),
        ("sst_majority_dev_acc", lambda v: 0.0 < v < 0.6, "a 5-class majority baseline"),
        ("padding_overhead_bucketed", lambda v: 0 <= v < 0.5, "bucketing removes most padding"),
    ],
    "02_tokens_and_embeddings": [
        ("vocab_size", lambda v: v == 30522, "the uncased BERT vocabulary"),
        ("embedding_by_hand_max_diff", lambda v: v < 1e-5, "embeddings by hand equal the layer"),
        ("tokenizer_parity", lambda v: v is None or v == 1.0, "ids equal transformers' tokenizer"),
    ],
    "03_attention_and_minbert": [
        ("your_encoder_vs_minbert_max_diff", lambda v: v < 1e-4, "the exercises rebuild minBERT"),
        ("explicit_vs_fused_max_diff", lambda v: v < 1e-4, "both attention paths agree"),
        ("hf_parity_last_hidden_max_diff", lambda v: v is None or v < 1e-4, "minBERT matches transformers"),
    ],
    "04_adamw": [
        ("mtkit_vs_torch_max_diff_eps0", lambda v: v < 1e-9, "the same update as torch when eps = wd = 0"),
        ("toy_final_loss_adamw", lambda v: _finite(v) and v < 0.5, "AdamW descends the toy surface"),
        ("head_dev_acc", lambda v: 0 < v <= 1, "an accuracy"),
        ("decay_ratio_scaled_add_1e-7", lambda v: abs(v - 1) < 0.05, "the float32 decay is lr * wd within 5 %"),
    ],
    "05_sentiment_finetuning": [
        ("dev_acc_full_model", lambda v: v >= 0.3, "fine-tuning beats the majority baseline"),
        ("yours_whose", lambda v: v == "the worked answers", "the last run trained with the worked answers"),
        ("majority_baseline", lambda v: 0 < v < 0.5, "a 5-class majority baseline"),
    ],
    "06_sentence_bert": [
        ("zero_shot_sts_pearson_mean", lambda v: v > 0.5, "a sentence encoder knows similarity zero-shot"),
        ("para_acc_bi_encoder", lambda v: v > 0.5, "the [u; v; |u-v|] head learns paraphrase"),
    ],
    "07_multitask_training": [
        ("overall", lambda v: 0.4 < v <= 1.0, "an overall score above chance"),
        ("sts_pearson", lambda v: v > 0.3, "STS is learned alongside the others"),
    ],
    "08_layerwise_lr_decay": [
        ("num_groups", lambda v: v >= 8, "one group per block, decay and no-decay halves"),
        ("embeddings_lr_ratio", lambda v: 0 < v < 1, "the embeddings get a smaller lr"),
        ("top_layer_lr_ratio", lambda v: v == 1.0, "the top layer at the base lr (Sun et al. 2019, report D)"),
    ],
    "09_gradient_surgery": [
        ("telemetry_steps", lambda v: v >= 1, "telemetry was recorded"),
        ("conflict_rate_pcgrad", lambda v: 0.0 <= v <= 1.0, "a rate"),
    ],
    "10_experiments_and_error_analysis": [
        ("runs", lambda v: v >= 3, "several of the reports' set-ups were compared"),
        ("best_overall", lambda v: 0.4 < v <= 1.0, "an overall score above chance"),
    ],
}


# Bounds between two metrics of one notebook: (metric, other, meaning); metric must exceed other.
ABOVE = {
    "04_adamw": [("head_dev_acc", "majority_dev_acc", "the linear probe beats the majority baseline")],
    "05_sentiment_finetuning": [("dev_acc_full_model", "majority_baseline", "fine-tuning beats the majority baseline")],
    "09_gradient_surgery": [],
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("notebooks")
    runs = nr.run_notebooks(out, profile="small", log=lambda *_: None)  # the small profile's cell timeout (120 s)
    nr.write_summary(runs, out, "small", None)
    return out, {r.name: r for r in runs}


@pytest.mark.slow
@pytest.mark.parametrize("name", nr.NOTEBOOKS)
def test_notebook_runs_and_its_results_are_sane(small_run, name):
    out, runs = small_run
    run = runs[name]
    assert run.status == "ok", f"{name} failed: {run.error} (executed copy: {run.output})"
    results = run.results
    assert results["notebook"] == name and results["data"] == "demo"
    assert set(run.parameters) >= {"data_dir", "results_dir"} and run.parameters["data_dir"] == "demo"
    metrics = results["metrics"]
    for key, ok, meaning in BOUNDS[name]:
        assert key in metrics, f"{name} did not record {key!r}"
        assert ok(metrics[key]), f"{name}: {key} = {metrics[key]!r}, expected {meaning}"
    for key, other, meaning in ABOVE.get(name, []):
        assert metrics[key] > metrics[other], f"{name}: {key} {metrics[key]} <= {other} {metrics[other]}: {meaning}"


@pytest.mark.slow
def test_every_solution_ran_through_a_notebook_and_the_summary_was_written(small_run):
    out, runs = small_run
    checked = {}
    for run in runs.values():
        checked |= (run.results or {}).get("checks", {})
    assert {name for name, record in checked.items()
            if record["source"] == "solutions" and record["outcome"] == "passed"} == set(EXERCISES)
    assert all(set(record["functions"].values()) == {"passed"} for record in checked.values())
    # notebook 05's last run trained with the worked answers' attention, layer, AdamW and pooling
    trained = runs["05_sentiment_finetuning"].results["implementations"]
    assert {piece for piece, record in trained.items() if record.get("file")} == {
        "attention", "transformer_layer", "adamw", "mean_pooling"}
    assert all(record["outcome"] == "passed" and "instead_of" not in record
               for record in trained.values() if record.get("file"))
    summary = json.loads((out / "summary.json").read_text())
    assert [n["name"] for n in summary["notebooks"]] == nr.NOTEBOOKS
    assert "| 01_setup_and_data | ok |" in (out / "summary.md").read_text()


# ---------------------------------------------------------------------------------------------- no kernel needed
def test_every_notebook_has_the_parameters_cell():
    import papermill as pm
    for name in nr.NOTEBOOKS:
        path = REPO / "notebooks" / f"{name}.ipynb"
        assert path.is_file(), f"{path} is missing"
        declared = set(pm.inspect_notebook(str(path)))
        assert declared >= {"device", "data_dir", "encoder", "train_limit", "dev_limit", "epochs", "batch_size",
                            "max_length", "seed", "results_dir"}, f"{name}: {declared}"
        for profile in nr.PROFILES:
            unknown = set(nr.profile_parameters(profile, name)) - declared
            assert not unknown, f"profile {profile} passes {unknown} that {name} does not declare"


def test_profiles_and_selection():
    assert nr.profile_parameters("small", "07_multitask_training")["train_limit"] == 32
    assert nr.profile_parameters("small", "01_setup_and_data")["train_limit"] == 48
    assert nr.profile_parameters("demo", "01_setup_and_data") == {}
    assert nr.profile_parameters("compact", "03_attention_and_minbert") == {"dev_limit": 1000}
    with pytest.raises(ValueError, match="unknown profile"):
        nr.profile_parameters("huge", "01_setup_and_data")
    assert nr.select_notebooks(["3"]) == ["03_attention_and_minbert"]
    assert nr.select_notebooks(["surgery", "01"]) == ["01_setup_and_data", "09_gradient_surgery"]
    with pytest.raises(ValueError, match="matches no notebook"):
        nr.select_notebooks(["99"])


def test_save_results_writes_plain_json(tmp_path):
    import numpy as np
    import torch
    path = nr.save_results("nb", {"a": np.float32(0.5), "b": torch.tensor(2), "c": float("nan"), "d": [np.int64(3)]},
                           tmp_path, data="demo")
    assert json.loads(path.read_text()) == {"notebook": "nb", "metrics": {"a": 0.5, "b": 2, "c": None, "d": [3]},
                                            "data": "demo"}


def test_update_docs_replaces_only_its_section(tmp_path):
    doc = tmp_path / "NOTEBOOKS.md"
    doc.write_text("# Title\n\nHand-written intro.\n")
    run = nr.NotebookRun("01_setup_and_data", "ok", 3.25, {}, "x.ipynb", {"data": "demo", "metrics": {"acc": 0.5}})
    nr.update_docs(doc, "CPU demo", [run], "demo", None, "cmd")
    nr.update_docs(doc, "GPU full", [run], "full", "/data", "cmd")
    run.seconds = 9.5
    nr.update_docs(doc, "CPU demo", [run], "demo", None, "cmd")
    text = doc.read_text()
    assert text.startswith("# Title\n\nHand-written intro.\n")
    assert text.count("runner:begin CPU demo") == 1 and text.count("runner:begin GPU full") == 1
    assert "| 01_setup_and_data | ok | 9.5 |  | demo | acc 0.500 |" in text  # no CPU time recorded for this run
    assert text.index("CPU demo") < text.index("GPU full")


def test_cli_rejects_a_missing_data_dir(tmp_path, capsys):
    assert nr.main(["--out", str(tmp_path), "--data-dir", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_data_source_demo_and_explicit(tmp_path, capsys):
    source = nr.data_source("demo")
    assert source.kind == "demo" and (source.path / "ids-sst-train.csv").is_file()
    assert "demo set" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        nr.data_source(str(tmp_path / "missing"))


def test_committed_notebooks_match_their_sources_and_use_the_demo_data():
    """The .ipynb files are built from tools/notebooks/*.py and executed on the demo set only."""
    import subprocess
    import sys

    import nbformat
    result = subprocess.run([sys.executable, "tools/build_notebooks.py", "--check"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in nr.NOTEBOOKS:
        nb = nbformat.read(str(REPO / "notebooks" / f"{name}.ipynb"), as_version=4)
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "Data: mtkit's demo set" in text, f"{name}: committed outputs must come from the demo data"
        assert "CS224N data in" not in text and "Traceback" not in text
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and nb.cells.index(params[0]) <= 2, f"{name}: one parameters cell, near the top"
        assert any("## Summary" in c.source for c in nb.cells if c.cell_type == "markdown")
        assert any("## Questions" in c.source for c in nb.cells if c.cell_type == "markdown")
        assert not any("!pip" in c.source or "cuda.is_available()" in c.source for c in nb.cells)


def test_a_hung_notebook_is_retried_once_and_a_failing_one_is_recorded(tmp_path, monkeypatch):
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError
    calls = []

    def fake_execute(path, output, parameters, **kwargs):
        calls.append(Path(path).stem)
        name = Path(path).stem
        if name == "01_setup_and_data" and calls.count(name) == 1:
            raise CellTimeoutError("A cell timed out while it was being executed, after 5 seconds.")
        if name == "02_tokens_and_embeddings":
            raise RuntimeError("a real error in a cell")
        nr.save_results(name, {"x": 1}, parameters["results_dir"], data="demo")

    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    runs = nr.run_notebooks(tmp_path, only=["01", "02", "03"], log=lambda *_: None)
    assert calls == ["01_setup_and_data", "01_setup_and_data", "02_tokens_and_embeddings", "03_attention_and_minbert"]
    assert [r.status for r in runs] == ["ok", "failed", "ok"]
    assert runs[0].extra["retried"] and not runs[2].extra["retried"]
    assert "a real error in a cell" in runs[1].error


def test_building_a_notebook_prints_no_kernel_warning(capfd):
    """tools/build_notebooks.py executes with the runner's kernel manager: no "running over TCP without
    encryption" warning (or any other line) from the kernel on stderr."""
    import importlib.util

    import nbformat
    spec = importlib.util.spec_from_file_location("build_notebooks", REPO / "tools" / "build_notebooks.py")
    build_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_notebooks)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    executed = build_notebooks.execute(nb, timeout=120)
    assert executed.cells[0].outputs[0]["text"].strip() == "42"
    err = capfd.readouterr().err
    assert "without encryption" not in err, err
    assert not err.strip(), f"unexpected output on stderr while building: {err}"
