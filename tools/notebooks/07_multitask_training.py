# %% [markdown]
# # 07 · Multitask training: one encoder, three heads
#
# The project's model is **one** BERT encoder shared by three tasks, each with its own small head. Every
# optimizer step moves the shared encoder, so the question is *what goes into each step*:
#
# - a **task schedule** decides which task's batch comes next: all of SST, then all of Quora, then all of STS
#   (report A), one batch of each in turn (report B), sampling in proportion to the data, or a batch of every
#   task in every step with the losses summed (report D);
# - with several tasks in one step, **loss weights** decide how much each counts: equal, or a *main* task at
#   weight 1 and the *auxiliary* tasks at $\lambda = 0.3$ (report C, after MTRec, Bi et al. 2022).
#
# The real data makes this matter: Quora has 141k training pairs, SST 8.5k sentences, STS 6k pairs. Visit every
# batch once per epoch and Quora takes 90% of the steps.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2; or a Hugging Face BERT folder
train_limit = 200      # training examples per task (None: all)
dev_limit = None       # dev examples per task (None: all)
epochs = 2
batch_size = 16
max_length = 64
seed = 0
results_dir = None
schedule = "round-robin"  # the schedule of the training run below (any of mtkit.train.schedules.SCHEDULES)
lr = 5e-5
head_lr = 1e-3
eval_every = 13        # optimizer steps between dev evaluations (for the curves)
progress = True

# %% tags=["nbval-ignore-output"]
%matplotlib inline
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import mtkit
from mtkit.teach.notebook_runner import data_source, save_results

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)
workdir = Path(tempfile.mkdtemp(prefix="mtkit-07-"))

# %% [markdown]
# ## Task schedules
#
# A schedule turns the number of batches of each task into an epoch's *plan*: the tasks of every optimizer
# step. The plans below use the real data's sizes (batches of 8, the starter's batch size), so you see the
# imbalance every schedule has to deal with; none of this needs the files.

# %%
from mtkit.train.schedules import count_batches, make_task_schedule

sizes = {"sst": 1068, "para": 17675, "sts": 755}  # CS224N training batches per epoch at batch size 8
schedules = {
    "sequential": make_task_schedule("sequential"),
    "round-robin": make_task_schedule("round-robin"),
    "round-robin, until shortest": make_task_schedule("round-robin", until="shortest"),
    "proportional": make_task_schedule("proportional"),
    "temperature T=2 (sqrt)": make_task_schedule("temperature", temperature=2.0),
    "temperature T=5": make_task_schedule("temperature", temperature=5.0),
    "equal (summed losses)": make_task_schedule("equal"),
}
plans = {name: s.epoch_plan(0, sizes, np.random.default_rng([seed, 0])) for name, s in schedules.items()}
rows = []
for name, plan in plans.items():
    counts = count_batches(plan)
    rows.append({"schedule": name, "optimizer steps": len(plan), **{f"{t} batches": counts.get(t, 0) for t in sizes},
                 "first steps": " ".join("+".join(step) for step in plan[:5]) + " ..."})
pd.DataFrame(rows).set_index("schedule")

# %%
fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
left = np.zeros(len(plans))
for task, color in zip(sizes, ("tab:blue", "tab:orange", "tab:green")):
    share = np.array([count_batches(p).get(task, 0) / sum(count_batches(p).values()) for p in plans.values()])
    ax.barh(list(plans), share, left=left, color=color, label=task)
    left += share
ax.invert_yaxis()
ax.set(title="Share of each task's batches in one epoch (real data sizes)", xlabel="share of batches",
       xlim=(0, 1))
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# Sequential and round-robin use every batch exactly once; they differ in *when*. Sequential ends each epoch on
# STS, so STS's gradient has the last word on the shared weights; round-robin interleaves. Proportional sampling
# gives Quora the same 90% at random positions. Temperature sampling ($p_i \propto n_i^{1/T}$, Stickland &
# Murray 2019) flattens the shares: the small tasks are re-sampled more often. `equal` puts one batch of every
# task in each step and sums the losses (report D), re-sampling the smaller tasks up to Quora's size.
#
# ## Loss weights: main and auxiliary tasks
#
# With several tasks in a step the gradient is a weighted sum, $g = \sum_t w_t \nabla L_t$. Report C treats
# sentiment as the *main* task and the others as *auxiliary* with $\lambda = 0.3$:

# %%
from mtkit.train.loss_weights import TaskWeights, main_aux

weights = main_aux("sst", aux_weight=0.3, tasks=["sst", "para", "sts"])
print(weights, "->", weights.as_dict(["sst", "para", "sts"]))
losses = {"sst": torch.tensor(1.2), "para": torch.tensor(0.6), "sts": torch.tensor(2.0)}  # example losses
print(f"main + auxiliary: 1.0 * 1.2 + 0.3 * 0.6 + 0.3 * 2.0 = {weights.weighted_sum(losses).item():.2f}")
print(f"equal weights:    1.2 + 0.6 + 2.0 = {TaskWeights().weighted_sum(losses).item():.2f}")

# %% [markdown]
# In a config these are `schedule:` (with `schedule_options:`) and `loss_weights: {main_task: sst, aux_weight:
# 0.3}`. (Report C also applies gradient surgery between the main and the auxiliary gradients: notebook 09.)
#
# ## The multitask model
#
# `TrainConfig` holds every choice of a run; each task gets a pooling, a head and a loss (defaults by the task's
# kind, see `docs/HEADS_AND_LOSSES.md`), and `build_model` assembles one encoder and a `ModuleDict` of heads.

