# %% [markdown]
# # 01 · Setup and a tour of the data
#
# This kit builds, piece by piece, the system of the CS224N default final project: one BERT encoder shared by
# three tasks, fine-tuned together. Each notebook teaches one box on the path the data takes:
#
# ```
# text -> tokenizer -> minBERT -> pooling -> heads -> losses -> multitask trainer (schedule, AdamW, PCGrad) -> metrics
# ```
#
# This first notebook answers three questions before any model appears:
#
# 1. **Where does the code run?** On a GPU when there is one, else the CPU; every notebook runs on both.
# 2. **Which data is this?** The CS224N files when you have them, or mtkit's small *demo set*, which mtkit writes
#    itself in exactly the same file formats so that every notebook runs anywhere in about a minute.
# 3. **What do the three tasks look like?** Sizes, labels, the score a model must beat (the majority baseline),
#    sentence lengths, and how batching turns sentences of different lengths into tensors.

# %% [markdown]
# ## Parameters
#
# Every notebook starts with a cell tagged `parameters`. Change the values here, or let
# [papermill](https://papermill.readthedocs.io) inject others (`make demo` and `make reproduce` do).
# `data_dir=None` looks for the CS224N files (`$MTKIT_DATA`, then `./data`) and falls back to the demo set;
# `data_dir="demo"` forces the demo set; a folder path forces that folder.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU; or "cpu", "cuda", "mps"
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: the default encoder all-MiniLM-L6-v2 (6 layers x 384); or a Hugging Face BERT folder
train_limit = None     # training examples per task to look at (None: all)
dev_limit = None       # dev examples per task (None: all)
epochs = 1             # (no training in this notebook)
batch_size = 16        # batch size for the batching demo
max_length = 64        # longest sequence in tokens; longer ones are truncated
seed = 0
results_dir = None     # where results/01_setup_and_data.json goes (None: runs/notebooks/results)
progress = True        # (no long loops in this notebook)

# %% [markdown]
# ## Setup
#
# `mtkit.get_device()` picks CUDA, then Apple's MPS, then the CPU, and says which. Nothing in this kit asserts
# that a GPU exists: a GPU only makes the same code faster. `seed_everything` seeds Python, NumPy and torch so
# that a run repeats.

# %% tags=["nbval-ignore-output"]
%matplotlib inline
import collections

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import mtkit
from mtkit.teach.notebook_runner import data_source, save_results

print(f"mtkit {mtkit.__version__}, torch {torch.__version__}")
mtkit.seed_everything(seed)
device = mtkit.get_device(device)

# %% [markdown]
# ## Which data?
#
# The CS224N files are tab-separated: `ids-sst-{train,dev,test-student}.csv` (sentiment),
# `quora-{...}.csv` (paraphrase) and `sts-{...}.csv` (similarity). `mtkit data fetch --dest ./data` downloads
# them. When they are not found, mtkit writes its **demo set** (synthetic, generated from templates with a
# fixed seed) into a cache folder and uses it, and says so. The demo set is small (600 train, 200 dev and 200
# test examples per task) but *learnable*: what decides each label is known, so curves move in seconds on a CPU.
# Numbers on it say whether the code works, not how good a method is on real text.

# %%
source = data_source(data_dir)
print("kind of data:", source.kind)

# %% [markdown]
# ## The three tasks
#
# A `TaskSpec` says what a task is: its kind (single-sentence classification, pair classification, pair
# regression), its files and its metric. The project scores SST and Quora by accuracy and STS by Pearson's r,
# and sums them into one **overall score** that maps Pearson from [-1, 1] to [0, 1]:
# `overall = (sst + para + (sts + 1) / 2) / 3`.

# %%
from mtkit.data import default_tasks, load_split, to_dataframe

tasks = default_tasks()
pd.DataFrame([{"task": t.name, "kind": t.kind, "metric": t.metric, "train file": t.train_file,
               "description": t.description} for t in tasks]).set_index("task")

# %% [markdown]
# Loading never drops a row silently: each file comes with a `LoadReport` that counts the rows read, kept and
# rejected (with line numbers and reasons). On the real data, the Quora training file has a few malformed rows,
# and you will see them listed here.

# %%
data = {}
for spec in tasks:
    train, train_report = load_split(spec, source.path, "train")
    dev, dev_report = load_split(spec, source.path, "dev")
    if train_limit is not None:
        train = train[:train_limit]
    if dev_limit is not None:
        dev = dev[:dev_limit]
    data[spec.name] = {"train": train, "dev": dev}
    print(train_report)
    print(dev_report)

