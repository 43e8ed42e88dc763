"""Trainer: accumulation equivalence, model selection, the non-finite guard, two-stage, budgets, history."""
from __future__ import annotations

import pytest
import torch

from mtkit.train.checkpoint import read_checkpoint
from mtkit.train.config import ConfigError, TrainConfig
from mtkit.train.history import History
from mtkit.train.trainer import NonFiniteLossError, StopTraining, Trainer, overall_of, select


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 48, "dev": 24, "test": 8})


def config(demo, tmp_path, **changes) -> TrainConfig:
    base = dict(encoder="tiny", data_dir=str(demo), output_dir=str(tmp_path / "run"), train_limit=16, dev_limit=16,
                batch_size=8, epochs=1, lr=1e-3, dropout=0.0, encoder_dropout=0.0, progress=False,
                write_predictions=False, seed=1, telemetry_every=0)
    return TrainConfig(**(base | changes))


# ------------------------------------------------------------------------------------------------ selection
def test_select_rules_by_hand():
    first = {"overall": 0.50, "scores": {"sst": 0.5, "para": 0.5}}
    trade = {"overall": 0.525, "scores": {"sst": 0.6, "para": 0.45}}  # overall up, para down
    both = {"overall": 0.55, "scores": {"sst": 0.55, "para": 0.55}}
    assert select("overall", first, None) and select("all-improve", first, None)
    assert select("overall", trade, first) and not select("all-improve", trade, first)
    assert select("all-improve", both, first)
    assert not select("overall", first, first)  # a tie is not an improvement
    metrics = {"sst": "accuracy", "para": "accuracy", "sts": "pearson"}
    assert overall_of({"sst": 0.5, "para": 0.8, "sts": 0.6}, metrics) == pytest.approx((0.5 + 0.8 + 0.8) / 3)


@pytest.mark.parametrize("rule, best_step", [("overall", 2), ("all-improve", 3)])
def test_selection_keeps_the_right_checkpoint(demo, tmp_path, rule, best_step):
    """Scripted dev scores: step 2 trades para for sst (best overall); step 3 improves both tasks over step 1."""
    scripted = iter([{"sst": 0.5, "para": 0.5}, {"sst": 0.7, "para": 0.45}, {"sst": 0.55, "para": 0.55},
                     {"sst": 0.1, "para": 0.1}])
    trainer = Trainer(config(demo, tmp_path, tasks=["sst", "para"], selection=rule, eval_every=1),
                      verbose=False)
    weights = {}

    def fake_evaluate(split="dev"):
        scores = next(scripted)
        weights[trainer.step] = trainer.model.heads["sst"].classifier.weight.detach().clone()
        return {"metrics": {t: {"accuracy": s, "score": s} for t, s in scores.items()}, "scores": scores,
                "overall": overall_of(scores, {"sst": "accuracy", "para": "accuracy"}), "eval_seconds": 0.0}

    trainer.evaluate = fake_evaluate
    result = trainer.fit()
    assert result.steps == 4
    assert result.best["step"] == best_step
    assert [r["selected"] for r in result.history.evals] == ([True, True, False, False] if rule == "overall"
                                                           else [True, False, True, False])
    best = read_checkpoint(result.best_checkpoint)
    assert best.step == best_step
    assert torch.equal(best.model["heads.sst.classifier.weight"], weights[best_step])


# ------------------------------------------------------------------------------------------------ accumulation
def test_accumulating_two_half_batches_equals_one_full_batch(demo, tmp_path):
    """accum 2 x batch 4 == accum 1 x batch 8: same gradients (norms logged before clipping), same weights."""
    common = dict(tasks=["sst"], bucketing=False, max_grad_norm=1e9, train_limit=32, lr=1e-2)
    a = Trainer(config(demo, tmp_path / "a", batch_size=4, grad_accum_steps=2, **common), verbose=False).fit()
    b = Trainer(config(demo, tmp_path / "b", batch_size=8, grad_accum_steps=1, **common), verbose=False).fit()
    assert a.steps == b.steps == 4
    for x, y in zip(a.history.steps, b.history.steps):
        assert x["loss"]["sst"] == pytest.approx(y["loss"]["sst"], rel=1e-5)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)  # 2x if the loss were not divided
        assert x["tokens"] == y["tokens"]
    wa = read_checkpoint(a.last_checkpoint).model
    wb = read_checkpoint(b.last_checkpoint).model
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=2e-5, rtol=1e-4, msg=name)


# ------------------------------------------------------------------------------------------------ non-finite
def _poison(trainer, task: str, call: int):
    """Make the ``call``-th loss of ``task`` NaN."""
    original, seen = trainer.model.loss, {"n": 0, "ids": None}

    def loss(name, batch):
        value = original(name, batch)
        if name == task:
            seen["n"] += 1
            if seen["n"] == call:
                seen["ids"] = list(batch["ids"])
                return value * float("nan")
        return value

    trainer.model.loss = loss
    return seen


