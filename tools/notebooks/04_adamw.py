# %% [markdown]
# # 04 · AdamW from scratch
#
# Fine-tuning BERT uses **AdamW**: Adam (Kingma & Ba 2015) with *decoupled* weight decay (Loshchilov & Hutter
# 2019). For each parameter $p$ with gradient $g$ at step $t$:
#
# $$m \leftarrow \beta_1 m + (1-\beta_1) g \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2$$
# $$\alpha_t = \text{lr}\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} \qquad p \leftarrow p - \alpha_t \frac{m}{\sqrt{v} + \epsilon} \qquad p \leftarrow p - \text{lr}\cdot\lambda\, p$$
#
# - $m$ and $v$ are running averages of the gradient and of its square; dividing by $\sqrt{v}$ gives every
#   parameter its own step size, so steep and flat directions move at similar speeds.
# - $m$ and $v$ start at zero and are biased towards zero early on; $\alpha_t$ corrects both biases at once
#   (the "efficient" form at the end of section 2 of the Adam paper).
# - The weight decay $\lambda$ shrinks the weights directly instead of being added to the gradient (which
#   Adam would then rescale): that is the "W".
#
# This is the update of the CS224N handout. It differs from `torch.optim.AdamW` in two details (where
# $\epsilon$ goes, and when the decay happens); we will measure both.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2; or a Hugging Face BERT folder
train_limit = None     # SST training sentences for the linear probe (None: all)
dev_limit = None       # SST dev sentences (None: all)
epochs = 40            # passes of the linear probe over its (precomputed) features
batch_size = 32
max_length = 64
seed = 0
results_dir = None
exercise_source = None  # None: your answers in exercises/ (unless $MTKIT_EXERCISE_SOURCE is set); "solutions"
toy_steps = 200        # optimizer steps on the toy loss surface
progress = True

# %% tags=["nbval-ignore-output"]
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import mtkit
from mtkit.checks import Workbook
from mtkit.notebook_runner import data_source, save_results
from mtkit.optim import AdamW

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)

# %% [markdown]
# ## Exercise: one AdamW step
#
# Write `adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, correct_bias)`
# in `exercises/adamw.py`. It updates three tensors **in place** (the optimizer's state lives in them between
# steps). The check compares it with `mtkit.optim.adamw.adamw_loop` over several steps and settings, and
# recognises the usual slips: torch's formula, no bias correction, decay before the step, decay scaled by
# $\alpha_t$. It checks your file; until you have written it, the notebook goes on with the worked answer.

# %%
book = Workbook(exercise_source)  # whose answers are checked: yours in exercises/, unless told otherwise
adamw_step = book.check("adamw")  # yours if it passes, else the worked answer

# %% [markdown]
# ## From one step to an optimizer
#
# `mtkit.optim.AdamW` is a regular `torch.optim.Optimizer` around the same loop: parameter groups,
# `state_dict()` for resuming, and a `foreach` variant that updates whole lists of tensors at once on a GPU. Ten
# steps of your function and ten steps of the optimizer on the same gradients:

# %%
gen = torch.Generator().manual_seed(seed)
grads = [torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(10)]
settings = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)

p_yours = torch.randn(4, 3, generator=gen, dtype=torch.float64)
p_opt = torch.nn.Parameter(p_yours.clone())
m, v = torch.zeros_like(p_yours), torch.zeros_like(p_yours)
optimizer = AdamW([p_opt], **settings)
for t, g in enumerate(grads, start=1):
    adamw_step(p_yours, g, m, v, t, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01)
    p_opt.grad = g.clone()
    optimizer.step()
print(f"your steps vs mtkit.optim.AdamW after 10 steps, largest difference: "
      f"{(p_yours - p_opt.detach()).abs().max().item():.1e}")

# %% [markdown]
# ## The handout's AdamW against torch's
#
# `torch.optim.AdamW` computes $p \leftarrow p(1 - \text{lr}\,\lambda)$ *before* the Adam step, and adds
# $\epsilon$ to $\sqrt{\hat v} = \sqrt{v / (1-\beta_2^t)}$ rather than to $\sqrt{v}$. With $\epsilon = 0$ and
# no decay the two updates are the same; otherwise they drift apart slowly. Ten steps on the same gradients,
# float64, for three settings:

# %%
def ten_steps(make):
    p = torch.nn.Parameter(torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3))
    opt = make([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()

rows = []
for eps, wd in [(0.0, 0.0), (1e-6, 0.0), (1e-6, 0.1)]:
    ours = ten_steps(lambda ps: AdamW(ps, lr=1e-2, eps=eps, weight_decay=wd))
    torchs = ten_steps(lambda ps: torch.optim.AdamW(ps, lr=1e-2, eps=eps, weight_decay=wd))
    rows.append({"eps": eps, "weight decay": wd, "largest |difference|": (ours - torchs).abs().max().item()})
differences = pd.DataFrame(rows)
differences.assign(**{"largest |difference|": differences["largest |difference|"].map(
    lambda d: "< 1e-12 (float64 rounding)" if d < 1e-12 else f"{d:.1e}")})

# %% [markdown]
# Identical (to float64 rounding) when both are off; tiny differences from $\epsilon$ early in training (the
# handout's $\epsilon$ is effectively $\epsilon / \sqrt{1-\beta_2^t}$ in torch's terms, about 32 times larger
# at $t=1$); and a difference of $\text{lr}\cdot\lambda\cdot u$ per step from the order of decay and update.
# Neither matters much for fine-tuning, but a parity test that ignored them would fail mysteriously.
#
# ## Bias correction
#
# At step 1, $m = (1-\beta_1) g$ is ten times too small and $v = (1-\beta_2) g^2$ a thousand times too small.
# $\alpha_t / \text{lr} = \sqrt{1-\beta_2^t}/(1-\beta_1^t)$ undoes both: it starts at
# $\sqrt{0.001}/0.1 \approx 0.32$ and tends to 1 over a few thousand steps.

# %%
t = np.arange(1, 5001)
fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
for b1, b2 in [(0.9, 0.999), (0.9, 0.98), (0.8, 0.999)]:
    ax.plot(t, np.sqrt(1 - b2 ** t) / (1 - b1 ** t), label=f"beta1 = {b1}, beta2 = {b2}")
ax.set(xscale="log", title="The step-size factor of bias correction", xlabel="step t (log scale)",
       ylabel="alpha_t / lr")
ax.axhline(1.0, color="grey", linewidth=0.8)
ax.legend()
plt.show()

# %% [markdown]
# ## A toy loss surface
#
# A curved, badly scaled valley: $f(x, y) = 0.05\,x^2 + 2.5\,(y - 0.3 \sin x)^2$. It is 50 times steeper across
# the valley than along it. Plain SGD must use a learning rate small enough for the steep direction, and then
# crawls along the flat one; momentum builds up speed along the valley; Adam divides each coordinate's step by
# its own gradient scale. Every optimizer starts at $(-8, 2)$.

# %%
def valley(p):
    x, y = p[..., 0], p[..., 1]
    return 0.05 * x ** 2 + 2.5 * (y - 0.3 * torch.sin(x)) ** 2

optimizers = {
    "SGD (lr 0.15)": lambda ps: torch.optim.SGD(ps, lr=0.15),
    "SGD + momentum 0.9": lambda ps: torch.optim.SGD(ps, lr=0.15, momentum=0.9),
    "mtkit AdamW (lr 0.3)": lambda ps: AdamW(ps, lr=0.3),
    "torch AdamW (lr 0.3, no decay)": lambda ps: torch.optim.AdamW(ps, lr=0.3, weight_decay=0.0),
    "your adamw_step (lr 0.3)": None,
}
paths, losses = {}, {}
for name, make in optimizers.items():
    p = torch.tensor([-8.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = make([p]) if make is not None else None
    m, v = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    path, curve = [p.detach().clone()], []
    for step in range(1, toy_steps + 1):
        loss = valley(p)
        p.grad = None
        loss.backward()
        curve.append(loss.item())
        if opt is not None:
            opt.step()
        else:
            adamw_step(p.data, p.grad, m, v, step, lr=0.3)
        path.append(p.detach().clone())
    paths[name], losses[name] = torch.stack(path).numpy(), np.array(curve + [valley(p).item()])

# %%
xs, ys = np.meshgrid(np.linspace(-9, 6, 240), np.linspace(-2.6, 2.6, 200))
zs = valley(torch.tensor(np.stack([xs, ys], axis=-1))).numpy()
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), layout="constrained")
axes[0].contour(xs, ys, zs, levels=np.geomspace(0.02, 20, 12), colors="grey", linewidths=0.6, alpha=0.7)
styles = {"your adamw_step (lr 0.3)": dict(linestyle=":", linewidth=3)}
for name, path in paths.items():
    axes[0].plot(path[:, 0], path[:, 1], label=name, **styles.get(name, dict(linewidth=1.5)))
    axes[1].plot(losses[name], label=name, **styles.get(name, dict(linewidth=1.5)))
axes[0].plot([0], [0], marker="*", color="black", markersize=12)
axes[0].set(title="Paths on f(x, y) (the star is the minimum)", xlabel="x", ylabel="y")
axes[1].set(yscale="log", title="Loss along the way", xlabel="step", ylabel="f(x, y) (log scale)")
axes[1].legend(fontsize="small")
plt.show()

# %% tags=["nbval-ignore-output"]
pd.Series({name: f"{curve[-1]:.2e}" for name, curve in losses.items()}, name=f"loss after {toy_steps} steps").to_frame()

# %% [markdown]
# The three AdamW curves lie on top of each other: yours, mtkit's and torch's (here with no decay, and
# $\epsilon$ too small to matter).
#
# ## On real features: a linear probe
#
# Last, a real (if small) problem: sentiment from frozen sentence vectors. Encode each SST sentence once with
# the pretrained encoder (mean pooling), then train only a linear layer to 5 classes with mtkit's AdamW and with
# torch's, from the same initial weights and the same batches.

# %% tags=["nbval-ignore-output"]
from mtkit.bert import BertModel
from mtkit.data import default_task, load_split
from mtkit.pooling import mean_pool
from mtkit.tokenizer import Tokenizer

sst = default_task("sst")
train, _ = load_split(sst, source.path, "train")
dev, _ = load_split(sst, source.path, "dev")
train, dev = train[:train_limit] if train_limit else train, dev[:dev_limit] if dev_limit else dev
tokenizer = Tokenizer.from_pretrained(encoder)
model = BertModel.from_pretrained(encoder).to(device).eval()

@torch.no_grad()
def features(examples):
    out = []
    for i in tqdm(range(0, len(examples), 64), desc="encoding", disable=not progress, leave=False):
        enc = tokenizer([ex.sentence for ex in examples[i:i + 64]], max_length=max_length)
        enc = {k: t.to(device) for k, t in enc.items()}
        hidden = model(enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        out.append(mean_pool(hidden, enc["attention_mask"]).float().cpu())
    return torch.cat(out)

X_train, X_dev = features(train), features(dev)
y_train = torch.tensor([ex.label for ex in train])
y_dev = torch.tensor([ex.label for ex in dev])
print(f"features: train {tuple(X_train.shape)}, dev {tuple(X_dev.shape)}")

# %% tags=["nbval-ignore-output"]
def probe(make_optimizer):
    torch.manual_seed(seed)
    head = torch.nn.Linear(X_train.shape[1], sst.num_labels)
    opt = make_optimizer(head.parameters())
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(epochs):
        for idx in torch.randperm(len(X_train), generator=gen).split(batch_size):
            loss = torch.nn.functional.cross_entropy(head(X_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            curve.append(torch.nn.functional.cross_entropy(head(X_train), y_train).item())
    with torch.no_grad():
        accuracy = (head(X_dev).argmax(-1) == y_dev).float().mean().item()
    return curve, accuracy

probe_curves, probe_acc = {}, {}
for name, make in {"mtkit AdamW": lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.01),
                   "torch AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.01)}.items():
    probe_curves[name], probe_acc[name] = probe(make)
majority = max(np.bincount(y_train.numpy(), minlength=5)) / len(y_train)
majority_dev = (y_dev == int(np.argmax(np.bincount(y_train.numpy(), minlength=5)))).float().mean().item()
print(f"dev accuracy: mtkit AdamW {probe_acc['mtkit AdamW']:.3f}, torch AdamW {probe_acc['torch AdamW']:.3f}, "
      f"majority baseline {majority_dev:.3f}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
for name, curve in probe_curves.items():
    ax.plot(range(1, epochs + 1), curve, label=name, linestyle="-" if name.startswith("mtkit") else "--")
ax.set(title="Linear probe on frozen sentence vectors (SST)", xlabel="epoch", ylabel="training cross-entropy")
ax.legend()
plt.show()

# %%
metrics = {"mtkit_vs_torch_max_diff_eps0": differences.iloc[0]["largest |difference|"],
           "mtkit_vs_torch_max_diff_decay": differences.iloc[2]["largest |difference|"],
           "toy_final_loss_sgd": losses["SGD (lr 0.15)"][-1],
           "toy_final_loss_adamw": losses["mtkit AdamW (lr 0.3)"][-1],
           "head_dev_acc": probe_acc["mtkit AdamW"], "head_dev_acc_torch": probe_acc["torch AdamW"],
           "majority_dev_acc": majority_dev}
path = save_results("04_adamw", metrics, results_dir, data=source.kind, device=str(device),
                    checks=book.record())
print(f"wrote {path.name}")

# %%
"""Sanity checks: the same update as torch where they must agree; AdamW beats SGD on the valley."""
assert differences.iloc[0]["largest |difference|"] < 1e-9
assert np.allclose(losses["your adamw_step (lr 0.3)"], losses["mtkit AdamW (lr 0.3)"])
assert losses["mtkit AdamW (lr 0.3)"][-1] < losses["SGD (lr 0.15)"][-1]

# %% [markdown]
# ## Summary
#
# - AdamW keeps two running averages per parameter, corrects their bias towards zero with one factor
#   $\alpha_t$, divides the step by $\sqrt{v}+\epsilon$, and shrinks the weights separately from the gradient.
# - Your `adamw_step`, `mtkit.optim.AdamW` and `torch.optim.AdamW` agree exactly where their formulas agree
#   ($\epsilon = 0$, no decay) and differ by small, explainable amounts where they do not.
# - Per-coordinate scaling is why Adam crosses a badly scaled valley in a few hundred steps where SGD crawls.
#
# ## Questions
#
# 1. Why is weight decay inside the gradient (L2 regularisation) *not* the same as decoupled decay for Adam,
#    while it is for plain SGD?
# 2. What happens in the first steps without bias correction (`correct_bias=False`, the original BERT
#    optimizer)? Try it on the valley.
# 3. Why do BERT recipes leave biases and LayerNorm weights out of weight decay (notebook 08)?
# 4. Adam keeps two extra tensors per parameter. How much memory does that cost for BERT-base (110M
#    parameters) in float32?
