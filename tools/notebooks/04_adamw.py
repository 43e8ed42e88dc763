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
from mtkit.exercises.checks import Workbook
from mtkit.teach.notebook_runner import data_source, save_results
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
# float64 (so that only the formulas differ, not the rounding), for four settings:

# %%
def ten_steps(make):
    p = torch.nn.Parameter(torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3))
    opt = make([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()

rows = []
for eps, wd in [(0.0, 0.0), (1e-6, 0.0), (0.0, 0.1), (1e-6, 0.1)]:
    ours = ten_steps(lambda ps: AdamW(ps, lr=1e-2, eps=eps, weight_decay=wd))
    torchs = ten_steps(lambda ps: torch.optim.AdamW(ps, lr=1e-2, eps=eps, weight_decay=wd))
    rows.append({"eps": eps, "weight decay": wd, "largest |difference|": (ours - torchs).abs().max().item()})
differences = pd.DataFrame(rows)
differences.assign(**{"largest |difference|": differences["largest |difference|"].map(
    lambda d: "< 1e-12 (float64 rounding)" if d < 1e-12 else f"{d:.1e}")})

# %% [markdown]
# Identical (to float64 rounding) when both are off; tiny differences from $\epsilon$ early in training (the
# handout's $\epsilon$ is effectively $\epsilon / \sqrt{1-\beta_2^t}$ in torch's terms, about 32 times larger
# at $t=1$); and, with decay but $\epsilon = 0$, almost all of the last row's gap: a difference of
# $\text{lr}\cdot\lambda\cdot u$ per step from the order of decay and update. Neither matters much for
# fine-tuning, but a parity test that ignored them would fail mysteriously.
#
# ## Rounding: the decay in float32
#
# That was float64. Models train in float32, and there a third difference appears: how the decay is *rounded*.
# torch computes it as a product, $p \cdot (1 - \text{lr}\,\lambda)$; mtkit as the handout writes it,
# $p - \text{lr}\,\lambda\, p$ (a scaled add, `p.add_(p, alpha=-lr * wd)`). The two are equal on paper.
# In float32 the numbers just below 1 are $2^{-24} \approx 6 \cdot 10^{-8}$ apart, so the factor
# $1 - \text{lr}\,\lambda$ is itself rounded before any weight is touched:

# %%
print(f"float32: 1 - 1e-8 == 1 is {(torch.tensor(1.0) - 1e-8 == 1).item()}")
print(f"the float32 numbers just below 1 are 2^-24 = {2.0 ** -24:.2e} apart")
factor = torch.tensor(1 - 1e-7).item()  # float32
print(f"1 - 1e-7 in float32 is 1 - {1 - factor:.3e}: a decay {(1 - factor) / 1e-7:.2f}x the one asked for")

# %% [markdown]
# The scaled add rounds only its result, like any other update. How much do the weights really decay? One step
# of each optimizer on 100,000 random float32 weights with a zero gradient (so the Adam step is zero and only the
# decay acts): the mean relative decay $(p_0 - p_1)/p_0$, divided by the $\text{lr}\,\lambda$ asked for (1 is
# right). $\text{lr}\,\lambda = 10^{-7}$ is lr $10^{-5}$ with weight decay 0.01, a common BERT setting.

# %%
def relative_decay(make_optimizer, lr_wd, n=100_000):
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(n, generator=gen))  # (n,) float32
    before = p.detach().double().clone()
    p.grad = torch.zeros_like(p)
    make_optimizer([p], lr=lr_wd / 0.01, weight_decay=0.01).step()
    return ((before - p.detach().double()) / before).mean().item() / lr_wd

decay_bias = pd.DataFrame([{"lr * wd": f"{lr_wd:.0e}",
                            "factor p(1 - lr wd), torch AdamW": relative_decay(torch.optim.AdamW, lr_wd),
                            "scaled add p - lr wd p, mtkit AdamW": relative_decay(AdamW, lr_wd)}
                           for lr_wd in (1e-7, 3e-7, 1e-8)]).set_index("lr * wd")
decay_bias.round(3)

# %% [markdown]
# At $10^{-7}$ the factor form decays the weights about 15 % too fast on average, every step, always in the same
# direction; the scaled add is off by a few percent, and not always the same way, because the result is rounded to
# the weight's own float32 grid. At $3 \cdot 10^{-7}$ the two are close. (tests/test_optim_adamw.py holds mtkit to 5 % and to
# the nearest float32 of the formula, weight by weight.)
#
# At $10^{-8}$ neither form does anything: a step of $10^{-8}$ relative is less than half the spacing of float32
# numbers around any weight, so every weight rounds back to itself. What would fix it is to keep the lost digits:
#
# - **float64 master weights**: apply the updates to a float64 copy and cast it to float32 for the forward pass;
# - **compensated (Kahan) master weights**: keep, in a second float32 buffer, what each rounding lost, and add
#   it back into the next step;
# - **stochastic rounding**: round down with probability (distance to the lower neighbour) / (spacing), up
#   otherwise, so that the rounding is right *on average*.
#
# A thousand decay steps at $10^{-8}$ on 10,000 float32 weights, the exact answer being a decay of
# $1 - (1 - 10^{-8})^{1000} \approx 10^{-5}$ (the ratio again: 1 is right):

# %%
lr_wd, steps = 1e-8, 1000
w0 = torch.randn(10_000, generator=torch.Generator().manual_seed(seed))  # (10000,) float32
plain, master = w0.clone(), w0.double()
kahan, lost = w0.clone(), torch.zeros_like(w0)
rounded, coin = w0.clone(), torch.Generator().manual_seed(seed)
for _ in range(steps):
    plain.add_(plain, alpha=-lr_wd)                     # float32, rounded to nearest: stuck
    master.add_(master, alpha=-lr_wd)                   # float64 master copy
    step = -lr_wd * kahan - lost                        # Kahan: the step plus what was lost so far
    new = kahan + step
    lost, kahan = (new - kahan) - step, new
    target = rounded.double() * (1 - lr_wd)             # stochastic rounding between the two float32 neighbours
    below = torch.nextafter(rounded, torch.zeros_like(rounded))
    p_below = (rounded.double() - target) / (rounded.double() - below.double())
    rounded = torch.where(torch.rand(w0.shape, generator=coin, dtype=torch.float64) < p_below, below, rounded)

exact = 1 - (1 - lr_wd) ** steps
fixes = pd.Series({name: ((w0.double() - w.double()) / w0.double()).mean().item() / exact
                   for name, w in {"float32, nearest": plain, "float64 master weights": master.float(),
                                   "Kahan-compensated float32": kahan, "stochastic rounding": rounded}.items()},
                  name="decay / exact decay")
fixes.round(3).to_frame()

# %% [markdown]
# Each fix recovers the decay. The cost is memory (a float64 copy doubles the weights; Kahan adds a float32
# buffer) or randomness (stochastic rounding needs no extra memory, which is why some bfloat16 optimizers use
# it). mtkit keeps float32 weights and the scaled add: the decay is right to a few percent down to
# $\text{lr}\,\lambda \approx 10^{-7}$, fades out below $6 \cdot 10^{-8}$ and is gone below $3 \cdot 10^{-8}$
# (lr $3 \cdot 10^{-6}$ with weight decay 0.01, as in the last steps of a schedule that decays lr to zero), as in
# torch.
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
# $\epsilon$ too small to matter). Plain SGD crawls. Momentum and AdamW both reach the bottom, and which of the two
# is lower depends on when you stop (try `toy_steps = 60` or `500`): on this valley, built-up speed does as well
# as per-coordinate step sizes.
#
# What dividing by $\sqrt{v}$ buys that momentum does not is a step whose size does not depend on the size of the
# gradient. Multiply the loss by 100 or by 0.01 and run each optimizer again with the same learning rate (the
# table shows the unscaled $f$ at the end; "diverged" means it blew up):

# %%
def final_loss(make, loss_scale):
    p = torch.tensor([-8.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = make([p])
    for _ in range(toy_steps):
        p.grad = None
        (loss_scale * valley(p)).backward()
        opt.step()
    loss = valley(p).item()
    return loss if np.isfinite(loss) and loss < 1e6 else float("inf")  # inf: diverged

scaled = {name: optimizers[name] for name in ("SGD (lr 0.15)", "SGD + momentum 0.9", "mtkit AdamW (lr 0.3)")}
loss_scales = pd.DataFrame({f"loss x {scale:g}": {name: final_loss(make, scale) for name, make in scaled.items()}
                            for scale in (0.01, 1, 100)})
loss_scales.map(lambda loss: "diverged" if loss == float("inf") else f"{loss:.1e}")

# %% [markdown]
# SGD's step is lr times the gradient: with a 100 times larger loss it overshoots and diverges, with a 100 times
# smaller one it barely moves, momentum or not. AdamW's step $m / (\sqrt{v} + \epsilon)$ is the same at every
# scale (until the gradients shrink to the size of $\epsilon$), so one learning rate serves all three. That is
# what per-coordinate scaling is for in BERT, whose parameters have gradients of very different sizes.
#
# ## On real features: a linear probe
#
# Last, a real (if small) problem: sentiment from frozen sentence vectors. Encode each SST sentence once with
# the pretrained encoder (mean pooling), then train only a linear layer to 5 classes with mtkit's AdamW and with
# torch's, from the same initial weights and the same batches.

# %% tags=["nbval-ignore-output"]
from mtkit.model.bert import BertModel
from mtkit.data import default_task, load_split
from mtkit.model.pooling import mean_pool
from mtkit.model.tokenizer import Tokenizer

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
           "mtkit_vs_torch_max_diff_decay": differences.iloc[3]["largest |difference|"],
           "decay_ratio_factor_1e-7": decay_bias.iloc[0, 0], "decay_ratio_scaled_add_1e-7": decay_bias.iloc[0, 1],
           "decay_ratio_factor_3e-7": decay_bias.iloc[1, 0], "decay_ratio_scaled_add_3e-7": decay_bias.iloc[1, 1],
           "toy_final_loss_sgd": losses["SGD (lr 0.15)"][-1],
           "toy_final_loss_adamw": losses["mtkit AdamW (lr 0.3)"][-1],
           "head_dev_acc": probe_acc["mtkit AdamW"], "head_dev_acc_torch": probe_acc["torch AdamW"],
           "majority_dev_acc": majority_dev}
path = save_results("04_adamw", metrics, results_dir, data=source.kind, device=str(device),
                    checks=book.record())
print(f"wrote {path.name}")

# %%
"""Sanity checks of what the prose says: the same update as torch where they must agree; AdamW beats plain SGD
on the valley and is unmoved by the loss's scale; the scaled add is unbiased where the factor is not; at 1e-8
only the fixes decay."""
assert differences.iloc[0]["largest |difference|"] < 1e-9
assert np.allclose(losses["your adamw_step (lr 0.3)"], losses["mtkit AdamW (lr 0.3)"])
assert losses["mtkit AdamW (lr 0.3)"][-1] < losses["SGD (lr 0.15)"][-1]
adamw_at_scales = loss_scales.loc["mtkit AdamW (lr 0.3)"]
assert adamw_at_scales.max() < 2 * adamw_at_scales.min()
assert (loss_scales.loc[["SGD (lr 0.15)", "SGD + momentum 0.9"], "loss x 100"] == float("inf")).all()
assert (loss_scales.iloc[:2, 0] > 10 * loss_scales.iloc[:2, 1]).all()
assert abs(decay_bias.loc["1e-07", "scaled add p - lr wd p, mtkit AdamW"] - 1) < 0.05
assert decay_bias.loc["1e-07", "factor p(1 - lr wd), torch AdamW"] > 1.1
assert (decay_bias.loc["1e-08"] == 0).all() and fixes["float32, nearest"] == 0
assert (fixes.drop("float32, nearest") - 1).abs().max() < 0.01

# %% [markdown]
# ## Summary
#
# - AdamW keeps two running averages per parameter, corrects their bias towards zero with one factor
#   $\alpha_t$, divides the step by $\sqrt{v}+\epsilon$, and shrinks the weights separately from the gradient.
# - Your `adamw_step`, `mtkit.optim.AdamW` and `torch.optim.AdamW` agree exactly where their formulas agree
#   ($\epsilon = 0$, no decay) and differ by small, explainable amounts where they do not.
# - On a badly scaled valley plain SGD crawls; momentum and Adam both cross it. Adam's per-coordinate scaling
#   also makes its step independent of the gradient's size, so one learning rate works at any loss scale.
# - In float32, write the decay as the handout does, $p - \text{lr}\,\lambda\,p$: the factor
#   $1 - \text{lr}\,\lambda$ is itself rounded, and below about $3 \cdot 10^{-8}$ no float32 weight can absorb
#   the decay at all without float64 or compensated master weights, or stochastic rounding.
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
