"""Task schedules: the number and order of batches per epoch for each schedule, sampling proportions, annealing,
dynamic reallocation, loss weights, and the factory's errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtkit.train.schedules import (
    SCHEDULES,
    DynamicSchedule,
    EqualSchedule,
    ProportionalSchedule,
    RoundRobinSchedule,
    SequentialSchedule,
    SqrtSchedule,
    TaskWeights,
    TemperatureSchedule,
    count_batches,
    main_aux,
    make_task_schedule,
)

SIZES = {"sst": 3, "para": 5, "sts": 2}


def flat(plan):
    """One task per step -> a flat list of task names (and a check that it is one per step)."""
    assert all(len(step) == 1 for step in plan)
    return [step[0] for step in plan]


def rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------------- deterministic ones
def test_sequential_order_and_counts():
    plan = SequentialSchedule().epoch_plan(0, SIZES)
    assert flat(plan) == ["sst"] * 3 + ["para"] * 5 + ["sts"] * 2  # report A: SST, then Quora, then STS
    plan = SequentialSchedule(order=["para", "sts", "sst"]).epoch_plan(1, SIZES)  # report D's other order
    assert flat(plan) == ["para"] * 5 + ["sts"] * 2 + ["sst"] * 3
    assert SequentialSchedule().num_steps(0, SIZES) == 10
    with pytest.raises(ValueError, match=r"leaves out \['sts'\]"):
        SequentialSchedule(order=["sst", "para"]).epoch_plan(0, SIZES)
    with pytest.raises(ValueError, match=r"names \['cfimdb'\], which are not tasks"):
        SequentialSchedule(order=["sst", "para", "sts", "cfimdb"]).epoch_plan(0, SIZES)
    with pytest.raises(ValueError, match=r"repeats \['sst'\]"):
        SequentialSchedule(order=["sst", "para", "sts", "sst"]).epoch_plan(0, SIZES)


def test_round_robin_until_all_longest_shortest():
    sizes = {"a": 3, "b": 1, "c": 2}
    # all: every batch once; a task that runs out leaves the rotation
    assert flat(RoundRobinSchedule().epoch_plan(0, sizes)) == ["a", "b", "c", "a", "c", "a"]
    # longest: rounds until the largest task is used up; b and c are re-sampled
    plan = RoundRobinSchedule(until="longest").epoch_plan(0, sizes)
    assert flat(plan) == ["a", "b", "c"] * 3 and count_batches(plan) == {"a": 3, "b": 3, "c": 3}
    # shortest: stop when the smallest task is used up
    assert flat(RoundRobinSchedule(until="shortest").epoch_plan(0, sizes)) == ["a", "b", "c"]
    assert flat(RoundRobinSchedule(order=["c", "b", "a"]).epoch_plan(0, sizes)) == ["c", "b", "a", "c", "a", "a"]
    for until, n in (("all", 6), ("longest", 9), ("shortest", 3)):
        assert RoundRobinSchedule(until=until).num_steps(0, sizes) == n
    # a task without batches: skipped by "all", an error where it would have to be re-sampled
    assert flat(RoundRobinSchedule().epoch_plan(0, {"a": 2, "b": 0})) == ["a", "a"]
    with pytest.raises(ValueError, match=r"\['b'\] have 0 training batches"):
        RoundRobinSchedule(until="longest").epoch_plan(0, {"a": 2, "b": 0})
    with pytest.raises(ValueError, match="until 'first'"):
        RoundRobinSchedule(until="first")


def test_equal_every_step_has_every_task():
    sizes = {"a": 3, "b": 1, "c": 2}
    plan = EqualSchedule().epoch_plan(0, sizes)
    assert plan == [["a", "b", "c"]] * 3  # report D: losses of all tasks summed in each step, smaller sets re-sampled
    assert count_batches(plan) == {"a": 3, "b": 3, "c": 3}
    assert EqualSchedule(steps="shortest").epoch_plan(0, sizes) == [["a", "b", "c"]]
    assert EqualSchedule(steps=5, order=["c", "a", "b"]).epoch_plan(0, sizes) == [["c", "a", "b"]] * 5
    with pytest.raises(ValueError, match="0 training batches"):
        EqualSchedule().epoch_plan(0, {"a": 2, "b": 0})
    with pytest.raises(ValueError, match="steps must be 'longest' or 'shortest' or a whole number"):
        EqualSchedule(steps="most")


# ----------------------------------------------------------------------------------------------- sampled ones
def test_proportional_without_replacement_uses_each_batch_once():
    plan = ProportionalSchedule().epoch_plan(0, SIZES, rng(0))
    assert count_batches(plan) == SIZES and len(plan) == 10
    assert plan == ProportionalSchedule().epoch_plan(0, SIZES, rng(0))  # deterministic given the generator
    orders = {tuple(flat(ProportionalSchedule().epoch_plan(0, SIZES, rng(s)))) for s in range(20)}
    assert len(orders) > 10  # and really shuffled
    with pytest.raises(ValueError, match="pass rng"):
        ProportionalSchedule().epoch_plan(0, SIZES)
    with pytest.raises(ValueError, match="steps applies to replacement=True"):
        ProportionalSchedule(steps=10)


def _assert_counts_match(counts: dict, probs: dict, n: int) -> None:
    """Each count within 5 binomial standard deviations of n * p (the generator is seeded: no flakiness)."""
    for task, p in probs.items():
        sd = math.sqrt(n * p * (1 - p))
        assert abs(counts.get(task, 0) - n * p) <= 5 * sd + 1, (task, counts, probs)


def test_proportional_with_replacement_proportions():
    sizes = {"sst": 1068, "para": 17_700, "sts": 755}  # batches of 8 in the CS224N training sets
    schedule = ProportionalSchedule(replacement=True)
    plan = schedule.epoch_plan(0, sizes, rng(1))
    n = sum(sizes.values())
    assert len(plan) == n == schedule.num_steps(0, sizes)
    _assert_counts_match(count_batches(plan), {t: k / n for t, k in sizes.items()}, n)
    short = ProportionalSchedule(replacement=True, steps=50).epoch_plan(0, sizes, rng(1))
    assert len(short) == 50 and set(count_batches(short)) <= set(sizes)


def test_temperature_probabilities_by_hand():
    sizes = {"a": 100, "b": 25, "c": 1}
    sqrt = TemperatureSchedule(temperature=2).probabilities(0, sizes)
    assert sqrt == pytest.approx({"a": 10 / 16, "b": 5 / 16, "c": 1 / 16})  # sqrt: 10, 5, 1
    assert TemperatureSchedule(temperature=1).probabilities(0, sizes) == pytest.approx(
        {"a": 100 / 126, "b": 25 / 126, "c": 1 / 126})
    assert TemperatureSchedule(temperature=1e9).probabilities(0, sizes) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, rel=1e-6)
    assert SqrtSchedule().probabilities(3, sizes) == pytest.approx(sqrt)
    assert TemperatureSchedule().probabilities(0, {"a": 4, "b": 0})["b"] == 0.0  # an empty task is never drawn


def test_temperature_annealing_values():
    E = 5
    schedule = TemperatureSchedule(temperature=1, anneal_to=5, over_epochs=E)  # Stickland & Murray 2019
    alphas = [schedule.exponent_at(e) for e in range(E + 3)]
    assert alphas == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2, 0.2])
    # their formula, with epochs counted from 1: alpha = 1 - 0.8 (e - 1) / (E - 1)
    assert [schedule.exponent_at(e - 1) for e in range(1, E + 1)] == pytest.approx(
        [1 - 0.8 * (e - 1) / (E - 1) for e in range(1, E + 1)])
    assert schedule.temperature_at(0) == pytest.approx(1.0) and schedule.temperature_at(4) == pytest.approx(5.0)
    assert schedule.temperature_at(2) == pytest.approx(1 / 0.6)
    sizes = {"a": 100, "b": 1}
    assert schedule.probabilities(4, sizes)["a"] == pytest.approx(100**0.2 / (100**0.2 + 1))
    assert TemperatureSchedule(2, anneal_to=10, over_epochs=1).exponent_at(0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs both anneal_to"):
        TemperatureSchedule(2, anneal_to=5)
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        TemperatureSchedule(0)


def test_temperature_sampling_proportions_and_steps():
    sizes = {"sst": 1068, "para": 17_700, "sts": 755}
    schedule = TemperatureSchedule(temperature=2)
    plan = schedule.epoch_plan(0, sizes, rng(2))
    n = sum(sizes.values())
    assert len(plan) == n
    _assert_counts_match(count_batches(plan), schedule.probabilities(0, sizes), n)
    # sqrt sampling gives the small tasks more than their share: their batches are re-sampled
    counts = count_batches(plan)
    assert counts["sst"] > sizes["sst"] and counts["sts"] > sizes["sts"] and counts["para"] < sizes["para"]
    assert len(TemperatureSchedule(2, steps=300).epoch_plan(0, sizes, rng(2))) == 300
    # "sqrt" is temperature 2: the same draws from the same generator
    assert SqrtSchedule().epoch_plan(0, sizes, rng(3)) == schedule.epoch_plan(0, sizes, rng(3))


# ----------------------------------------------------------------------------------------------- dynamic
def test_dynamic_reallocates_after_update():
    sizes = {"sst": 10, "para": 10, "sts": 10}
    schedule = DynamicSchedule(targets={"sst": 0.5, "para": 0.9, "sts": 0.8}, min_share=0.1)
    # before any dev result: proportional to the sizes
    assert schedule.batch_counts(sizes) == {"sst": 10, "para": 10, "sts": 10}
    schedule.update({"sst": 0.3, "para": 0.95, "sts": 0.7})  # gaps: 0.2, 0 (above target), 0.1
    assert schedule.gaps(list(sizes)) == pytest.approx({"sst": 0.2, "para": 0.0, "sts": 0.1})
    # shares: 0.1 + 0.7 * gap / 0.3 -> sst 0.5667, para 0.1, sts 0.3333; of 30 steps: 17, 3, 10
    assert schedule.shares(sizes) == pytest.approx({"sst": 0.1 + 0.7 * 2 / 3, "para": 0.1, "sts": 0.1 + 0.7 / 3})
    assert schedule.batch_counts(sizes) == {"sst": 17, "para": 3, "sts": 10}
    plan = schedule.epoch_plan(1, sizes, rng(0))
    assert count_batches(plan) == {"sst": 17, "para": 3, "sts": 10} and len(plan) == schedule.num_steps(1, sizes)
    # sst catches up, sts falls behind: the batches follow
    schedule.update({"sst": 0.5, "sts": 0.6})
    assert schedule.batch_counts(sizes) == {"sst": 3, "para": 3, "sts": 24}
    # every target met: back to proportional
    schedule.update({"sts": 0.85})
    assert schedule.batch_counts({"sst": 5, "para": 20, "sts": 5}) == {"sst": 5, "para": 20, "sts": 5}


def test_dynamic_state_round_trip_and_errors():
    sizes = {"sst": 4, "para": 12, "sts": 4}
    a = DynamicSchedule(targets={"sst": 0.5, "sts": 0.8}, steps=40)
    a.update({"sst": 0.2, "sts": 0.7, "para": 0.8})
    b = DynamicSchedule(targets={"sst": 0.5, "sts": 0.8}, steps=40)
    b.load_state_dict(a.state_dict())  # a resumed run
    assert a.state_dict() == {"metrics": {"sst": 0.2, "sts": 0.7, "para": 0.8}}
    assert b.epoch_plan(3, sizes, rng(9)) == a.epoch_plan(3, sizes, rng(9))
    counts = count_batches(a.epoch_plan(3, sizes, rng(9)))
    assert counts["sst"] > counts["sts"] > counts["para"]  # para has no target: only its min_share (4 of 40)
    assert counts["para"] == 4
    with pytest.raises(ValueError, match=r"targets name \['cfimdb'\]"):
        DynamicSchedule(targets={"cfimdb": 0.9}).epoch_plan(0, sizes, rng())
    with pytest.raises(ValueError, match="min_share 0.4 x 3 tasks exceeds 1"):
        DynamicSchedule(targets={"sst": 0.5}, min_share=0.4).epoch_plan(0, sizes, rng())
    with pytest.raises(ValueError, match="finite number"):
        a.update({"sst": float("nan")})
    with pytest.raises(ValueError, match="targets must map task names"):
        DynamicSchedule(targets={})


# ----------------------------------------------------------------------------------------------- all schedules
def _all_schedules():
    return [make_task_schedule(name, **({"targets": {"sst": 0.5}} if name == "dynamic" else {}))
            for name in SCHEDULES]


@pytest.mark.parametrize("sizes", [SIZES, {"sst": 1, "para": 7}, {"only": 4}])
def test_every_schedule_deterministic_and_num_steps(sizes):
    for schedule in _all_schedules():
        if isinstance(schedule, DynamicSchedule) and "sst" not in sizes:
            continue
        plans = [schedule.epoch_plan(2, sizes, np.random.default_rng([11711, 2])) for _ in range(2)]
        assert plans[0] == plans[1], schedule
        torch_plans = [schedule.epoch_plan(2, sizes, torch.Generator().manual_seed(5)) for _ in range(2)]
        assert torch_plans[0] == torch_plans[1], schedule
        assert len(plans[0]) == schedule.num_steps(2, sizes), schedule
        assert all(step and set(step) <= set(sizes) for step in plans[0]), schedule


def test_single_task_runs_through_every_schedule():
    for schedule in _all_schedules():
        if isinstance(schedule, DynamicSchedule):
            continue
        assert schedule.epoch_plan(0, {"sst": 3}, rng()) == [["sst"]] * 3, schedule


def test_bad_sizes_and_rng():
    with pytest.raises(ValueError, match="non-empty mapping"):
        SequentialSchedule().epoch_plan(0, {})
    with pytest.raises(ValueError, match=r"sizes\['sst'\] must be a whole number"):
        SequentialSchedule().epoch_plan(0, {"sst": 2.5})
    with pytest.raises(ValueError, match="every task has 0 batches"):
        SequentialSchedule().epoch_plan(0, {"sst": 0})
    with pytest.raises(TypeError, match="default_rng"):
        ProportionalSchedule().epoch_plan(0, SIZES, rng="seed")


# ----------------------------------------------------------------------------------------------- weights
def test_main_aux_weights_give_report_c_gradient():
    weights = main_aux("sst", aux_weight=0.3, tasks=["sst", "para", "sts"])
    assert weights.as_dict(["sst", "para", "sts"]) == {"sst": 1.0, "para": 0.3, "sts": 0.3}
    assert weights["para"] == weights("para") == 0.3
    x = torch.tensor(2.0, requires_grad=True)
    losses = {"sst": x**2, "para": 3 * x, "sts": -x}  # gradients 2x = 4, 3, -1
    weights.weighted_sum(losses).backward()
    assert x.grad.item() == pytest.approx(4 + 0.3 * (3 - 1))  # g_main + lambda (g_para + g_sts)
    with pytest.raises(ValueError, match="not one of the run's tasks"):
        main_aux("cfimdb", tasks=["sst", "para"])
    with pytest.raises(ValueError, match="at least one auxiliary"):
        main_aux("sst", tasks=["sst"])
    assert TaskWeights()("anything") == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        TaskWeights({"sst": -1})


# ----------------------------------------------------------------------------------------------- factory
def test_factory():
    assert SCHEDULES == ("sequential", "round-robin", "proportional", "temperature", "sqrt", "equal", "dynamic")
    assert isinstance(make_task_schedule("sqrt"), TemperatureSchedule)
    assert make_task_schedule("sqrt").temperature == 2.0
    assert make_task_schedule("round-robin", until="longest").until == "longest"
    assert make_task_schedule("sequential", order=["sst", "para", "sts"]).order == ["sst", "para", "sts"]
    with pytest.raises(ValueError, match=r"'round_robin' is not known. Did you mean 'round-robin'\?"):
        make_task_schedule("round_robin")
    with pytest.raises(ValueError, match=r"no option 'temprature'. Did you mean 'temperature'\?"):
        make_task_schedule("temperature", temprature=3)
    with pytest.raises(ValueError, match=r"no option 'temperature'.*anneal_to, over_epochs, steps"):
        make_task_schedule("sqrt", temperature=3)
    with pytest.raises(ValueError, match=r"needs option\(s\) \['targets'\]"):
        make_task_schedule("dynamic")
    assert "until='all'" in repr(make_task_schedule("round-robin"))
