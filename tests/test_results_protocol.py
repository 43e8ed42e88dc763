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
    for name, config_runs in runs.items():
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
