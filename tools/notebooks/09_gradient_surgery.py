# %% [markdown]
# # 09 · Gradient surgery: when tasks pull the encoder apart
#
# In a summed multitask step the shared encoder moves along $g = \sum_i g_i$, one gradient per task. When two
# task gradients point in opposite directions ($g_i \cdot g_j < 0$, a negative cosine) part of one undoes the
# other, and a task with a large gradient can dominate. **PCGrad** (Yu et al. 2020, "Gradient Surgery for
# Multi-Task Learning") removes the conflict before summing: each $g_i$ that conflicts with $g_j$ is projected
# onto the plane normal to $g_j$,
#
# $$g_i \leftarrow g_i - \frac{g_i \cdot g_j}{\lVert g_j \rVert^2}\, g_j \qquad \text{if } g_i \cdot g_j < 0,$$
#
# for every other task $j$ in a random order, and the update is the sum of the projected gradients. Report C
# uses a variant between a *main* task and the weighted sum of the *auxiliary* ones (MTRec, Bi et al. 2022).
#
# This notebook: the geometry on two arrows, your own implementation (three exercises), then real telemetry of
# a short multitask run, with and without surgery, explored with the conflict explorer.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2; or a Hugging Face BERT folder
train_limit = 96       # training examples per task (None: all)
dev_limit = None
epochs = 2
batch_size = 16
max_length = 64
seed = 0
results_dir = None
lr = 2e-4               # high for BERT (recipes use 1e-5 to 5e-5), so that a dozen steps move the encoder
head_lr = 1e-3
telemetry_every = 1    # record the gradient-conflict telemetry every N optimizer steps
eval_every = 1000      # evaluate every N optimizer steps and after the last one (here: once, at the end)
scaled_task = "sst"    # the task whose loss the last two runs multiply by `scale`, so that its gradient dominates
scale = 30.0
exercise_source = None  # None: your answers in exercises/ (unless $MTKIT_EXERCISE_SOURCE is set); "solutions"
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
from IPython.display import display

import mtkit
from mtkit.exercises.checks import Workbook
from mtkit.teach.notebook_runner import data_source, save_results

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)
workdir = Path(tempfile.mkdtemp(prefix="mtkit-09-"))

# %% [markdown]
# ## Two arrows
#
# Two task gradients in the plane. When the angle between them is over 90° they conflict: each is projected onto
# the line normal to the other (dotted), and the PCGrad update (green) no longer works against either task.
# Move the sliders (`mtkit.teach.widgets.ProjectionToy`; the computation is `mtkit.surgery.pcgrad` itself). Below it,
# the figure for the starting position, for readers without a running kernel (run the cells in order).

# %% tags=["nbval-ignore-output"]
from mtkit.teach.widgets import ProjectionToy

toy = ProjectionToy(angle_1=10, angle_2=140, length_2=1.5)
toy.widget

# %%
# (a new widget would draw into its own output area; here we reuse what the one above computed and drew)
print(f"cos(g1, g2) = {toy.data['cosine']:+.3f}; conflict: {toy.data['conflict']}")
print("g1^PC =", np.round(toy.data["g1_pc"], 3), " g2^PC =", np.round(toy.data["g2_pc"], 3))
display(toy.figure)

# %% [markdown]
# ## Exercise 1: the projection
#
# Write `project_conflicting(g_i, g_j)` in `exercises/pcgrad.py`: remove from $g_i$ its component along $g_j$
# when they conflict, return $g_i$ unchanged otherwise, and never divide by zero.

# %%
book = Workbook(exercise_source)  # whose answers are checked: yours in exercises/, unless told otherwise
project_conflicting = book.check("pcgrad", "project_conflicting")  # yours if it passes, else the worked answer

# %% [markdown]
# ## Exercise 2: the whole algorithm
#
# Write `pcgrad(grads, orders)` in the same file: for each task $i$, start from $g_i$ and project it off every
# other task's *original* gradient in the order `orders[i]`, then sum. The paper draws the orders at random; the
# check passes them in so that the answer is deterministic, and compares with mtkit's implementation, which
# computes the same thing on the small $K \times K$ Gram matrix of the gradients instead of on the long vectors.

# %%
your_pcgrad = book.check("pcgrad", "pcgrad")

