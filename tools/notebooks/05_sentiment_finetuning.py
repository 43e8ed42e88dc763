# %% [markdown]
# # 05 · Fine-tuning for sentiment
#
# A pretrained encoder gives a vector per sentence; a task needs a **head** that turns it into an answer. For
# SST that is the starter code's classifier: dropout, then one linear layer to 5 logits, trained with
# cross-entropy. Two ways to fine-tune, the `--fine-tune-mode` of the CS224N project:
#
# - **last-linear-layer**: freeze the encoder, train only the head (a *linear probe*). Cheap: autograd records
#   nothing inside the encoder, so there is no backward pass through it.
# - **full-model**: train everything, encoder included, with a small learning rate so the pretrained weights
#   move only a little.
#
# We run both on the same data, compare them with the majority baseline, and look at *which* mistakes the
# better one makes (the confusion matrix).

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2; or a Hugging Face BERT folder
train_limit = None     # SST training sentences (None: all)
dev_limit = None       # SST dev sentences (None: all)
epochs = 2
batch_size = 16
max_length = 64
seed = 0
results_dir = None
lr_head = 1e-3         # last-linear-layer: only the head trains, so a large lr is fine
lr_full = 5e-5         # full-model: the encoder moves too (BERT recipes use 1e-5 to 5e-5)
eval_every = 10        # optimizer steps between dev evaluations (for the curves)
implementations = None  # last section's run: your exercises/ (unless $MTKIT_EXERCISE_SOURCE); or "solutions"
yours_steps = 30       # optimizer steps of that run
progress = True

# %% tags=["nbval-ignore-output"]
%matplotlib inline
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

import mtkit
from mtkit.teach.notebook_runner import data_source, save_results
from mtkit.train.config import TrainConfig
from mtkit.train.trainer import Trainer

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)
workdir = Path(tempfile.mkdtemp(prefix="mtkit-05-"))  # checkpoints of this notebook's runs; removed at the end

# %% [markdown]
# ## The model: encoder, pooling, head
#
# `mtkit.train.config.TrainConfig` describes a run; every choice of the reports is a field (notebook 07 shows
# them all). Here: one task (`sst`), mean pooling, the default sentiment head. `Trainer(config)` builds the data,
# the tokenizer, the encoder and the heads.

# %%
def config_for(mode, lr):
    return TrainConfig(encoder=encoder, data_dir=str(source.path), tasks=["sst"], fine_tune_mode=mode, lr=lr,
                       epochs=epochs, batch_size=batch_size, max_length=max_length, train_limit=train_limit,
                       dev_limit=dev_limit, seed=seed, device=str(device), eval_every=eval_every,
                       telemetry_every=0, write_predictions=False, progress=progress,
                       output_dir=str(workdir / mode))

trainer = Trainer(config_for("full-model", lr_full), verbose=False)
model = trainer.model
print(model.describe())
print(model.heads["sst"])

# %% [markdown]
# How many parameters each mode trains (`mtkit.optim.apply_finetune_mode` sets `requires_grad`):

# %%
from mtkit.optim import apply_finetune_mode

for mode in ("last-linear-layer", "full-model"):
    print(apply_finetune_mode(model, mode))

# %% [markdown]
# ## One step, by hand
#
# Everything the trainer does per step, written out: a batch goes through encoder, pooling and head; the loss
# is cross-entropy against the labels; backward fills `.grad`; AdamW updates the weights. Repeating the same
# batch should lower its loss.

# %% tags=["nbval-ignore-output"]
from mtkit.data import make_loader
from mtkit.optim import AdamW

loader = make_loader(trainer.tasks["sst"].train.examples, trainer.tokenizer, batch_size=batch_size,
                     max_length=max_length, seed=seed)
batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in next(iter(loader)).items()}
print({k: tuple(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)})
optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr_full)
model.train()
for step in range(3):
    loss = model.loss("sst", batch)  # encoder -> mean pooling -> head -> cross-entropy
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss on this batch {loss.item():.3f}")

# %% [markdown]
# ## Both modes, end to end
#
# The `Trainer` repeats that step over shuffled, length-bucketed batches, evaluates on the dev set every
# `eval_every` steps, keeps the best model, and logs everything to a history. Each run starts again from the
# pretrained encoder.

