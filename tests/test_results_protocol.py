"""bench/results.py: every configuration gets the same budget, the protocol runs end to end on the demo set,
writes a table whose numbers come from the runs, and continues a stopped protocol instead of redoing it."""
from __future__ import annotations

import json

import pytest

from bench import results


@pytest.mark.parametrize("protocol", sorted(results.PROTOCOLS))
def test_every_configuration_sees_the_same_training_batches(protocol):
    p = results.PROTOCOLS[protocol]
    budgets = {}
    for name, config in results.CONFIGS.items():
        steps, eval_every = results.steps_for(config, p)
        per_step = 3 if config.overrides.get("schedule") == "equal" else 1
        budgets[name] = steps * per_step
        assert 1 <= eval_every <= steps and -(-steps // eval_every) == p.evals  # p.evals evaluations per run
    assert max(budgets.values()) - min(budgets.values()) <= 2, budgets  # rounding only
    assert results.CONFIGS["summed"].min_seeds >= 3 and results.CONFIGS["pcgrad"].min_seeds >= 3


def test_configurations_differ_from_3_only_where_they_say():
    base = results.CONFIGS["summed"].overrides
    assert results.CONFIGS["pcgrad"].overrides == {**base, "surgery": "pcgrad"}
    assert results.CONFIGS["llrd"].overrides == {**base, "llrd_decay": 0.95}
    for name in results.CONFIGS:  # every configuration is a valid TrainConfig
        results.train_config(results.CONFIGS[name], results.PROTOCOLS["smoke"], 1, "demo", "/tmp/unused", "cpu", None)


def test_smoke_protocol_end_to_end(tmp_path, capsys):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nintro kept\n", encoding="utf-8")
    argv = ["--protocol", "smoke", "--data-dir", "demo", "--configs", "summed,pcgrad", "--out",
            str(tmp_path / "runs"), "--doc", str(doc)]
    assert results.main(argv) == 0
    saved = json.loads((tmp_path / "runs" / "smoke" / "results.json").read_text())
    runs = saved["runs"]
    assert [r["seed"] for r in runs["pcgrad"]] == [11711, 1, 2] == [r["seed"] for r in runs["summed"]]
    for _name, config_runs in runs.items():
        for r in config_runs:
            assert r["task_batches"] == results.PROTOCOLS["smoke"].task_batches
            assert r["overall"] == pytest.approx(results.overall(r["scores"]))
            assert len(r["curve"]) == results.PROTOCOLS["smoke"].evals
    row = saved["table"]["configs"]["pcgrad"]["overall"]
    assert row["mean"] == pytest.approx(sum(r["overall"] for r in runs["pcgrad"]) / 3)
    assert runs["pcgrad"][0]["telemetry"] and runs["summed"][0]["telemetry"]  # the 3 vs 4 conflict telemetry
    text = doc.read_text()
    assert text.startswith("# Results\n\nintro kept") and "python -m bench.results --protocol smoke" in text
    assert f"{row['mean']:.3f} ± {row['std']:.3f}" in text and "PCGrad against summed loss (3 vs 3 seeds)" in text
    assert (tmp_path / "results" / "smoke-dev-curves.png").is_file()
    # each task's gradient scale in 3: the median over steps and seeds of sqrt(diagonal of the summed block Grams)
    import numpy as np
    grams = np.concatenate([np.load(r["telemetry"])["grams"] for r in runs["summed"]])  # (S, blocks, 3, 3)
    by_hand = np.median(np.sqrt(np.diagonal(grams.sum(axis=1), axis1=1, axis2=2)), axis=0)  # (3,)
    scale = results.gradient_scale(runs["summed"])
    assert [scale[t] for t in results.TASKS] == pytest.approx(by_hand.tolist(), rel=1e-5)
    assert f"SST {scale['sst']:.2f}, Quora {scale['para']:.2f}, STS {scale['sts']:.2f}" in text
    assert (tmp_path / "results" / "smoke-telemetry-pcgrad-vs-summed.png").is_file()

    # a second call reads the finished runs back instead of training again, and rewrites the same section once
    capsys.readouterr()
    assert results.main(argv) == 0
    assert "seed 11711 ..." not in capsys.readouterr().out
    assert doc.read_text().count("<!-- results:begin smoke -->") == 1

    # a saved run whose configuration differs from what the protocol now asks for is run again, not reused
    saved_run = tmp_path / "runs" / "smoke" / "pcgrad" / "seed1" / "result.json"
    record = json.loads(saved_run.read_text())
    record["train_config"]["lr"] = 1.0
    saved_run.write_text(json.dumps(record))
    assert results.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("used another configuration") == 1 and "3 + PCGrad, seed 1 ..." in out
    assert json.loads(saved_run.read_text())["train_config"]["lr"] == results.PROTOCOLS["smoke"].lr


def test_reading_flags_only_differences_beyond_the_noise():
    def row(values):
        import numpy as np
        v = np.array(values)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": len(v),
                "values": list(values)}
    keys = ("sst", "para", "sts", "overall")
    table = {"configs": {"summed": {k: row([0.50, 0.51, 0.49]) for k in keys},
                         "pcgrad": {k: row([0.50, 0.52, 0.49]) for k in keys},
                         "llrd": {k: row([0.60]) for k in keys}, "frozen": {k: row([0.505]) for k in keys},
                         "best": {k: row([0.60, 0.61, 0.60]) for k in keys}},
             "best": None}
    lines = results.reading(table, results.PROTOCOLS["compact-cpu"])
    assert any("none is." in line for line in lines)
    assert any(line.startswith("5.") and "larger than twice" in line for line in lines)
    assert any(line.startswith("1.") and "within twice" in line for line in lines)
    # a configuration with several seeds gets its own Welch test against 3, metric by metric
    (best,) = [line for line in lines if line.startswith("8.")]
    assert "Per metric (3 vs 3 seeds): SST acc +0.103 (Welch p < 0.005)" in best
    assert not any(line.startswith("5.") and "Welch" in line for line in lines)