# %% [markdown]
# A few examples of each task. SST labels go from 0 (very negative) to 4 (very positive); Quora labels say
# whether two questions ask the same thing (1) or not (0); STS scores say how close two sentences are in
# meaning, from 0 (unrelated) to 5 (same meaning).

# %%
with pd.option_context("display.max_colwidth", 80):
    display(to_dataframe(data["sst"]["train"][:4]).drop(columns="id"))
    display(to_dataframe(data["para"]["train"][:4]).drop(columns="id"))
    display(to_dataframe(data["sts"]["train"][:4]).drop(columns="id"))

# %% [markdown]
# ## Labels and the score to beat
#
# Before training anything, know what a model that learns nothing scores. For classification that is the
# **majority baseline**: always predict the most frequent training label. A model below it has learned less
# than the label counts. For STS, a constant prediction has no correlation at all (Pearson 0).

# %%
from mtkit.eval.metrics import accuracy

def labels(examples):
    return [ex.label for ex in examples]

baselines = {}
for name in ("sst", "para"):
    majority = collections.Counter(labels(data[name]["train"])).most_common(1)[0][0]
    dev_labels = labels(data[name]["dev"])
    baselines[name] = accuracy([majority] * len(dev_labels), dev_labels)
    print(f"{name}: majority class {majority!r}, dev accuracy of always predicting it = {baselines[name]:.3f}")