# %%
from mtkit.train.config import TrainConfig
from mtkit.train.trainer import Trainer

config = TrainConfig(encoder=encoder, data_dir=str(source.path), tasks=["sst", "para", "sts"], schedule=schedule,
                     lr=lr, head_lr=head_lr, epochs=epochs, batch_size=batch_size, max_length=max_length,
                     train_limit=train_limit, dev_limit=dev_limit, seed=seed, device=str(device),
                     eval_every=eval_every, telemetry_every=0, progress=progress, output_dir=str(workdir / "run"))
trainer = Trainer(config, verbose=False)
print(trainer.model.describe())
shared = sum(p.numel() for p in trainer.model.encoder.parameters())
per_task = {t: sum(p.numel() for p in h.parameters()) for t, h in trainer.model.heads.items()}
print(f"shared encoder: {shared:,} parameters; heads: {per_task}")

# %% [markdown]
# The config as the YAML file `mtkit train --config` reads (the same field names), showing only what differs
# from the defaults (`TrainConfig().to_dict()` lists them all):

# %%
import yaml

defaults = TrainConfig().to_dict()
changed = {k: v for k, v in config.to_dict().items()
           if v != defaults.get(k) and k not in ("data_dir", "output_dir", "device")}
print(yaml.safe_dump(changed, sort_keys=False))

# %% [markdown]
# ## Training
#
# Each optimizer step: the schedule names the step's tasks; each task's batch goes through the model and its
# loss is backpropagated (weighted, when several tasks share a step); the gradient norm is clipped; AdamW steps.
# The dev set of every task is scored every `eval_every` steps, and the best model by overall score is kept.

# %% tags=["nbval-ignore-output"]
result = trainer.fit()
print(result)

# %%
evals = trainer.history.to_frame("eval")
steps = trainer.history.to_frame("step")
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
names = {"sst": "SST accuracy", "para": "Quora accuracy", "sts": "STS Pearson"}
for task, label in names.items():
    axes[0].plot(evals["step"], evals[f"scores.{task}"], marker="o", label=label)
    loss = steps[f"loss.{task}"] if f"loss.{task}" in steps else None
    if loss is not None:
        axes[1].plot(steps["step"], loss.astype(float).interpolate(limit_area="inside").rolling(9, min_periods=1).mean(),
                     label=task)
axes[0].plot(evals["step"], evals["overall"], color="black", linewidth=2, label="overall score")
axes[0].set(title=f"Dev scores ({schedule} schedule)", xlabel="optimizer step", ylabel="score")
axes[1].set(title="Training loss per task (running mean)", xlabel="optimizer step", ylabel="loss (task's own units)",
            yscale="log")
for ax in axes:
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
plt.show()

# %% tags=["nbval-ignore-output"]
from mtkit.eval.metrics import overall_score

best = result.best
table = pd.DataFrame({t: {"metric": m, "dev score": best["scores"][t]}
                      for t, m in (("sst", "accuracy"), ("para", "accuracy"), ("sts", "Pearson"))}).T
print(table)
print(f"overall = (sst + para + (sts + 1) / 2) / 3 = "
      f"{overall_score(best['scores']['sst'], best['scores']['para'], best['scores']['sts']):.3f}")

# %% [markdown]
# The trainer also writes the best model's dev and test predictions in the CS224N submission format:

# %% tags=["nbval-ignore-output"]
for name, file in result.predictions.items():
    lines = Path(file).read_text().splitlines()
    print(f"{name}: {Path(file).name}, {len(lines) - 1} predictions; first lines: {lines[:3]}")

# %%
metrics = {"schedule": schedule, "steps": result.steps, "sst_acc": best["scores"]["sst"],
           "para_acc": best["scores"]["para"], "sts_pearson": best["scores"]["sts"], "overall": best["overall"]}
path = save_results("07_multitask_training", metrics, results_dir, data=source.kind, device=str(device))
shutil.rmtree(workdir, ignore_errors=True)
print(f"wrote {path.name}")

# %%
"""Sanity checks: every task was trained and scored; the overall score is the project's formula."""
assert set(best["scores"]) == {"sst", "para", "sts"}
assert abs(best["overall"] - overall_score(best["scores"]["sst"], best["scores"]["para"], best["scores"]["sts"])) < 1e-9

# %% [markdown]
# ## Summary
#
# - One encoder, one head per task; a task schedule decides which batches go into each step, loss weights how
#   much each task counts when several share a step.
# - With the real data's imbalance the schedule decides how much of an epoch each task gets: sequential and
#   round-robin follow the data, temperature sampling flattens it, `equal` gives every task every step.
# - The overall score averages SST accuracy, Quora accuracy and (STS Pearson + 1) / 2.
#
# ## Questions
#
# 1. With the sequential schedule (SST, Quora, STS), which task does the model "remember" best at the end of an
#    epoch? How would you test that? (Report D also compares the order paraphrase, similarity, sentiment.)
# 2. Quora is 16 times larger than STS. Name one reason to sample it *less* than its share, and one not to.
# 3. With main + auxiliary weighting ($\lambda = 0.3$), what happens to the auxiliary tasks' dev scores? When
#    would you want that?
# 4. Rerun with `schedule="equal"`. Each step now costs three forward and backward passes: compare the scores
#    per optimizer step and per second.
