"""GradientSurgery inside a real training step: a tiny minBERT, three task heads, one backward per task.

Every expected value is computed independently here, with torch.autograd.grad on each task's loss and the
pure function ``pcgrad``."""
from __future__ import annotations

import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.surgery import GradientSurgery, main_aux_pcgrad, pcgrad

TASKS = ["sst", "para", "sts"]
B, T, V = 4, 6, 50


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyMultitask(torch.nn.Module):
    """One encoder and three heads. "sst" reads the pooler (so only it gives the pooler a gradient); "para" and
    "sts" read the masked mean and, on the same batch, regress to opposite targets: their encoder gradients
    conflict for sure."""

    def __init__(self, seed: int = 0, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(seed)
        config = dataclasses.replace(BertConfig.tiny(vocab_size=V), hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
        self.encoder = BertModel(config)
        H = config.hidden_size
        self.heads = torch.nn.ModuleDict({"sst": torch.nn.Linear(H, 5), "para": torch.nn.Linear(H, 1),
                                          "sts": torch.nn.Linear(H, 1)})
        self.to(dtype)

    def loss(self, task: str, batch: dict) -> torch.Tensor:
        out = self.encoder(batch["input_ids"])
        if task == "sst":
            return F.cross_entropy(self.heads["sst"](out.pooler_output).float(), batch["labels"])
        pooled = out.last_hidden_state.mean(dim=1)  # (B, H)
        target = 1.0 if task == "para" else -1.0
        return (self.heads[task](pooled).float().squeeze(-1) - target).pow(2).mean()


def make_batches(seed: int = 0) -> dict[str, dict]:
    gen = torch.Generator().manual_seed(seed)
    ids = {t: torch.randint(1, V, (B, T), generator=gen) for t in TASKS}
    ids["sts"] = ids["para"]  # same sentences, opposite targets: a guaranteed conflict
    return {t: {"input_ids": ids[t], "labels": torch.randint(0, 5, (B,), generator=gen)} for t in TASKS}


def shared(model: TinyMultitask) -> list[tuple[str, torch.nn.Parameter]]:
    return [("encoder." + n, p) for n, p in model.encoder.named_parameters()]


def per_task_grads(model: TinyMultitask, batches: dict, tasks=TASKS, autocast=False) -> torch.Tensor:
    """(K, P) float64: each task's gradient of the encoder, by torch.autograd.grad, in named_parameters order."""
    params = list(model.encoder.parameters())
    rows = []
    for task in tasks:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(task, batches[task])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float()
                               for p, g in zip(params, grads)]))
    return torch.stack(rows).double()


def assert_update_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """The expected update is computed in float64 from the float32 per-task gradients; the surgery's float32 Gram
    matrix (summed over blocks) agrees to about 1e-7 of the update's scale, so allow 1e-6 of it."""
    scale = float(want.abs().max())
    torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=1e-6 * scale)


def encoder_grad(model: TinyMultitask) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1).float() for p in model.encoder.parameters()])


def run_step(model, surgery, batches, step=0, micro=1, autocast=False):
    for task in TASKS:
        for m in range(micro):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model.loss(task, batches[task] if micro == 1 else batches[m][task])
            loss.backward()
            surgery.capture(task)
    return surgery.step(step)


def test_shared_grads_equal_pcgrad_of_per_task_grads():
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, method="pcgrad", generator=torch.Generator().manual_seed(3),
                              num_layers=2)
    info = run_step(model, surgery, batches)
    assert info.applied and not info.skipped and int(info.conflicts) >= 1 and float(info.removed_norm) > 0
    want = pcgrad(per_task_grads(model, batches), generator=torch.Generator().manual_seed(3))
    assert_update_close(encoder_grad(model), want)
    assert not torch.allclose(want, per_task_grads(model, batches).sum(0), rtol=1e-3, atol=1e-6)
    for p in model.encoder.parameters():
        assert p.grad.dtype == p.dtype and p.grad.shape == p.shape


def test_head_grads_are_bit_identical_with_and_without_surgery():
    batches = make_batches()
    grads = {}
    for method in ("pcgrad", "main_aux", None):
        model = TinyMultitask()
        if method is None:  # no surgery at all: one backward per task, accumulating into .grad
            for task in TASKS:
                model.loss(task, batches[task]).backward()
        else:
            surgery = GradientSurgery(shared(model), TASKS, method=method, main_task="sst", num_layers=2)
            assert run_step(model, surgery, batches).applied
        grads[method] = {n: p.grad.clone() for n, p in model.heads.named_parameters()}
    for method in ("pcgrad", "main_aux"):
        for name, g in grads[None].items():
            assert torch.equal(grads[method][name], g), name
    summed = TinyMultitask()
    sum(summed.loss(t, batches[t]) for t in TASKS).backward()
    for name, p in summed.heads.named_parameters():
        torch.testing.assert_close(p.grad, grads[None][name], rtol=0, atol=1e-7)


