# %% [markdown]
# # 08 · Layer-wise learning-rate decay
#
# The layers of a pretrained encoder are not equally task-specific. The lowest layers hold general features
# (word identity, local syntax) that every task needs; the top layers are closer to the pre-training objective
# and have the most to relearn; the heads are brand new. **Layer-wise learning-rate decay** (LLRD) gives each
# block a learning rate that shrinks with its distance from the top (Howard & Ruder 2018, "discriminative
# fine-tuning"). Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification?") apply it to BERT as
# $\eta^{k-1} = \xi \cdot \eta^{k}$: the top layer $k = L$ trains at the base lr $\eta^L$, each layer below at $\xi$
# times the one above, with $\xi = 0.95$. Report D uses the same rule, "lr of the $i$-th layer from the top
# $= \text{lr}\cdot\xi^{\,i-1}$", heads at lr. mtkit counts the exponent from the top:
#
# $$\text{lr}_\text{block} = \text{lr} \cdot \xi^{\,\text{depth}} \qquad \text{depth} = 0 \text{ (heads, top layer, pooler)},\ 1 \text{ (the layer below)},\ \dots,\ L-1 \text{ (bottom layer)},\ L \text{ (embeddings)}$$
#
# The decay starts *below* the top layer. Starting it at the top layer (top layer at $\text{lr}\cdot\xi$) is an
# off-by-one that slows every layer by one more factor of $\xi$; the check below names it.
#
# Report D tried it ($\xi = 0.95$) and found it did not help its best model; this notebook shows what it does,
# so you can judge when it might.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2 (6 layers); or a Hugging Face BERT folder
train_limit = 300      # SST training sentences per run (None: all)
dev_limit = None
epochs = 2
batch_size = 16
max_length = 64
seed = 0
results_dir = None
lr = 5e-5              # the heads' lr (depth 0)
decays = [1.0, 0.95, 0.7]  # decay factors xi to compare (1.0: no decay)
weight_decay = 0.01
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

import mtkit
from mtkit.exercises.checks import Workbook
from mtkit.teach.notebook_runner import data_source, save_results

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)
workdir = Path(tempfile.mkdtemp(prefix="mtkit-08-"))

# %% [markdown]
# ## The groups, printed
#
# `mtkit.optim.layerwise_lr_groups` sorts every trainable parameter into a block by its name (the minBERT naming
# contract: `encoder.layers.3.attention.query.weight` is in block `layers.3`), gives the block its depth and
# lr, and splits each block in two: weights with weight decay, and biases and LayerNorm weights without. It
# refuses to guess: a parameter it cannot place is an error, and it checks that every parameter lands in
# exactly one group.

# %%
from mtkit.optim import layerwise_lr_groups
from mtkit.train.config import TrainConfig
from mtkit.train.trainer import Trainer

def config_for(decay, name="run", tasks=("sst", "para", "sts")):
    return TrainConfig(encoder=encoder, data_dir=str(source.path), tasks=list(tasks), lr=lr,
                       llrd_decay=None if decay == 1.0 else decay, weight_decay=weight_decay, epochs=epochs,
                       batch_size=batch_size, max_length=max_length, train_limit=train_limit, dev_limit=dev_limit,
                       seed=seed, device=str(device), telemetry_every=0, write_predictions=False,
                       progress=progress, output_dir=str(workdir / name))

model = Trainer(config_for(1.0), verbose=False).model
groups = layerwise_lr_groups(model, lr=lr, decay=0.95, weight_decay=weight_decay)
print(groups)

# %%
L = model.encoder.config.num_hidden_layers
depths = np.arange(L + 1)
fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
for xi in (1.0, 0.95, 0.8, 0.7):
    ax.plot(depths, lr * xi ** depths, marker="o", label=f"decay xi = {xi}")
ax.set(yscale="log", title=f"Learning rate by depth ({L}-layer encoder, heads and top layer at lr = {lr:g})",
       xlabel=f"depth from the top (0 heads, top layer, pooler; {L - 1} bottom layer; {L} embeddings)",
       ylabel="learning rate (log scale)", xticks=depths)
ax.legend()
plt.show()

# %% [markdown]
# The groups follow the papers' rule exactly. Here is report D's formula, layer by layer from the top, beside
# the lr mtkit gave each block:

# %%
block_lr = {g["block"]: g["lr"] for g in groups.groups}  # one lr per block (weights and no-decay halves agree)
rows = [(f"layers.{L - i}", i, lr * 0.95 ** (i - 1), block_lr[f"layers.{L - i}"]) for i in range(1, L + 1)]
rows += [("embeddings (below layers.0)", L + 1, lr * 0.95 ** L, block_lr["embeddings"]),
         ("pooler (with the top layer)", 1, lr, block_lr["pooler"]),
         ("heads", None, lr, block_lr["heads"])]
papers = pd.DataFrame(rows, columns=["block", "i-th from the top", "report D: lr * 0.95^(i-1)", "mtkit"])
papers["mtkit / lr"] = papers["mtkit"] / lr
print(papers.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))

# %% [markdown]
# The top layer and the pooler train at the heads' lr ($0.95^0 = 1$). In the default 6-layer encoder the bottom
# layer gets $0.95^{5} \approx 0.77$ of it and the embeddings, one step below, $0.95^6 \approx 0.74$: a gentle tilt. With
# BERT-base's 12 layers the embeddings get $0.95^{12} \approx 0.54$; with $\xi = 0.7$ and 6 layers, $0.12$.
#
# ## Exercise: build the groups yourself
#
# Write `llrd_param_groups(model, lr, decay, weight_decay)` in `exercises/llrd.py`. Use `mtkit.model.names.depth_of`
# for the depth and `mtkit.optim.llrd.uses_weight_decay` for the no-decay rule; how you bundle parameters into
# groups is up to you. The check compares every parameter's lr and weight decay with mtkit's, checks that each
# trainable parameter is in exactly one group and frozen ones in none, and that an unknown parameter is an
# error rather than a silent guess.

# %%
book = Workbook(exercise_source)  # whose answers are checked: yours in exercises/, unless told otherwise
llrd_param_groups = book.check("llrd")  # yours if it passes, else the worked answer

# %% [markdown]
# On the real multitask model, your groups and mtkit's give every parameter the same lr:

# %%
yours = {id(p): (g["lr"], g["weight_decay"]) for g in llrd_param_groups(model, lr, 0.95, weight_decay)
         for p in g["params"]}
theirs = {id(p): (g["lr"], g["weight_decay"]) for g in groups.groups for p in g["params"]}
same = yours.keys() == theirs.keys() and all(np.allclose(yours[k], theirs[k], rtol=1e-12) for k in yours)
print(f"{len(yours)} parameter tensors; the same lr and weight decay for every one: {same}")

# %% [markdown]
# ## Schedules keep the ratios
#
# The groups carry their lr directly, so an lr schedule (here: linear warmup over 10% of the steps, then linear
# decay) multiplies every group by the same factor and the layer-wise ratios stay fixed:

# %%
from mtkit.optim import AdamW, make_scheduler

optimizer = AdamW(groups.groups, lr=lr)
scheduler = make_scheduler("linear", optimizer, num_training_steps=100, warmup_ratio=0.1)
shown = [0, len(groups.groups) // 2, len(groups.groups) - 1]
trace = {i: [] for i in shown}
for step in range(100):
    for i in shown:
        trace[i].append(optimizer.param_groups[i]["lr"])
    optimizer.step()
    scheduler.step()
fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
for i in shown:
    ax.plot(trace[i], label=f"{optimizer.param_groups[i]['name']} (depth {optimizer.param_groups[i]['depth']})")
ax.set(title="Warmup + linear decay applied to the layer-wise groups", xlabel="optimizer step",
       ylabel="learning rate")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# ## Does it help? What does it change?
#
# Three short runs on SST that differ only in $\xi$ (the effect does not depend on how many tasks share the
# encoder, and one task keeps this quick). Beside the dev score, measure what LLRD is about: how
# far each block's weights moved from the pretrained ones, $\lVert W_\text{after} - W_\text{before} \rVert /
# \lVert W_\text{before} \rVert$.

# %% tags=["nbval-ignore-output"]
from mtkit.model.names import block_of

pretrained = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}

def movement(trained):
    moved, size = {}, {}
    for name, p in trained.encoder.named_parameters():
        block = block_of(name, L)
        block = "embeddings" if block.startswith("embeddings") else block
        moved[block] = moved.get(block, 0.0) + (p.detach().cpu() - pretrained[name].cpu()).pow(2).sum().item()
        size[block] = size.get(block, 0.0) + pretrained[name].cpu().pow(2).sum().item()
    return {b: (moved[b] / size[b]) ** 0.5 for b in moved}