def test_nonfinite_loss_raises_naming_step_task_and_batch_ids(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path, tasks=["sst", "para"], schedule="round-robin"), verbose=False)
    seen = _poison(trainer, "para", call=2)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    err = info.value
    assert (err.step, err.task, err.ids) == (4, "para", seen["ids"])  # round-robin: sst, para, sst, para
    message = str(err)
    assert "step 4" in message and "task 'para'" in message and seen["ids"][0] in message


def test_nonfinite_loss_skip_mode_counts_and_continues(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path, tasks=["sst", "para"], nonfinite="skip"), verbose=False)
    _poison(trainer, "sst", call=1)
    with pytest.warns(UserWarning, match="step 1 skipped"):
        result = trainer.fit()
    assert result.skipped_steps == 1 and result.steps == 4
    skipped = [r for r in result.history.records if r.get("event") == "skipped_step"]
    assert len(skipped) == 1 and skipped[0]["task"] == "sst" and skipped[0]["step"] == 1
    assert [r["step"] for r in result.history.steps] == [2, 3, 4]


# ------------------------------------------------------------------------------------------------ fine-tune modes
def test_two_stage_freezes_the_encoder_then_trains_everything(demo, tmp_path):
    cfg = config(demo, tmp_path, tasks=["sst"], epochs=2, fine_tune_mode="two-stage",
                 fine_tune_options={"stage1_epochs": 1, "stage1_lr": 1e-2}, lr=1e-3)
    trainer = Trainer(cfg, verbose=False)
    start = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    seen = []

    def watch(event, record, t):
        if event == "step":
            seen.append((t.epoch, any(p.requires_grad for p in t.model.encoder.parameters()),
                         t.optimizer.param_groups[0]["lr"]))
        if event == "epoch" and record["epoch"] == 0:
            for name, value in t.model.encoder.state_dict().items():
                assert torch.equal(value, start[name]), f"{name} moved during stage 1"

    trainer.callbacks.append(watch)
    result = trainer.fit()
    assert [s[:2] for s in seen] == [(0, False), (0, False), (1, True), (1, True)]
    assert seen[0][2] == pytest.approx(1e-2) and seen[-1][2] == pytest.approx(1e-3)
    stages = [r for r in result.history.records if r.get("event") == "stage"]
    assert [(r["mode"], r["epoch"]) for r in stages] == [("last-linear-layer", 0), ("full-model", 1)]
    moved = any(not torch.equal(v, start[k]) for k, v in trainer.model.encoder.state_dict().items())
    assert moved


def test_last_linear_layer_mode_never_moves_the_encoder(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path, tasks=["sst"], fine_tune_mode="last-linear-layer", lr=1e-2),
                      verbose=False)
    start = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    trainer.fit()
    assert all(torch.equal(v, start[k]) for k, v in trainer.model.encoder.state_dict().items())


# ------------------------------------------------------------------------------------------------ budgets, history
def test_max_steps_stops_and_resume_finishes_with_the_same_weights(demo, tmp_path):
    """A notebook budget: stop after 3 steps, resume without the budget; weights as in one uninterrupted run."""
    common = dict(tasks=["sst", "sts"], epochs=2, encoder_dropout=0.1, dropout=0.1, schedule="round-robin")
    whole = Trainer(config(demo, tmp_path / "whole", **common), verbose=False).fit()
    part = Trainer(config(demo, tmp_path / "part", max_steps=3, **common), verbose=False).fit()
    assert part.steps == 3 and not part.finished
    rest = Trainer(config(demo, tmp_path / "part", **common), verbose=False).fit(resume=True)
    assert rest.finished and rest.steps == whole.steps == 8
    wa, wb = read_checkpoint(whole.last_checkpoint).model, read_checkpoint(rest.last_checkpoint).model
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def test_history_has_steps_evals_and_throughput(demo, tmp_path):
    result = Trainer(config(demo, tmp_path, tasks=["sst", "para", "sts"], eval_every=2, schedule="equal"),
                     verbose=False).fit()
    history = History.load(result.history_path)
    assert len(history.steps) == result.steps == 2  # equal: one batch of every task per step
    assert all(set(r["loss"]) == {"sst", "para", "sts"} for r in history.steps)
    assert all(r["tokens"] > 0 and r["tokens_per_s"] > 0 and r["step_seconds"] > 0 for r in history.steps)
    assert [r["step"] for r in history.evals] == [2]
    frame = history.to_frame("step")
    assert {"loss.sst", "loss.sts", "lr", "grad_norm", "tokens_per_s", "time"} <= set(frame.columns)
    curves = history.long_frame()
    assert set(curves["split"]) == {"train", "dev"} and {"accuracy", "pearson", "loss"} <= set(curves["metric"])
    ev = history.evals[0]
    assert ev["overall"] == pytest.approx((ev["scores"]["sst"] + ev["scores"]["para"] + (ev["scores"]["sts"] + 1) / 2)
                                          / 3)