def test_gradient_accumulation_projects_once_per_optimizer_step():
    model = TinyMultitask()
    micro = [make_batches(1), make_batches(2)]
    surgery = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(0), num_layers=2)
    run_step(model, surgery, micro, micro=2)
    total = per_task_grads(model, micro[0]) + per_task_grads(model, micro[1])  # (K, P) summed over micro-batches
    want = pcgrad(total, generator=torch.Generator().manual_seed(0))
    assert_update_close(encoder_grad(model), want)
    # projecting each micro-batch separately is a different (wrong) answer, so the test can tell them apart
    gen = torch.Generator().manual_seed(0)
    per_micro = pcgrad(per_task_grads(model, micro[0]), generator=gen) + pcgrad(per_task_grads(model, micro[1]),
                                                                                generator=gen)
    assert not torch.allclose(per_micro, want, rtol=1e-3, atol=1e-6)


def test_second_step_starts_from_empty_buffers():
    model = TinyMultitask()
    surgery = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(0), num_layers=2)
    run_step(model, surgery, make_batches(1), step=0)
    model.zero_grad(set_to_none=True)
    # step 1: only "para" and "sts" have a batch (e.g. a round-robin schedule)
    b = make_batches(2)
    for task in ("para", "sts"):
        model.loss(task, b[task]).backward()
        surgery.capture(task)
    info = surgery.step(1)
    assert info.tasks == ("para", "sts")
    rows = per_task_grads(model, b, tasks=("para", "sts"))
    gen = torch.Generator().manual_seed(0)
    from mtkit.surgery import visit_orders
    visit_orders(3, gen)  # step 0 used the generator once
    want = pcgrad(torch.stack([torch.zeros_like(rows[0]), rows[0], rows[1]]), generator=gen)
    assert_update_close(encoder_grad(model), want)


def test_nonfinite_gradient_skips_counts_and_reports():
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, num_layers=2, telemetry_every=1)
    for task in TASKS:
        model.loss(task, batches[task]).backward()
        if task == "para":
            model.encoder.layers[1].ffn.up.weight.grad[0, 0] = float("inf")
        if task == "sts":
            model.encoder.embeddings.word_embeddings.weight.grad[3, 2] = float("nan")
        surgery.capture(task)
    head_before = {n: p.grad.clone() for n, p in model.heads.named_parameters()}
    info = surgery.step(0)
    assert info.skipped and not info.applied
    assert info.nonfinite_tasks == ("para", "sts")
    assert all(p.grad is None for p in model.encoder.parameters())  # nothing written
    assert surgery.steps_skipped == 1 and surgery.skipped_steps == [0]
    assert surgery.skipped_by_task == {"sst": 0, "para": 1, "sts": 1}
    assert len(surgery.telemetry) == 0  # nothing recorded from a broken step
    assert "1 skipped" in surgery.summary() and "para" in surgery.summary()
    for n, p in model.heads.named_parameters():
        assert torch.equal(p.grad, head_before[n])
    # the next step is clean: no NaN or inf left over in the buffers
    model.zero_grad(set_to_none=True)
    b2 = make_batches(5)
    info = run_step(model, surgery, b2, step=1)
    assert info.applied and torch.isfinite(encoder_grad(model)).all()
    assert surgery.steps_applied == 1


def test_nonfinite_from_the_loss_itself():
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, num_layers=2)
    for task in TASKS:
        loss = model.loss(task, batches[task])
        if task == "sst":
            loss = loss * float("nan")
        loss.backward()
        surgery.capture(task)
    info = surgery.step(0)
    assert info.skipped and info.nonfinite_tasks == ("sst",)


def test_discard_forgets_this_steps_gradients():
    model = TinyMultitask()
    surgery = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(0), num_layers=2)
    old = make_batches(7)
    for task in TASKS:
        model.loss(task, old[task]).backward()
        surgery.capture(task)
    surgery.discard()  # e.g. a non-finite loss: the trainer drops the step
    assert not surgery.step(0).applied
    model.zero_grad(set_to_none=True)
    b = make_batches(8)
    for task in ("para", "sts"):
        model.loss(task, b[task]).backward()
        surgery.capture(task)
    surgery.step(1)
    rows = per_task_grads(model, b, tasks=("para", "sts"))
    gen = torch.Generator().manual_seed(0)  # step 0 drew no visiting orders: nothing was projected
    want = pcgrad(torch.stack([torch.zeros_like(rows[0]), rows[0], rows[1]]), generator=gen)
    assert_update_close(encoder_grad(model), want)


def test_bf16_autocast_keeps_float32_buffers_and_matches_reference():
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(1), num_layers=2)
    run_step(model, surgery, batches, autocast=True)
    assert surgery.buffers.dtype == torch.float32
    want = pcgrad(per_task_grads(model, batches, autocast=True), generator=torch.Generator().manual_seed(1))
    assert_update_close(encoder_grad(model), want)