# %% tags=["nbval-ignore-output"]
runs = {}
for mode, lr in (("last-linear-layer", lr_head), ("full-model", lr_full)):
    run = Trainer(config_for(mode, lr), verbose=progress)
    result = run.fit()
    runs[mode] = run
    print(f"{mode}: best dev accuracy {result.best['scores']['sst']:.3f} (step {result.best['step']})")

# %% [markdown]
# The majority baseline (always predict the most frequent training class) is the score to beat:

# %% tags=["nbval-ignore-output"]
from mtkit.eval.metrics import accuracy, confusion_matrix, macro_f1

train_labels = [ex.label for ex in runs["full-model"].tasks["sst"].train.examples]
dev_labels = [ex.label for ex in runs["full-model"].tasks["sst"].dev.examples]
majority_class = int(np.bincount(train_labels).argmax())
majority = accuracy([majority_class] * len(dev_labels), dev_labels)
predictions, rows = {}, []
for mode, run in runs.items():
    _, preds = run.predict_dataset("sst", run.tasks["sst"].dev)
    predictions[mode] = preds.astype(int)
    rows.append({"mode": mode, "dev accuracy": accuracy(preds, dev_labels),
                 "dev macro-F1": macro_f1(preds, dev_labels, 5),
                 "trained parameters": sum(p.numel() for p in run.model.parameters() if p.requires_grad)})
rows.append({"mode": "majority baseline", "dev accuracy": majority, "dev macro-F1": macro_f1(
    [majority_class] * len(dev_labels), dev_labels, 5), "trained parameters": 0})
table = pd.DataFrame(rows).set_index("mode")
table.round(3)

# %% [markdown]
# ## Learning curves
#
# Dev accuracy during training. With the encoder frozen, progress is slow and bounded: the head can only read
# what the pretrained vectors already separate (notebook 04's linear probe, given many more epochs, shows where
# that bound lies). The full model improves much faster, because the encoder itself adapts to the task.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
for mode, run in runs.items():
    evals = run.history.to_frame("eval")
    steps = run.history.to_frame("step")
    axes[0].plot(evals["step"], evals["scores.sst"], marker="o", label=mode)
    axes[1].plot(steps["step"], steps["loss.sst"].rolling(5, min_periods=1).mean(), label=mode)
axes[0].axhline(majority, color="grey", linestyle="--", label="majority baseline")
axes[0].set(title="SST dev accuracy", xlabel="optimizer step", ylabel="accuracy")
axes[1].set(title="SST training loss (mean of 5 steps)", xlabel="optimizer step", ylabel="cross-entropy")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Which mistakes? The confusion matrix
#
# Rows are the true classes, columns the predicted ones, each row normalised to sum to 1. On SST (real or demo)
# most errors are between *neighbouring* classes: "negative" read as "very negative", "neutral" as "positive".
# Those are the cases annotators disagree on too.

# %%
cm = confusion_matrix(predictions["full-model"], dev_labels, num_labels=5)
share = cm / cm.sum(axis=1, keepdims=True).clip(min=1)
fig, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
sns.heatmap(share, annot=cm, fmt="d", cmap="Blues", vmin=0, vmax=1, ax=ax,
            cbar_kws={"label": "share of the true class"})
ax.set(title="SST dev, full-model fine-tuning\n(numbers: counts; colour: share of the row)",
       xlabel="predicted class (0 very negative ... 4 very positive)", ylabel="true class")
plt.show()
off_by_one = sum(cm[i, j] for i in range(5) for j in range(5) if abs(i - j) == 1)
errors = cm.sum() - np.trace(cm)

# %% tags=["nbval-ignore-output"]
print(f"{errors} errors, of which {off_by_one} ({off_by_one / max(errors, 1):.0%}) are off by one class")

