"""The mtkit command: starter flags, YAML + overrides, errors, end-to-end train / evaluate / predict, ensembles."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtkit.cli import build_parser, config_from_args, main
from mtkit.eval.metrics import read_predictions
from mtkit.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 48, "dev": 24, "test": 8})


def parse(argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


# ------------------------------------------------------------------------------------------------ flags -> config
def test_starter_flags_map_onto_config_fields(tmp_path):
    sst_train = tmp_path / "my-sst.csv"
    config = parse(["--fine-tune-mode", "last-linear-layer", "--lr", "1e-3", "--batch_size", "64", "--epochs", "3",
                    "--use_gpu", "--seed", "7", "--hidden_dropout_prob", "0.1", "--sst_train", str(sst_train),
                    "--sts_dev_out", "out/sts-dev.csv", "--para_test_out", "out/para-test.csv"])
    assert (config.fine_tune_mode, config.lr, config.batch_size, config.epochs, config.seed, config.dropout,
            config.device) == ("last-linear-layer", 1e-3, 64, 3, 7, 0.1, "cuda")
    assert config.task("sst").task_spec().train_file == str(sst_train.resolve())
    assert config.task("sts").dev_out == "out/sts-dev.csv" and config.task("para").test_out == "out/para-test.csv"


def test_flags_override_the_yaml_and_unset_flags_keep_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 2.0e-5\nepochs: 4\nschedule: round-robin\ntasks:\n  sst: {pooling: cls}\n  sts: {}\n")
    config = parse(["--config", str(path), "--epochs", "2", "--set", "surgery=pcgrad", "--set",
                    "tasks.sts.loss=cosent", "--set", "surgery_options.reduction=mean"])
    assert (config.lr, config.epochs, config.schedule, config.surgery) == (2e-5, 2, "round-robin", "pcgrad")
    assert config.surgery_options == {"reduction": "mean"}
    assert config.task("sst").pooling == "cls" and config.task("sts").loss == "cosent"
    assert config.source == f"the command line over {path}"
    only = parse(["--config", str(path), "--tasks", "sts"])
    assert only.task_names == ["sts"]


def test_defaults_are_the_starters_except_the_fine_tune_mode():
    config = parse([])
    assert (config.seed, config.epochs, config.batch_size, config.lr, config.dropout) == (11711, 10, 8, 1e-5, 0.3)
    assert config.fine_tune_mode == "full-model" and config.device == "auto"


@pytest.mark.parametrize("yaml_text, argv, message", [
    ("lr: 1e-5\nepochz: 3\n", [], r"unknown key 'epochz' \(in .*bad.yaml\)\. Did you mean 'epochs'\?"),
    ("selection: best\n", [], r"selection: 'best' is not allowed.*'overall', 'all-improve'.*bad.yaml"),
    ("tasks:\n  sst: {loss: crossentropy}\n", [], r"tasks.sst.loss: 'crossentropy' is not allowed.*cross_entropy"),
    ("schedule: round_robin\n", [], r"schedule: 'round_robin' is not allowed \(did you mean 'round-robin'\?\)"),
    ("schedule_options: {ordr: [sst]}\n", [], r"schedule_options: .*no option 'ordr'"),
    ("", ["--set", "epoch=1"], r"unknown key 'epoch' \(in the command line over .*bad.yaml\)\. Did you mean 'epochs'"),
    ("", ["--set", "tasks.cola.loss=mse"], r"task 'cola' is not among"),
    ("", ["--tasks", "sst,cola"], r"tasks.cola: 'cola' is not one of the default tasks"),
])
def test_bad_config_is_one_clear_error_with_exit_status_2(tmp_path, capsys, yaml_text, argv, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text or "{}\n")
    code = main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mtkit: error: ") and len(err.strip().splitlines()) == 1
    import re
    assert re.search(message, err), err


def test_every_example_config_is_valid():
    assert {p.name for p in EXAMPLES} >= {"tiny_demo.yaml", "report_a.yaml", "report_b.yaml", "report_c.yaml",
                                           "report_d.yaml", "report_e.yaml"}
    for path in EXAMPLES:
        TrainConfig.from_yaml(path)


@pytest.mark.filterwarnings("ignore:task .* has nothing to train")  # report B's cosine heads during stage 1
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_config_trains_on_the_demo_data(demo, tmp_path, path):
    code = main(["train", "--config", str(path), "--set", "encoder=tiny", "--set", "train_limit=8", "--set",
                 "dev_limit=8", "--set", "max_length=32", "--data-dir", str(demo), "--output-dir", str(tmp_path),
                 "--epochs", "2", "--batch_size", "8", "--quiet"])
    assert code == 0


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    """``mtkit train`` on the demo data with the tiny encoder (the starter's flags plus a YAML)."""
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--config", str(REPO / "examples" / "tiny_demo.yaml"), "--data-dir", str(demo),
                 "--output-dir", str(out), "--set", "train_limit=16", "--set", "dev_limit=null", "--epochs", "1",
                 "--lr", "1e-3", "--seed", "3", "--fine-tune-mode", "full-model", "--quiet",
                 "--sst_dev_out", str(out / "starter" / "sst-dev-output.csv")])
    assert code == 0
    return out