def test_bf16_model_gets_bf16_grads_from_float32_buffers():
    model = TinyMultitask(dtype=torch.bfloat16)
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(1), num_layers=2)
    run_step(model, surgery, batches)
    assert surgery.buffers.dtype == torch.float32
    for p in model.encoder.parameters():
        assert p.grad.dtype == torch.bfloat16
    want = pcgrad(per_task_grads(model, batches), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(encoder_grad(model), want.float().bfloat16().float(), rtol=1e-2, atol=1e-4)


def test_method_none_sums_and_needs_per_task_only_for_telemetry():
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, method="none", telemetry_every=5, num_layers=2)
    assert [surgery.needs_per_task(s) for s in range(7)] == [True, False, False, False, False, True, False]
    info = run_step(model, surgery, batches, step=5)
    assert info.applied and float(info.removed_norm) == 0
    assert_update_close(encoder_grad(model), per_task_grads(model, batches).sum(0))
    assert len(surgery.telemetry) == 1
    # nothing captured (the trainer did a summed backward): step leaves .grad alone
    model.zero_grad(set_to_none=True)
    sum(model.loss(t, batches[t]) for t in TASKS).backward()
    before = encoder_grad(model).clone()
    info = surgery.step(6)
    assert not info.applied and not info.skipped
    assert torch.equal(encoder_grad(model), before)
    off = GradientSurgery(shared(model), TASKS, method="none", telemetry_every=0, num_layers=2)
    assert not any(off.needs_per_task(s) for s in range(10))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_main_aux_matches_pure_function(reduction):
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, method="main_aux", main_task="sst", aux_weight=0.3,
                              reduction=reduction, generator=torch.Generator().manual_seed(2), num_layers=2)
    run_step(model, surgery, batches)
    want = main_aux_pcgrad(per_task_grads(model, batches), 0, 0.3, reduction=reduction,
                           generator=torch.Generator().manual_seed(2))
    assert_update_close(encoder_grad(model), want)


def test_mean_divides_by_the_tasks_present():
    model = TinyMultitask()
    b = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, reduction="mean", generator=torch.Generator().manual_seed(0),
                              num_layers=2)
    for task in ("para", "sts"):
        model.loss(task, b[task]).backward()
        surgery.capture(task)
    surgery.step(0)
    rows = per_task_grads(model, b, tasks=("para", "sts"))
    gen = torch.Generator().manual_seed(0)
    full = pcgrad(torch.stack([torch.zeros_like(rows[0]), rows[0], rows[1]]), generator=gen)  # the sum
    assert_update_close(encoder_grad(model), full / 2)


def test_resume_restores_counters_generator_and_telemetry():
    model = TinyMultitask()
    batches = make_batches()
    a = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(9), telemetry_every=1,
                        num_layers=2)
    run_step(model, a, batches, step=0)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # checkpoints load with weights_only
    model.zero_grad(set_to_none=True)
    run_step(model, a, batches, step=1)
    g_a = encoder_grad(model).clone()
    b = GradientSurgery(shared(model), TASKS, generator=torch.Generator().manual_seed(123), telemetry_every=1,
                        num_layers=2)
    b.load_state_dict(state)
    assert b.steps_applied == 1 and len(b.telemetry) == 1
    model.zero_grad(set_to_none=True)
    run_step(model, b, batches, step=1)
    assert torch.equal(encoder_grad(model), g_a)  # same visiting orders after the resume
    with pytest.raises(ValueError, match="same task list"):
        GradientSurgery(shared(model), ["x", "y", "z"], num_layers=2).load_state_dict(state)


def test_default_generator_does_not_touch_the_global_random_stream():
    model = TinyMultitask()
    batches = make_batches()
    surgery = GradientSurgery(shared(model), TASKS, num_layers=2)
    torch.manual_seed(5)
    run_step(model, surgery, batches)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))


def test_bad_inputs_get_clear_errors():
    model = TinyMultitask()
    everything = list(model.named_parameters())  # heads included: a classic PCGrad mistake
    with pytest.raises(ValueError, match="never projected"):
        GradientSurgery(everything, TASKS, num_layers=2)
    with pytest.raises(ValueError, match="method"):
        GradientSurgery(shared(model), TASKS, method="PCGrad")
    with pytest.raises(ValueError, match="main_task"):
        GradientSurgery(shared(model), TASKS, method="main_aux", main_task="qqp")
    with pytest.raises(ValueError, match="reduction"):
        GradientSurgery(shared(model), TASKS, reduction="avg")
    surgery = GradientSurgery(shared(model), TASKS, num_layers=2)
    with pytest.raises(KeyError, match="unknown task"):
        surgery.capture("qqp")


def test_frozen_encoder_turns_surgery_off_with_a_warning():
    model = TinyMultitask()
    model.encoder.requires_grad_(False)
    with pytest.warns(UserWarning, match="no trainable shared parameters"):
        surgery = GradientSurgery(shared(model), TASKS)
    assert not surgery.needs_per_task(0)
    assert not surgery.step(0).applied


def test_module_and_unprefixed_names_are_accepted_and_laid_out_by_block():
    model = TinyMultitask()
    surgery = GradientSurgery(model.encoder, TASKS)  # num_layers inferred from the names
    assert surgery.buffers.block_names == ["embeddings.word", "embeddings.other", "layers.0", "layers.1", "pooler"]
    starts = [s for s, _ in surgery.buffers.block_bounds]
    assert starts == sorted(starts) and surgery.buffers.block_bounds[-1][1] == surgery.buffers.num_params