def test_callback_can_stop_training_and_the_run_resumes_where_it_stopped(demo, tmp_path):
    def stop(event, record, trainer):
        if event == "step" and record.get("step") == 1:
            raise StopTraining()

    cfg = config(demo, tmp_path / "stopped", tasks=["sst"], epochs=3, encoder_dropout=0.1)
    result = Trainer(cfg, callbacks=[stop], verbose=False).fit()
    assert result.steps == 1 and not result.finished and result.best is not None
    rest = Trainer(cfg, verbose=False).fit(resume=True)
    whole = Trainer(cfg.replace(output_dir=str(tmp_path / "whole")), verbose=False).fit()
    assert rest.steps == whole.steps == 6 and [r["step"] for r in rest.history.steps] == list(range(1, 7))
    wa, wb = read_checkpoint(whole.last_checkpoint).model, read_checkpoint(rest.last_checkpoint).model
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6


def test_single_task_custom_dataset_writes_predictions(demo, tmp_path):
    """A custom classification task (the demo sentiment files under another name) trains on its own."""
    tasks = {"mysent": {"kind": "classification", "train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv",
                        "test": "ids-sst-test-student.csv", "pooling": "cls"}}
    result = Trainer(config(demo, tmp_path, tasks=tasks, write_predictions=True), verbose=False).fit()
    assert set(result.predictions) == {"mysent-dev", "mysent-test"}
    lines = result.predictions["mysent-test"].read_text().splitlines()
    assert lines[0] == "id \t Predicted_Sentiment " and len(lines) == 1 + 8
    assert all(line.split(" , ")[1].strip() in {"0", "1", "2", "3", "4"} for line in lines[1:])


def test_autocast_is_off_on_cpu():
    from mtkit.util.device import autocast as _autocast
    with _autocast(torch.device("cpu"), True):
        assert not torch.is_autocast_enabled()


def test_batch_order_is_a_function_of_seed_task_epoch_and_cycle(demo, tmp_path):
    """A small task re-sampled by the 'equal' schedule: each pass uses every example once, in a new order."""
    trainer = Trainer(config(demo, tmp_path, tasks={"sst": {"train_limit": 8}, "para": {"train_limit": 24}},
                             schedule="equal"), verbose=False)
    assert trainer.batches_per_pass() == {"sst": 1, "para": 3}
    assert trainer.epoch_plan(0) == [["sst", "para"]] * 3
    passes = [trainer._batch("sst", 0, k)["ids"] for k in range(3)]
    assert all(sorted(p) == sorted(passes[0]) for p in passes) and len(set(map(tuple, passes))) == 3
    para = [i for k in range(3) for i in trainer._batch("para", 0, k)["ids"]]
    assert len(para) == len(set(para)) == 24
    again = Trainer(config(demo, tmp_path / "again", tasks={"sst": {"train_limit": 8}, "para": {"train_limit": 24}},
                           schedule="equal"), verbose=False)
    assert [again._batch("sst", 0, k)["ids"] for k in range(3)] == passes
    assert again._batch("sst", 1, 0)["ids"] != passes[0]  # a new epoch, a new order


def test_nonfinite_skip_with_pcgrad_discards_the_captured_gradients(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path, tasks=["sst", "para"], schedule="equal", surgery="pcgrad",
                             nonfinite="skip"), verbose=False)
    _poison(trainer, "para", call=1)  # the first step: sst captured, then para's loss is NaN
    with pytest.warns(UserWarning, match="step 1 skipped"):
        result = trainer.fit()
    assert (result.steps, result.skipped_steps, trainer.surgery.steps_applied) == (2, 1, 1)
    assert not any(trainer.surgery.buffers.captured)


def test_scheduler_steps_fit_the_lr_schedule_to_a_budget(demo, tmp_path):
    """max_steps alone pauses a run (the lr schedule still spans every epoch); with scheduler_steps = max_steps
    the linear warm-up and decay happen inside the budget and the last step's lr is the schedule's end."""
    common = dict(tasks=["sst", "sts"], epochs=50, schedule="round-robin", scheduler="linear", warmup_ratio=0.25,
                  max_steps=8)
    paused = Trainer(config(demo, tmp_path / "paused", **common), verbose=False).fit()
    fitted = Trainer(config(demo, tmp_path / "fitted", scheduler_steps=8, **common), verbose=False).fit()
    lr_paused = [r["lr"] for r in paused.history.steps]
    lr_fitted = [r["lr"] for r in fitted.history.steps]
    assert len(lr_fitted) == len(lr_paused) == 8
    # warm-up of 2 steps (25 % of 8), then linear decay to 0 at step 8: lr after step k is 1e-3 * factor(k)
    expected = [1e-3 * (k / 2 if k < 2 else (8 - k) / 6) for k in range(1, 9)]
    assert max(abs(a - b) for a, b in zip(lr_fitted, expected)) < 1e-12, lr_fitted
    # paused: 50 epochs x 4 steps planned, warm-up over 50 of them, so the budget ends mid-warm-up
    assert lr_paused == pytest.approx([1e-3 * k / 50 for k in range(1, 9)], abs=1e-12)
    with pytest.raises(ConfigError, match="scheduler_steps"):
        config(demo, tmp_path, scheduler_steps=0)
