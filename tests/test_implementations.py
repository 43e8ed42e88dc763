"""A learner's implementations train the model: parity with mtkit, refusal of a wrong piece, and the hooks.

The worked answers (solutions/) compute what mtkit computes, so training two steps with them swapped in must
give mtkit's losses; a copy with the attention's 1/sqrt(d) removed must be refused before anything trains,
with the check's message.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mtkit.exercises import generate, load_module
from mtkit.exercises import implementations as impl
from mtkit.train.config import ConfigError, TrainConfig
from mtkit.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SOL = {name: load_module(name, "solutions") for name in impl.COMPONENTS}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mtkit.data.demo import write_demo_data
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0, sizes={"train": 48, "dev": 24, "test": 8})


def config(demo, out, **changes) -> TrainConfig:
    base = dict(encoder="tiny", data_dir=str(demo), output_dir=str(out), tasks=["sst", "para", "sts"],
                schedule="equal", surgery="pcgrad", train_limit=24, dev_limit=8, batch_size=8, epochs=1, max_steps=2,
                lr=1e-3, weight_decay=0.01, encoder_dropout=0.0, progress=False, write_predictions=False, seed=5,
                telemetry_every=1)
    return TrainConfig(**(base | changes))


def step_losses(trainer: Trainer) -> np.ndarray:
    steps = trainer.history.to_frame("step")
    return steps[sorted(c for c in steps.columns if c.startswith("loss."))].to_numpy()


def copy_of_solutions(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for path in (REPO / "solutions").glob("*.py"):
        shutil.copy(path, folder / path.name)
    return folder


# ------------------------------------------------------------------------------------------------ acceptance
def test_two_steps_with_the_worked_answers_give_mtkits_losses(demo, tmp_path):
    """Every piece swapped (attention, layer, AdamW, mean pooling, PCGrad), three tasks, two steps."""
    ours = Trainer(config(demo, tmp_path / "mtkit"), verbose=False)
    ours.fit()
    theirs = Trainer(config(demo, tmp_path / "learner", implementations="solutions"), verbose=False)
    theirs.fit()
    assert [p.component for p in theirs.implementations.used] == list(impl.COMPONENTS)
    a, b = step_losses(ours), step_losses(theirs)
    assert a.shape == b.shape == (2, 3)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    # the weights after two steps agree too (the second step's losses already depend on the first update)
    for (name, p), q in zip(ours.model.named_parameters(), theirs.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)


def test_a_broken_attention_is_refused_before_training_with_the_checks_message(demo, tmp_path):
    broken = copy_of_solutions(tmp_path / "broken")
    source = (broken / "attention.py").read_text()
    assert " / math.sqrt(d_head)" in source
    (broken / "attention.py").write_text(source.replace(" / math.sqrt(d_head)", ""))
    out = tmp_path / "run"
    with pytest.raises(impl.ImplementationError) as info:
        Trainer(config(demo, out, implementations=str(broken)), verbose=False)
    message = str(info.value)
    assert "refusing to train" in message and f"{broken}/attention.py" in message
    assert "check_attention" in message and "classic mistake: no 1/sqrt(D) scaling" in message
    assert not out.exists(), "nothing may be written before the pieces pass their checks"


def test_stubs_are_refused_as_not_written_yet_naming_each_file(demo, tmp_path):
    stubs = tmp_path / "exercises"
    generate(REPO / "solutions", stubs)
    with pytest.raises(impl.ImplementationError) as info:
        Trainer(config(demo, tmp_path / "run", implementations=str(stubs)), verbose=False)
    message = str(info.value)
    for name in impl.COMPONENTS:
        assert f"not written yet: open {stubs}/{name}.py" in message


# ------------------------------------------------------------------------------------------------ the pieces run
SPY = '''

CALLS = 0
_checked_{fn} = {fn}


def {fn}(*args, **kwargs):
    global CALLS
    CALLS += 1
    return _checked_{fn}(*args, **kwargs)
'''


def test_each_swapped_piece_is_called_during_training(demo, tmp_path):
    spies = copy_of_solutions(tmp_path / "spies")
    for component in impl.COMPONENTS.values():
        path = spies / f"{component.name}.py"
        path.write_text(path.read_text() + SPY.format(fn=component.function))
    trainer = Trainer(config(demo, tmp_path / "run", implementations=str(spies)), verbose=False)
    hooks = trainer.implementations.hooks
    before = {name: getattr(hooks, c.hook).__globals__["CALLS"] for name, c in impl.COMPONENTS.items()}
    trainer.fit()
    after = {name: getattr(hooks, c.hook).__globals__["CALLS"] for name, c in impl.COMPONENTS.items()}
    called = {name: after[name] - before[name] for name in after}
    assert all(n > 0 for n in called.values()), called
    # AdamW: once per parameter with a gradient, per step; PCGrad: once per step; layers: per layer and forward
    assert called["pcgrad"] == 2
    assert called["attention"] == called["transformer_layer"]


def test_pieces_the_run_does_not_use_are_neither_checked_nor_swapped(demo, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("attention", "transformer_layer", "adamw"):
        shutil.copy(REPO / "solutions" / f"{name}.py", partial / f"{name}.py")
    cfg = config(demo, tmp_path / "run", tasks=["sst"], surgery="none", pooling="cls", implementations=str(partial))
    trainer = Trainer(cfg, verbose=False)
    pieces = {p.component: p for p in trainer.implementations.pieces}
    assert pieces["pcgrad"].source is None and "surgery is 'none'" in pieces["pcgrad"].message
    assert pieces["mean_pooling"].source is None and "no task pools with 'mean'" in pieces["mean_pooling"].message
    assert trainer.model.pooling_functions == {}
    trainer.fit()
    assert trainer.surgery is None or trainer.surgery.pcgrad_fn is None
    torch_adamw = config(demo, tmp_path / "r2", tasks=["sst"], optimizer="torch-adamw", implementations=str(partial),
                         surgery="none", pooling="cls")
    assert "optimizer is 'torch-adamw'" in str(impl.load(torch_adamw, strict=True))


def test_a_mapping_swaps_only_the_pieces_it_names(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path / "run", implementations={"adamw": "solutions"}), verbose=False)
    assert [p.component for p in trainer.implementations.used] == ["adamw"]
    assert trainer.model.encoder.implementations.empty and trainer.model.pooling_functions == {}
    trainer.fit()
    assert trainer.optimizer.step_fn is not None and trainer.surgery.pcgrad_fn is None


def test_choose_takes_the_learners_piece_where_it_passes_and_the_worked_answer_elsewhere(demo, tmp_path, capsys):
    mine = tmp_path / "exercises"
    generate(REPO / "solutions", mine)
    shutil.copy(REPO / "solutions" / "attention.py", mine / "attention.py")  # "written": the worked answer
    adamw = (mine / "adamw.py").read_text()
    stub = "# YOUR CODE HERE\n    raise NotImplementedError()"
    assert stub in adamw
    (mine / "adamw.py").write_text(adamw.replace(stub, "return None"))  # written, but it does nothing
    chosen = impl.choose(str(mine), config(demo, tmp_path / "run"))
    pieces = {p.component: p for p in chosen.pieces}
    assert pieces["attention"].source == str(mine) and pieces["attention"].fallback_from is None
    assert pieces["transformer_layer"].source == "solutions"
    assert pieces["transformer_layer"].message == "not written yet"
    assert pieces["adamw"].source == "solutions" and pieces["adamw"].message == "it fails its check"
    assert chosen.whose(str(mine)) == "partly yours" and chosen.ok
    assert "instead of" in capsys.readouterr().out
    trainer = Trainer(config(demo, tmp_path / "run", implementations=chosen.sources), verbose=False)
    assert trainer.implementations.sources == chosen.sources
    solutions = impl.choose("solutions", config(demo, tmp_path / "x"), verbose=False)
    assert solutions.whose("solutions") == "the worked answers"
    assert all(p.source == "solutions" and p.fallback_from is None for p in solutions.used)


@pytest.mark.parametrize("value, words", [
    ({"attn": "exercises"}, "'attn' is not a piece"),
    (3, "expected 'exercises', 'solutions', a folder"),
    ({"attention": ""}, "attention: expected"),
])
def test_a_bad_implementations_value_is_a_config_error(value, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(encoder="tiny", implementations=value)


def test_the_config_round_trips_with_implementations():
    config = TrainConfig(encoder="tiny", implementations={"attention": "exercises"})
    assert TrainConfig.from_dict(config.to_dict()).implementations == {"attention": "exercises"}
    assert TrainConfig(encoder="tiny", implementations=REPO / "solutions").implementations == str(REPO / "solutions")


# ------------------------------------------------------------------------------------------------ the hooks
def _tiny_encoder():
    from mtkit.model.bert import BertModel
    from mtkit.model.bert_config import BertConfig
    torch.manual_seed(0)
    return BertModel(BertConfig.tiny()).eval()


def test_encoder_hooks_compute_what_minbert_computes_and_the_default_path_is_untouched():
    encoder = _tiny_encoder()
    assert encoder.implementations.empty
    ids = torch.randint(5, 100, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    with torch.no_grad():
        reference = encoder(ids, attention_mask=mask)
        encoder.set_implementations(attention=SOL["attention"].attention)
        with_attention = encoder(ids, attention_mask=mask, output_attentions=True)
        encoder.set_implementations(attention=SOL["attention"].attention, layer=SOL["transformer_layer"].layer_forward,
                                    embeddings=lambda emb, input_ids, token_type_ids: emb(input_ids, token_type_ids))
        with_all = encoder(ids, attention_mask=mask)
        with pytest.raises(ValueError, match="output_attentions needs minBERT's own layers"):
            encoder(ids, attention_mask=mask, output_attentions=True)
        encoder.set_implementations()
        again = encoder(ids, attention_mask=mask)
    for out in (with_attention, with_all):
        torch.testing.assert_close(out.last_hidden_state, reference.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert len(with_attention.attentions) == encoder.config.num_hidden_layers
    assert encoder.implementations.empty and torch.equal(again.last_hidden_state, reference.last_hidden_state)


def test_adamw_with_a_step_function_is_mtkits_adamw_and_keeps_its_state_dict():
    from mtkit.optim import AdamW
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    grads = [torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(4)]
    results = []
    for step_fn in (None, SOL["adamw"].adamw_step):
        p = torch.nn.Parameter(start.clone())
        opt = AdamW([p], lr=1e-2, weight_decay=0.1, step_fn=step_fn)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results.append((p.detach().clone(), opt.state_dict()))
    (p_ref, state_ref), (p_fn, state_fn) = results
    torch.testing.assert_close(p_fn, p_ref, rtol=0, atol=1e-15)
    assert state_fn["param_groups"] == state_ref["param_groups"]  # no function in the state dict
    with pytest.raises(TypeError, match="step_fn must be a function"):
        AdamW([torch.nn.Parameter(start.clone())], step_fn="adamw_step")


@pytest.mark.parametrize("method, reduction", [("pcgrad", "sum"), ("pcgrad", "mean"), ("main_aux", "sum")])
def test_surgery_with_the_learners_pcgrad_writes_the_same_update(method, reduction):
    from mtkit.surgery import GradientSurgery
    encoder = _tiny_encoder()
    shared = list(encoder.named_parameters())
    gen = torch.Generator().manual_seed(1)
    task_grads = [[torch.randn(p.shape, generator=gen) for _, p in shared] for _ in range(3)]
    task_grads[1] = [-0.7 * a + 0.3 * b for a, b in zip(task_grads[0], task_grads[1])]  # a conflict
    updates = []
    for fn in (None, SOL["pcgrad"].pcgrad):
        surgery = GradientSurgery(shared, ["a", "b", "c"], method=method, main_task="a", reduction=reduction,
                                  telemetry_every=0, generator=torch.Generator().manual_seed(7))
        surgery.pcgrad_fn = fn
        for task, grads in zip("abc", task_grads):
            for (_, p), g in zip(shared, grads):
                p.grad = g.clone()
            surgery.capture(task)
        info = surgery.step(1)
        assert info.applied
        updates.append(torch.cat([p.grad.flatten() for _, p in shared]))
    # float32 dot products over 2 million entries (the learner's loop) against float64 Gram matrices (mtkit's)
    assert float((updates[1] - updates[0]).norm() / updates[0].norm()) < 1e-5
    assert not torch.allclose(updates[0], torch.cat([sum(g).flatten() for g in zip(*task_grads)]))


def test_a_learners_pcgrad_with_a_wrong_shape_gets_a_clear_error():
    from mtkit.surgery import GradientSurgery
    encoder = _tiny_encoder()
    shared = list(encoder.named_parameters())
    surgery = GradientSurgery(shared, ["a", "b"], telemetry_every=0)
    surgery.pcgrad_fn = lambda grads, orders: grads  # (K, P), not (P,)
    for task in "ab":
        for _, p in shared:
            p.grad = torch.ones_like(p)
        surgery.capture(task)
    with pytest.raises(ValueError, match="expected one flat update"):
        surgery.step(1)


def test_mtkit_train_refuses_a_broken_piece_with_the_checks_message(tmp_path, capsys):
    from mtkit import cli
    broken = copy_of_solutions(tmp_path / "broken")
    source = (broken / "mean_pooling.py").read_text()
    (broken / "mean_pooling.py").write_text(source.replace(".clamp(min=1.0)", ""))  # a row of padding: 0 / 0
    code = cli.main(["train", "--config", str(REPO / "examples" / "tiny_demo.yaml"), "--output-dir",
                     str(tmp_path / "run"), "--set", f"implementations={broken}"])
    err = capsys.readouterr().err
    assert code == 1 and "refusing to train" in err and "check_mean_pool" in err
    assert "a row with no real token at all" in err and not (tmp_path / "run").exists()