def test_a_bad_data_folder_names_where_it_came_from(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("MTKIT_DATA", str(empty))
    assert results.main(["--protocol", "smoke", "--out", str(tmp_path / "runs")]) == 2
    out = capsys.readouterr().out
    assert str(empty) in out and "$MTKIT_DATA" in out and "mtkit data fetch" in out
    monkeypatch.delenv("MTKIT_DATA")
    assert results.main(["--protocol", "smoke", "--data-dir", str(empty), "--out", str(tmp_path / "runs")]) == 2
    assert "given as data_dir" in capsys.readouterr().out


def test_the_baseline_rows_say_how_the_probe_was_built_and_tuned():
    """The linear-probe row names its pooling, normalisation and tuning, and the note gives what was chosen."""
    protocol = results.PROTOCOLS["compact-cpu"]
    scores = {"sst": {"linear_probe": 0.42, "linear_probe_C": 1.0, "linear_probe_standardized": False},
              "para": {"zero_shot": 0.78, "zero_shot_dev_threshold": 0.78, "linear_probe": 0.82,
                       "linear_probe_C": 0.1, "linear_probe_standardized": False},
              "sts": {"zero_shot": 0.84, "linear_probe": 0.85, "linear_probe_alpha": 100.0}}
    table = {"configs": {}, "best": None, "baselines": {"scores": scores, "wall_s": 60.0}}
    meta = {"command": "python -m bench.results", "commit": "abc", "date": "today", "machine": "here"}
    text = results.render_markdown(table, {}, protocol, meta, [])
    assert "| 1. linear probe on frozen mean-pooled, L2-normalised vectors, regularisation tuned on train " in text
    assert "| 0.420 | 0.820 | 0.850 |" in text
    assert "SST C = 1, Quora C = 0.1, STS ridge alpha = 100" in text and "dev never used" in text
    # saved baselines from an older probe are not reused
    assert results.baseline_settings(protocol, None)["probe"].startswith("mean-pooled, L2-normalised")


# ------------------------------------------------------------------------------------------------ devices and data
def test_protocols_name_their_device():
    assert results.PROTOCOLS["compact-cpu"].device == "cpu" and results.PROTOCOLS["full-gpu"].device == "cuda"
    assert results.PROTOCOLS["smoke"].device is None  # the tests' protocol runs anywhere
    results.check_device(results.PROTOCOLS["compact-cpu"], "cpu")
    results.check_device(results.PROTOCOLS["full-gpu"], "cuda:1")
    results.check_device(results.PROTOCOLS["smoke"], "cuda")


def test_the_cpu_protocol_refuses_a_gpu_and_leaves_the_cpu_table_alone(tmp_path, monkeypatch, capsys):
    """`make results` on a GPU machine: --device auto picks CUDA, and the CPU protocol refuses before any run."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a faked GPU")
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\n<!-- results:begin compact-cpu -->\nthe CPU table\n<!-- results:end compact-cpu -->\n")
    before = doc.read_text()
    code = results.main(["--protocol", "compact-cpu", "--data-dir", "demo", "--configs", "summed", "--out",
                         str(tmp_path / "runs"), "--doc", str(doc)])
    err = capsys.readouterr().err
    assert code == 2
    assert "compact-cpu is the CPU protocol" in err and "make results-gpu" in err and "--protocol full-gpu" in err
    assert "--device cpu" in err
    assert doc.read_text() == before and not (tmp_path / "runs").exists()


def test_the_gpu_protocol_refuses_a_cpu(tmp_path, monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = results.main(["--protocol", "full-gpu", "--device", "cuda", "--data-dir", "demo", "--out",
                         str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "full-gpu is meant for cuda, but this run would use cpu" in err and "make results" in err
    assert not (tmp_path / "runs").exists()


def test_the_table_records_the_data_files_hashes_and_how_to_make_them(tmp_path, monkeypatch):
    """The section names each data file's SHA-256 and the fetch + split commands; a change of data reruns."""
    import hashlib

    from mtkit.data.demo import write_demo_data
    from mtkit.data.split import split_file
    data = write_demo_data(tmp_path / "demo", seed=0, sizes={"train": 40, "dev": 20, "test": 4})
    (data / "public").mkdir()
    (data / "quora-dev.csv").rename(data / "public" / "quora-dev.csv")
    (data / "quora-train.csv").unlink()
    split_file(data / "public" / "quora-dev.csv", [("quora-train.csv", "12"), ("quora-dev.csv", "rest")], data,
               seed=224)
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n")
    argv = ["--protocol", "smoke", "--data-dir", str(data), "--configs", "frozen", "--out", str(tmp_path / "runs"),
            "--doc", str(doc)]
    assert results.main(argv) == 0
    text = doc.read_text()
    saved = json.loads((tmp_path / "runs" / "smoke" / "results.json").read_text())
    hashes = saved["meta"]["data_sha256"]
    assert set(hashes) == set(results.DATA_FILES)
    for name, sha in hashes.items():
        assert sha == hashlib.sha256((data / name).read_bytes()).hexdigest()
        assert f"`{name}` {sha[:16]}" in text
    assert "mtkit data split" in saved["meta"]["data_recipe"][0] and "--seed 224" in saved["meta"]["data_recipe"][0]
    assert all(f"`{command}`" in text for command in results.RECREATE_DATA)
    assert saved["runs"]["frozen"][0]["data_sha256"] == hashes
    # other data under the same folder name: the saved run is not reused (the rerun itself is not needed here)
    with open(data / "ids-sst-dev.csv", "a", encoding="utf-8") as handle:
        handle.write("999\textra-row\t an extra sentence .\t2\n")
    reruns = []
    monkeypatch.setattr(results, "run_one", lambda config, tc, seed, out, data_sha256=None: reruns.append(
        data_sha256) or {**saved["runs"]["frozen"][0], "data_sha256": data_sha256})
    assert results.main(argv) == 0
    assert reruns == [results.data_hashes(data)] and reruns[0]["ids-sst-dev.csv"] != hashes["ids-sst-dev.csv"]


def test_a_saved_run_is_matched_by_its_config_and_data_not_by_the_folder_path():
    config = results.train_config(results.CONFIGS["summed"], results.PROTOCOLS["smoke"], 1, "../data", "/tmp/x",
                                  "cpu", None).to_dict()
    moved = {**config, "data_dir": "/somewhere/else/data"}
    assert results.same_config(config, moved)  # the same files under another path: the data hashes decide
    assert not results.same_config(config, {**moved, "lr": 1.0}) and not results.same_config(None, config)


def test_the_recreate_commands_are_valid_commands():
    """RECREATE_DATA's commands parse with the real parsers (their options exist), and carve as the README says."""
    import shlex

    from mtkit.data import fetch, split
    fetch_args = fetch.build_parser().parse_args(shlex.split(results.RECREATE_DATA[0])[3:])
    split_args = split.build_parser().parse_args(shlex.split(results.RECREATE_DATA[1])[3:])
    assert fetch_args.dest == "data" and split_args.source == "data/quora-dev.csv"
    assert split_args.seed == 224 and split_args.into == ["quora-train.csv=16000", "quora-dev.csv=rest"]
    assert split.plan_sizes([split.parse_part(p) for p in split_args.into], 20214) == [16000, 4214]