# %% [markdown]
# ## Your minBERT and your AdamW fine-tune SST
#
# In the CS224N project this is where *your* code does the work: the attention and the layer of notebook 03, the
# AdamW step of notebook 04 and the mean pooling of notebook 06. The training option `implementations` swaps them
# into the trainer: minBERT runs your `attention` in your `layer_forward`, mtkit's AdamW calls your `adamw_step`
# for every parameter, and the head reads your `mean_pool`. Before the first step each piece goes through its
# check against mtkit, and the trainer refuses one that does not pass, with the check's message
# (`implementations="exercises"` in a config or `mtkit train`). In a notebook,
# `mtkit.exercises.implementations.choose` is more forgiving: it takes yours where it passes and the worked answer where it
# does not (yet), and says which. Your functions compute the eval-mode forward, so this encoder trains without
# dropout.

# %%
from mtkit.exercises import resolve_source
from mtkit.exercises.implementations import choose

learner = resolve_source(implementations)  # whose code: your exercises/ unless told otherwise
capstone = config_for("full-model", lr_full).replace(max_steps=yours_steps, eval_every=yours_steps,
                                                     output_dir=str(workdir / "yours"))
chosen = choose(learner, capstone)  # each piece: yours if it passes its check, else the worked answer

# %% tags=["nbval-ignore-output"]
yours = Trainer(capstone.replace(implementations=chosen.sources), verbose=progress)
yours_result = yours.fit()
dev_acc_yours = yours_result.best["scores"]["sst"]

# %%
print(chosen.describe(learner))
print(f"dev accuracy after {yours_result.steps} steps above the majority baseline: {dev_acc_yours > majority}")

# %% tags=["nbval-ignore-output"]
print(f"dev accuracy {dev_acc_yours:.3f} after {yours_result.steps} steps (the full-model run above: "
      f"{table.loc['full-model', 'dev accuracy']:.3f} after {runs['full-model'].step}; majority {majority:.3f})")

# %%
metrics = {"majority_baseline": majority,
           "dev_acc_last_linear": table.loc["last-linear-layer", "dev accuracy"],
           "dev_acc_full_model": table.loc["full-model", "dev accuracy"],
           "macro_f1_full_model": table.loc["full-model", "dev macro-F1"],
           "share_errors_off_by_one": off_by_one / max(errors, 1),
           "dev_acc_yours": dev_acc_yours, "yours_whose": chosen.whose(learner)}
path = save_results("05_sentiment_finetuning", metrics, results_dir, data=source.kind, device=str(device),
                    implementations=chosen.record())
shutil.rmtree(workdir, ignore_errors=True)
print(f"wrote {path.name}")

# %%
"""Sanity checks: fine-tuning beats always predicting the majority class."""
assert table.loc["full-model", "dev accuracy"] > majority
assert cm.sum() == len(dev_labels)
assert chosen.ok and yours_result.steps > 0 and yours.implementations.sources == chosen.sources

# %% [markdown]
# ## Summary
#
# - A classification head on a pooled sentence vector, trained with cross-entropy, is all a single-sentence
#   task needs.
# - Freezing the encoder (`last-linear-layer`) trains about two thousand parameters and is bounded by what the
#   frozen vectors separate; fine-tuning everything (`full-model`) trains millions, costs a backward pass
#   through the encoder, and usually wins clearly.
# - The confusion matrix shows *which* errors: on sentiment they are mostly one class off.
# - With `implementations`, the attention, layers, AdamW and pooling you wrote fine-tune the model, once each
#   has passed its check against mtkit.
#
# ## Questions
#
# 1. Why does `last-linear-layer` tolerate a learning rate 20 times larger than `full-model`? What happens to
#    the pretrained encoder with lr 1e-3 in full-model mode? (Try it.)
# 2. Report B trains the heads first and then the whole model (the `two-stage` mode). Why might starting the
#    full fine-tuning from trained heads help, compared with random heads?
# 3. Accuracy counts "very negative" for "negative" as wrong as "very positive". Which metric would reward
#    being close? Would it change which model looks best?
# 4. Mean pooling or the `[CLS]` vector for sentiment? Change `pooling` in `config_for` and compare
#    (report D uses `[CLS]` for sentiment and mean pooling for the pairs).
# 5. Once your pieces pass, remove the `/ sqrt(D)` from your attention and train with
#    `Trainer(capstone.replace(implementations="exercises"))`. What does the trainer say, and when?