# %% [markdown]
# ## Exercise 3: measuring conflict
#
# Write `gradient_cosine(grads_i, grads_j)` in `exercises/gradient_cosine.py`. A task's gradient is a list of
# tensors (one per parameter); the cosine is taken over all of them at once.

# %%
gradient_cosine = book.check("gradient_cosine")

# %% [markdown]
# ## Real gradients, by hand
#
# One batch of each task through the pretrained multitask model; a separate backward pass per task gives each
# task's gradient of the shared encoder. Their cosines (your function), and PCGrad on them (your function
# against mtkit's):

# %%
from mtkit.data import make_loader
from mtkit.surgery.pcgrad import gram_matrix, pcgrad_weights, visit_orders
from mtkit.train.config import TrainConfig
from mtkit.train.trainer import Trainer

def config_for(surgery, name, weights=None):
    tasks = {t: {"weight": (weights or {}).get(t, 1.0)} for t in ("sst", "para", "sts")}  # loss weight per task
    return TrainConfig(encoder=encoder, data_dir=str(source.path), tasks=tasks, schedule="equal", eval_every=eval_every,
                       surgery=surgery, telemetry_every=telemetry_every, lr=lr, head_lr=head_lr, epochs=epochs,
                       batch_size=batch_size, max_length=max_length, train_limit=train_limit, dev_limit=dev_limit,
                       seed=seed, device=str(device), write_predictions=False, progress=progress,
                       output_dir=str(workdir / name))

probe = Trainer(config_for("none", "probe"), verbose=False)
model = probe.model.train()
shared = [p for p in model.encoder.parameters()]
task_grads = {}
for task, data in probe.tasks.items():
    loader = make_loader(data.train.examples, probe.tokenizer, batch_size=batch_size, max_length=max_length,
                         layout="bi" if data.layout == "single" else data.layout, seed=seed)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in next(iter(loader)).items()}
    model.zero_grad()
    model.loss(task, batch).backward()
    # the pooler gets no gradient with mean pooling (p.grad is None): count it as zeros
    task_grads[task] = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in shared]
names = list(task_grads)
cosines = pd.DataFrame([[gradient_cosine(task_grads[a], task_grads[b]) for b in names] for a in names],
                       index=names, columns=names)

# %% tags=["nbval-ignore-output"]
print("cosines of the task gradients over the whole encoder (one batch each):")
cosines.round(3)

# %% tags=["nbval-ignore-output"]
G = torch.stack([torch.cat([g.flatten() for g in task_grads[t]]) for t in names])  # (K, P)
orders = visit_orders(len(names), torch.Generator().manual_seed(seed))
yours = your_pcgrad(G, orders)
reference = (pcgrad_weights(gram_matrix(G), orders).sum(dim=0).to(G.dtype) @ G)  # mtkit's Gram-matrix PCGrad
relative_difference = ((yours - reference).norm() / reference.norm()).item()  # over the whole vector
print(f"{G.shape[0]} tasks x {G.shape[1]:,} parameters; |yours - mtkit's| / |mtkit's| = {relative_difference:.1e}")
print(f"|plain sum| = {G.sum(0).norm():.3f}, |PCGrad update| = {yours.norm():.3f}")

# %% [markdown]
# In a space of 22 million dimensions two unrelated gradients are nearly orthogonal, so the cosines are small;
# what matters is their sign, and how often it is negative.
#
# ## Telemetry of real training runs
#
# Two short runs on the same data, same seed: one plain (`surgery="none"`), one with PCGrad. The `equal` schedule
# puts a batch of every task in every step, so every step has something to compare. Every
# `telemetry_every` steps the trainer records, per block of the encoder (embeddings, each layer, pooler), the
# dot products of every pair of task gradients *before* surgery: cosines, conflicts and norms follow from them.

# %% tags=["nbval-ignore-output"]
runs, telemetry, recorders = {}, {}, {}
for surgery in ("none", "pcgrad"):
    trainer = Trainer(config_for(surgery, surgery), verbose=False)
    runs[surgery] = trainer.fit()
    recorders[surgery] = trainer.surgery.telemetry  # mtkit.surgery.GradientTelemetry
    telemetry[surgery] = recorders[surgery].to_frame()
    print(f"{surgery}: {len(trainer.surgery.telemetry)} telemetry records; best dev "
          + ", ".join(f"{t} {s:.3f}" for t, s in runs[surgery].best["scores"].items()))

# %% [markdown]
# The cosine between two tasks' gradients for every block (rows) and step (columns); red is conflict:

# %%
from mtkit.teach import plots

frame = telemetry["pcgrad"]
fig = plots.plot_conflict_heatmap(frame, pair=("sst", "sts"))
display(fig)

# %% [markdown]
# How often each pair conflicts over the whole encoder, smoothed over a few steps:

# %%
display(plots.plot_conflict_rate(frame, window=5))

# %% [markdown]
# ### The conflict explorer
#
# Pick a run, a task pair, a group of blocks, a step range and a view: the heatmap, the conflict rate, the
# gradient-norm ratio (does one task's gradient dwarf the others?), or a comparison of the two runs
# (`mtkit.teach.widgets.ConflictExplorer`, over the `mtkit.teach.plots` functions used above).

# %% tags=["nbval-ignore-output"]
from mtkit.teach.widgets import ConflictExplorer

explorer = ConflictExplorer({"pcgrad": telemetry["pcgrad"], "none": telemetry["none"]})
explorer.widget

# %% [markdown]
# Telemetry is measured before surgery, so the two runs' conflicts are directly comparable; what differs is the
# path each run took. Their dev scores and conflict rates, and two numbers that say how much there was to
# change: the **norm ratio** (the largest task gradient over the smallest, median over the steps) and the
# **removed fraction**, $\lVert g_{\text{plain}} - g_{\text{PCGrad}} \rVert / \lVert g_{\text{plain}} \rVert$ (mean over
# the steps; 0 for the plain run, which removes nothing), from `GradientTelemetry.norm_ratio()` and
# `.removed_fraction()`:

# %% tags=["nbval-ignore-output"]
def conflict_rate(frame):
    rows = frame[frame["block"].astype(str) == "all"]
    return float(rows["conflict"].mean())

def describe(result, recorder):
    return {"conflict rate (whole encoder)": conflict_rate(recorder.to_frame()),
            "norm ratio": float(np.nanmedian(recorder.norm_ratio())),
            "removed fraction": float(np.nanmean(recorder.removed_fraction())),
            **result.best["scores"], "overall": result.best["overall"]}

summary = pd.DataFrame({surgery: describe(runs[surgery], recorders[surgery]) for surgery in runs}).T
summary.round(3)

# %% [markdown]
# On a few dozen steps the two runs barely differ, and that is the usual finding: report B saw PCGrad overfit,
# report C gained little. The removed fraction says why: PCGrad takes away only a few per cent of the step.
# With two tasks whose gradients have cosine $c < 0$ it removes exactly $\lvert c \rvert$ of the plain sum,
# whatever their norms (work it out: both projections remove $\lvert c \rvert$ times the other's direction), and in 22
# million dimensions the cosines are small.
#
# ## When one task's gradient dominates
#
# Surgery is meant for the case where one task's gradient dwarfs another's and they disagree: then the plain sum
# follows the big task, and its conflicting component can undo the small tasks' whole progress, because that
# component is about $\lvert c \rvert \lVert g_{\text{big}} \rVert$, which can exceed $\lVert g_{\text{small}} \rVert$.
# PCGrad removes it. Make that happen: the same two runs with the loss of `scaled_task` multiplied by
# `scale` (a task `weight` in the config, `mtkit.train.schedules.TaskWeights`), so its gradient is `scale`
# times larger. The last column compares what PCGrad removed with the smallest task's own gradient.

# %% tags=["nbval-ignore-output"]
for surgery in ("none", "pcgrad"):
    name = f"{surgery}, {scaled_task} x {scale:g}"
    trainer = Trainer(config_for(surgery, f"{surgery}-scaled", weights={scaled_task: scale}), verbose=False)
    runs[name] = trainer.fit()
    recorders[name] = trainer.surgery.telemetry

def removed_over_smallest(recorder):
    """Mean over the steps of |removed| / the smallest task-gradient norm (0 without surgery)."""
    tasks = recorder.task_frame()
    smallest = tasks[tasks["block"].astype(str) == "all"].groupby("step")["norm"].min().to_numpy()  # (S,)
    plain = recorder.to_frame().drop_duplicates("step")  # per step: plain and removed norms
    return float(np.mean(plain["removed_norm"].to_numpy() / smallest))

comparison = pd.DataFrame({name: {**describe(runs[name], recorders[name]),
                                  "removed / smallest task's gradient": removed_over_smallest(recorders[name])}
                           for name in runs}).T