def test_train_writes_predictions_in_the_submission_format(demo, trained):
    from mtkit.data.tasks import default_task, load_split
    starter = trained / "starter" / "sst-dev-output.csv"
    files = {"sst-dev": starter} | {f"{t}-{s}": trained / "predictions" / f"{t}-{s}-output.csv"
                                    for t in ("sst", "para", "sts") for s in ("dev", "test") if (t, s) != ("sst", "dev")}
    headers = {"sst": "Predicted_Sentiment", "para": "Predicted_Is_Paraphrase", "sts": "Predicted_Similiary"}
    for name, path in files.items():
        task, split = name.split("-")
        lines = path.read_text().splitlines()
        assert lines[0] == f"id \t {headers[task]} "
        examples, _ = load_split(default_task(task), demo, split)
        assert [line.split(" , ")[0] for line in lines[1:]] == [ex.id for ex in examples]
        values = read_predictions(path)
        if task == "para":
            assert set(values.values()) <= {0.0, 1.0}
        if task == "sst":
            assert set(values.values()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_evaluate_reproduces_the_trainers_best_dev_metrics(trained, capsys):
    import json

    from mtkit.train.checkpoint import read_checkpoint, resolve
    best = read_checkpoint(resolve(trained)).state["best"]
    assert main(["evaluate", str(trained), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for task, metrics in best["metrics"].items():
        for name, value in metrics.items():
            assert result["metrics"][task][name] == pytest.approx(value, abs=1e-6), (task, name)
    assert result["overall"] == pytest.approx(best["overall"], abs=1e-6)


def test_predict_command_and_python_m_entry_point(trained, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "mtkit", "predict", str(trained), "--split", "test", "--out-dir",
                           str(tmp_path), "--sts_test_out", str(tmp_path / "custom.csv")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"sst-test-output.csv", "para-test-output.csv", "custom.csv"}
    assert read_predictions(tmp_path / "sst-test-output.csv") == \
        read_predictions(trained / "predictions" / "sst-test-output.csv")


def test_evaluate_without_a_checkpoint_says_so(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "No complete mtkit checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ ensembles
def test_ensemble_averages_logits_and_scores(demo, trained, tmp_path):
    """Two members: sentiment = argmax of the mean logits, similarity = mean score, paraphrase = mean logit > 0."""
    from mtkit.data.tasks import default_task, load_split
    from mtkit.train.ensemble import Ensemble
    second = tmp_path / "second"
    assert main(["train", "--config", str(REPO / "examples" / "tiny_demo.yaml"), "--data-dir", str(demo),
                 "--output-dir", str(second), "--set", "train_limit=8", "--epochs", "1", "--lr", "1e-3", "--seed",
                 "4", "--quiet", "--set", "write_predictions=false"]) == 0
    ensemble = Ensemble.load([trained, second])
    for task in ("sst", "para", "sts"):
        examples, _ = load_split(default_task(task), demo, "dev")
        got = ensemble.predict_examples(task, examples)
        outputs = []
        for member in ensemble.members:
            from mtkit.data.batching import make_loader
            batch = next(iter(make_loader(examples, member.tokenizer, len(examples), layout="bi", shuffle=False)))
            with torch.no_grad():
                outputs.append(member.model(task, batch))
        mean = (outputs[0] + outputs[1]) / 2
        if task == "sst":
            expected = mean.argmax(-1).float()
        elif task == "para":
            expected = (mean > 0).float()
        else:
            expected = mean
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
        # each member's outputs, in the examples' order, and on the common scale (probabilities, scores)
        member_outputs = ensemble.member_outputs(task, examples)
        for mine, theirs in zip(member_outputs, outputs):
            torch.testing.assert_close(mine, theirs.float(), atol=1e-5, rtol=1e-4)
        common = {"sst": lambda o: o.softmax(-1), "para": torch.sigmoid, "sts": lambda o: o}[task]
        for mine, theirs in zip(ensemble.probabilities(task, member_outputs), outputs):
            np.testing.assert_allclose(mine, common(theirs.float()).numpy(), atol=1e-5)
        np.testing.assert_allclose(ensemble.average(task, member_outputs), got)


def test_demo_data_and_data_fetch_are_delegated(tmp_path, capsys):
    assert main(["demo-data", "--dest", str(tmp_path / "demo"), "--train-size", "10", "--dev-size", "5",
                 "--test-size", "5"]) == 0
    assert (tmp_path / "demo" / "ids-sst-train.csv").is_file()
    with pytest.raises(SystemExit) as info:
        main(["data", "fetch", "--help"])
    assert info.value.code == 0 and "mtkit data fetch" in capsys.readouterr().out
    assert main(["data", "frobnicate"]) == 2


# ------------------------------------------------------------------------------------------------ custom tasks
def _write_cfimdb(folder: Path, rows: int) -> None:
    """A small binary sentiment set in the CS224N format (CFIMDB's columns), written outside the project."""
    folder.mkdir(parents=True)
    words = ["good", "fine", "great", "bad", "awful", "poor"]
    for split, n in (("train", rows), ("dev", rows // 2)):
        lines = ["\tid\tsentence\tsentiment"]
        for i in range(n):
            label = i % 2
            lines.append(f"{i}\tcf{split}{i}\tthe film was {words[(i % 3) + 3 * (1 - label)]} .\t{label}")
        (folder / f"ids-cfimdb-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_custom_task_with_absolute_paths_trains_without_any_data_folder(tmp_path):
    """A custom task whose train/dev are absolute paths needs no CS224N folder, no MTKIT_DATA and no ./data."""
    tasks_dir = tmp_path / "elsewhere" / "cfimdb"
    _write_cfimdb(tasks_dir, 24)
    config = tmp_path / "cfimdb.yaml"
    config.write_text(
        "encoder: tiny\nepochs: 1\nbatch_size: 8\nmax_length: 16\nprogress: false\nwrite_predictions: false\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "tasks:\n  cfimdb:\n    kind: classification\n"
        f"    train: {tasks_dir / 'ids-cfimdb-train.csv'}\n    dev: {tasks_dir / 'ids-cfimdb-dev.csv'}\n",
        encoding="utf-8")
    empty = tmp_path / "cwd-without-data"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MTKIT_DATA"}
    env |= {"PYTHONPATH": str(REPO), "MTKIT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "mtkit", "train", "--config", str(config)], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No task data found" not in done.stderr
    assert "best" in done.stdout and "cfimdb" in done.stdout
    assert (tmp_path / "out" / "best").is_dir()


def test_set_suggestions_name_registered_values(capsys):
    """The --set examples (module docstring, help, error message) are values the config accepts."""
    import re

    import mtkit.cli
    from mtkit.train.schedules import SCHEDULES
    assert main(["train", "--set", "schedule"]) == 2
    err = capsys.readouterr().err
    suggested = [(k, v.rstrip(".")) for k, v in re.findall(r"--set (\w+)=([\w.-]+)", err)]
    assert suggested and all(key != "schedule" or value in SCHEDULES for key, value in suggested), err
    texts = [mtkit.cli.__doc__, build_parser()._subparsers._group_actions[0].choices["train"].format_help(), err]
    examples = {(k, v.rstrip(".")) for text in texts for k, v in re.findall(r"--set ([a-z_][\w.]*)=([\w.-]+)", text)
                if k != "key"}  # "--set key=value" is the placeholder
    assert ("schedule", "round-robin") in examples, examples
    for key, value in sorted(examples):
        parse(["--set", f"{key}={value}"])  # each one is a valid override: ConfigError otherwise