results, moved = {}, {}
for xi in decays:
    trainer = Trainer(config_for(xi, f"decay-{xi}", tasks=["sst"]), verbose=False)
    result = trainer.fit()
    results[xi] = result.best
    moved[xi] = movement(trainer.model)
    print(f"decay {xi}: SST dev accuracy {result.best['scores']['sst']:.3f}")

# %%
order = ["embeddings"] + [f"layers.{i}" for i in range(L)]  # the pooler is left out: with mean pooling it
# receives no gradient at all (its movement is exactly 0), whatever its lr
fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
for xi in decays:
    ax.plot(range(len(order)), [moved[xi][b] for b in order], marker="o", label=f"decay xi = {xi}")
ax.set(title="How far each block moved from the pretrained weights", xticks=range(len(order)),
       xlabel="block (bottom to top)", ylabel="relative change |W - W0| / |W0|", yscale="log")
ax.set_xticklabels(order, rotation=30)
ax.legend()
plt.show()

# %% tags=["nbval-ignore-output"]
pd.DataFrame({f"xi = {xi}": {"SST dev accuracy": r["scores"]["sst"], "embeddings moved": moved[xi]["embeddings"],
                             "top layer moved": moved[xi][f"layers.{L - 1}"]} for xi, r in results.items()}).T.round(4)

# %% [markdown]
# The movement plot is the mechanism: lower blocks move less as $\xi$ shrinks. Whether the scores improve depends
# on whether the lower layers *should* stay put: with little data, protecting general features can help; with a
# strong pretrained encoder and enough data (report D's setting), freezing-by-degrees costs the model some
# useful adaptation.

# %%
metrics = {"num_groups": len(groups.groups), "embeddings_lr_ratio": block_lr["embeddings"] / lr,
           "top_layer_lr_ratio": block_lr[f"layers.{L - 1}"] / lr,
           "groups_match_mtkit": bool(same),
           **{f"sst_acc_decay_{xi}": r["scores"]["sst"] for xi, r in results.items()},
           "movement_ratio_embeddings": moved[min(decays)]["embeddings"] / moved[max(decays)]["embeddings"]}
path = save_results("08_layerwise_lr_decay", metrics, results_dir, data=source.kind, device=str(device),
                    checks=book.record())
shutil.rmtree(workdir, ignore_errors=True)
print(f"wrote {path.name}")

# %%
"""Sanity checks: your groups equal mtkit's; mtkit's follow report D's formula (the top layer at lr); stronger
decay moves the embeddings less."""
assert same
assert np.allclose(papers["mtkit"], papers["report D: lr * 0.95^(i-1)"], rtol=1e-12)
assert block_lr[f"layers.{L - 1}"] == block_lr["pooler"] == lr
assert moved[min(decays)]["embeddings"] < moved[max(decays)]["embeddings"]

# %% [markdown]
# ## Summary
#
# - LLRD gives each block $\text{lr}\cdot\xi^{\text{depth}}$: the heads and the top layer at full speed (the
#   decay starts below the top layer, as in Sun et al. 2019 and report D), the embeddings slowest.
# - mtkit builds the groups from parameter names, prints them, refuses unknown names, and keeps biases and
#   LayerNorm weights out of weight decay. Any lr schedule keeps the ratios.
# - The effect is visible in how far each block moves; whether it helps the dev score is an empirical question
#   (report D: it did not, at $\xi = 0.95$ on the full data).
#
# ## Questions
#
# 1. With $\xi = 0.95$, how much smaller is the embeddings' lr in a 6-layer encoder than in a 24-layer one? What
#    does that suggest about choosing $\xi$ for deeper models?
# 2. Suppose the decay started at the top layer instead (top layer at $\text{lr}\cdot\xi$). By what factor would
#    every encoder block's lr change for $\xi = 0.95$? For $\xi = 0.7$? Which blocks would then train slower
#    than in report D's rule, and would a larger base lr undo it?
# 3. LLRD and the `two-stage` mode (heads first, then everything) both protect the pretrained weights early on.
#    How are they different? Could you combine them?
# 4. Why exclude LayerNorm weights from weight decay? What would decaying a LayerNorm gain towards 0 do?