display(comparison.round(3))
plain_run, pcgrad_run = f"none, {scaled_task} x {scale:g}", f"pcgrad, {scaled_task} x {scale:g}"
for label, (plain, surgery) in {"unscaled": ("none", "pcgrad"), f"{scaled_task} x {scale:g}": (plain_run, pcgrad_run)}.items():
    effect = {t: comparison.loc[surgery, t] - comparison.loc[plain, t] for t in ("sst", "para", "sts", "overall")}
    print(f"PCGrad minus plain, {label}: " + ", ".join(f"{t} {d:+.3f}" for t, d in effect.items())
          + f"; removed fraction {comparison.loc[surgery, 'removed fraction']:.3f}")

# %% [markdown]
# What to read in the table. The scaling multiplies the norm ratio by about `scale`. The removed fraction stays
# a few per cent (it is a share of the step, set by the cosines), but measured against the smallest task's own
# gradient, what PCGrad removes grows about `scale`-fold, to more than that task's whole gradient: without
# surgery, the scaled task's conflicting component would undo the small task's progress. That is where the
# outcome changes: the scaled task's own score is the same in both runs (PCGrad barely touches the big
# gradient), while the task with the smallest gradient, STS here, ends higher with PCGrad than without, a
# difference several times the unscaled one (the two "PCGrad minus plain" lines). The scaling itself costs the
# small tasks more than PCGrad gives back: surgery fixes the *direction* of a conflict, not the imbalance of
# magnitudes (for that, weight the losses, or see the weighting methods in `mtkit.surgery.weighting`). One seed
# and 200 dev examples per task: a difference of a few thousandths is within the noise; rerun with other
# seeds before trusting one.

# %%
metrics = {"telemetry_steps": int(telemetry["pcgrad"]["step"].nunique()),
           "conflict_rate_pcgrad": conflict_rate(telemetry["pcgrad"]),
           "conflict_rate_none": conflict_rate(telemetry["none"]),
           "overall_pcgrad": runs["pcgrad"].best["overall"], "overall_none": runs["none"].best["overall"],
           "removed_fraction_pcgrad": float(comparison.loc["pcgrad", "removed fraction"]),
           "removed_fraction_pcgrad_scaled": float(comparison.loc[pcgrad_run, "removed fraction"]),
           "norm_ratio_scaled": float(comparison.loc[pcgrad_run, "norm ratio"]),
           "overall_pcgrad_scaled": float(comparison.loc[pcgrad_run, "overall"]),
           "overall_none_scaled": float(comparison.loc[plain_run, "overall"])}
path = save_results("09_gradient_surgery", metrics, results_dir, data=source.kind, device=str(device),
                    checks=book.record())
shutil.rmtree(workdir, ignore_errors=True)
print(f"wrote {path.name}")

# %%
"""Sanity checks: your PCGrad equals mtkit's on real gradients; telemetry was recorded; the widgets drew."""
assert relative_difference < 1e-4
assert metrics["telemetry_steps"] >= 1
assert not explorer.errors and not toy.errors and explorer.figure is not None

# %% [markdown]
# ## Summary
#
# - Two task gradients conflict when their dot product is negative; PCGrad projects each onto the normal plane
#   of every gradient it conflicts with, then sums.
# - mtkit computes PCGrad on the $K \times K$ Gram matrix of the gradients (cheap, no host synchronisation) and
#   records per-block telemetry before surgery, so runs with and without it can be compared.
# - Conflicts are common (cosines hover near zero in millions of dimensions); whether removing them helps is
#   an empirical question the telemetry lets you study.
# - The removed fraction says how much surgery changed a step; with equal loss weights it is a few per cent and
#   the runs barely differ. When one task's loss is scaled up, PCGrad removes more than the smallest task's whole
#   gradient, and it protects that task's score.
#
# ## Questions
#
# 1. PCGrad projects $g_i$ off the *original* $g_j$, not off the already projected one. Construct three 2-D
#    vectors where the two choices give different updates.
# 2. With two tasks, is the PCGrad update always a descent direction for both losses (to first order)? With
#    three?
# 3. Which blocks conflict most in the heatmap: the embeddings, the middle layers or the top layer? Why might the
#    top layers disagree more?
# 4. Report C applies surgery between the main gradient and $\lambda$ times the sum of the auxiliary ones. How
#    does that change what gets projected compared with PCGrad over all three tasks?