sts_scores = np.array(labels(data["sts"]["train"]), dtype=float)
print(f"sts: train scores from {sts_scores.min():.1f} to {sts_scores.max():.1f}, mean {sts_scores.mean():.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
for split, offset in (("train", -0.2), ("dev", 0.2)):
    counts = collections.Counter(labels(data["sst"][split]))
    share = np.array([counts[c] for c in range(5)]) / sum(counts.values())
    axes[0].bar(np.arange(5) + offset, share, width=0.4, label=split)
    counts = collections.Counter(labels(data["para"][split]))
    share = np.array([counts[c] for c in (0, 1)]) / sum(counts.values())
    axes[1].bar(np.arange(2) + offset, share, width=0.4, label=split)
axes[0].set(title="SST: sentiment classes", xlabel="class (0 very negative ... 4 very positive)",
            ylabel="share of examples", xticks=range(5))
axes[1].set(title="Quora: paraphrase labels", xlabel="label (0 different, 1 paraphrase)",
            ylabel="share of examples", xticks=[0, 1])
axes[2].hist(sts_scores, bins=20, range=(0, 5), color="tab:green")
axes[2].set(title="STS: similarity scores (train)", xlabel="gold similarity (0 unrelated ... 5 same meaning)",
            ylabel="number of pairs")
for ax in axes[:2]:
    ax.legend()
fig.suptitle(f"Labels of the three tasks ({source.kind} data)")
plt.show()

# %% [markdown]
# ## Sentence lengths in tokens
#
# BERT reads *tokens* (WordPiece pieces, the subject of notebook 02), not words, and its cost grows with the
# number of tokens. `max_length` cuts longer sequences; the plot shows how much of each task that cut affects.
# A pair in the bi-encoder layout is two sequences, one per sentence.

# %%
from mtkit.model.tokenizer import Tokenizer

tokenizer = Tokenizer.from_pretrained(encoder)
lengths = {
    "sst": [len(ids) for ids in tokenizer([ex.sentence for ex in data["sst"]["train"]], padding=False,
                                          truncation=False, return_tensors=None)["input_ids"]],
    "para": [len(ids) for ids in tokenizer([ex.sentence1 for ex in data["para"]["train"]], padding=False,
                                           truncation=False, return_tensors=None)["input_ids"]],
    "sts": [len(ids) for ids in tokenizer([ex.sentence1 for ex in data["sts"]["train"]], padding=False,
                                          truncation=False, return_tensors=None)["input_ids"]],
}
truncated = {name: float(np.mean(np.array(v) > max_length)) for name, v in lengths.items()}
pd.DataFrame.from_dict({name: {"median tokens": int(np.median(v)), "95th percentile": int(np.percentile(v, 95)),
                     "longest": max(v), f"share above max_length={max_length}": round(truncated[name], 3)}
              for name, v in lengths.items()}, orient="index")

# %%
fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
top = max(max(v) for v in lengths.values())
for name, values in lengths.items():
    ax.hist(values, bins=range(0, top + 2), histtype="step", linewidth=1.5, label=name)
ax.axvline(max_length, color="black", linestyle="--", label=f"max_length = {max_length}")
ax.set(title="Sentence lengths (first sentence of each pair)", xlabel="tokens, [CLS] and [SEP] included",
       ylabel="number of sentences")
ax.legend()
plt.show()

# %% [markdown]
# ## From sentences to batches
#
# A batch is a rectangle: every sequence is padded to the longest one *in the batch*, and an `attention_mask`
# (1 = real token, 0 = padding) tells the model which positions to ignore. Padding is wasted compute, so
# mtkit's `BucketBatchSampler` groups sentences of similar length: shuffle, cut into large buckets, sort each
# bucket by length, cut batches, shuffle the batches. The order stays random from epoch to epoch, and the
# padding shrinks.

# %%
from mtkit.data import BucketBatchSampler, make_loader, padding_stats

sst_lengths = lengths["sst"]
g = torch.Generator().manual_seed(seed)
random_batches = [b.tolist() for b in torch.randperm(len(sst_lengths), generator=g).split(batch_size)]
bucketed = BucketBatchSampler(sst_lengths, batch_size, seed=seed).batches()
padding = {"random batches": padding_stats(sst_lengths, random_batches),
           "bucketed batches": padding_stats(sst_lengths, bucketed)}
pd.DataFrame(padding).T.astype({"real": int, "padded": int, "total": int}).round(3)

# %% [markdown]
# `overhead` is padded tokens per real token. One batch of each layout the kit uses: single sentences,
# sentence pairs encoded separately (the *bi-encoder* layout: keys ending in `_1` and `_2`), and pairs joined
# into one sequence `[CLS] a [SEP] b [SEP]` (the *cross-encoder* layout, where `token_type_ids` mark which
# sentence each token belongs to).

# %%
examples = {"single (sst)": (data["sst"]["train"], "bi"), "bi-encoder pair (para)": (data["para"]["train"], "bi"),
            "cross-encoder pair (para)": (data["para"]["train"], "cross")}
for title, (rows, layout) in examples.items():
    loader = make_loader(rows[:64], tokenizer, batch_size=4, layout=layout, shuffle=False, max_length=max_length)
    batch = next(iter(loader))
    shapes = {k: tuple(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    print(f"{title}: {shapes}")

# %% [markdown]
# ## Results
#
# Each notebook ends by writing a few key numbers to a small JSON file. `make demo` collects them into a
# summary table (`runs/demo/summary.md`); the tests check them against sane bounds.

# %%
metrics = {"sst_train": len(data["sst"]["train"]), "para_train": len(data["para"]["train"]),
           "sts_train": len(data["sts"]["train"]), "sst_majority_dev_acc": baselines["sst"],
           "para_majority_dev_acc": baselines["para"],
           "padding_overhead_random": padding["random batches"]["overhead"],
           "padding_overhead_bucketed": padding["bucketed batches"]["overhead"],
           "sst_share_truncated": truncated["sst"]}
path = save_results("01_setup_and_data", metrics, results_dir, data=source.kind, device=str(device))
print(f"wrote {path.name}")

# %%
"""Sanity checks: every split loaded, bucketing never pads more than random batches."""
assert all(len(split) > 0 for task in data.values() for split in task.values())
assert 0.0 < baselines["sst"] < 1.0 and 0.0 < baselines["para"] < 1.0
assert padding["bucketed batches"]["padded"] <= padding["random batches"]["padded"]

# %% [markdown]
# ## Summary
#
# - `mtkit.get_device()` chooses the device; the same notebook runs on a laptop CPU and on a GPU.
# - The data comes from one place (`data_dir`, `$MTKIT_DATA`, `./data`, else the demo set), and the notebook says
#   which. Every load reports what it kept and what it rejected.
# - Three tasks: SST (5 classes, accuracy), Quora (paraphrase, accuracy), STS (similarity 0-5, Pearson). The
#   majority baseline is the score a model must beat.
# - Batches are padded rectangles with an attention mask; bucketing by length removes most of the padding.
#
# ## Questions
#
# 1. Why is Pearson, not accuracy or mean squared error, the STS metric? What does a model that predicts the
#    right *order* of similarities but the wrong scale score?
# 2. The overall score maps Pearson to (r + 1) / 2. What overall score does a model at the majority baselines
#    and Pearson 0 get on this data?
# 3. Bucketing makes batches of similar lengths. Could it hurt training? (Think of what else sentence length
#    correlates with.)
# 4. With `data_dir` pointing at the CS224N files, which task has the longest sentences, and what share would
#    `max_length=64` truncate?
