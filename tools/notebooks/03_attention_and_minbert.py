# %% [markdown]
# # 03 · Self-attention and minBERT
#
# The heart of BERT is **scaled dot-product attention** (Vaswani et al. 2017, section 3.2):
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V$$
#
# Every token asks a *query*, every token offers a *key* and a *value*; a token's output is the average of all
# values, weighted by how well its query matches each key. Dividing by $\sqrt{d}$ keeps the scores in a range
# where the softmax still has gradients. *Multi-head* attention runs $h$ smaller attentions side by side, each
# on its own $d = H / h$ slice, so different heads can look for different things.
#
# A BERT layer (Devlin et al. 2019) wraps attention in "add & norm" and follows it with a feed-forward network:
#
# ```
# x = LayerNorm(x + Attention(x))            # post-LayerNorm, as in the original Transformer
# x = LayerNorm(x + W2 · GELU(W1 · x))
# ```
#
# In this notebook you write both (two exercises), assemble them into the full encoder, check it against the
# reference implementation, and look at what the pretrained heads attend to.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2 (6 layers x 384, 12 heads); or a Hugging Face BERT folder
train_limit = 64       # sentences for the parity checks
dev_limit = None       # (not used here)
epochs = 1             # (no training in this notebook)
batch_size = 16        # sentences per batch in the parity checks
max_length = 64
seed = 0
results_dir = None
exercise_source = None  # None: your answers in exercises/ (unless $MTKIT_EXERCISE_SOURCE is set); "solutions"
progress = True

# %% tags=["nbval-ignore-output"]
%matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import mtkit
from mtkit.exercises.checks import Workbook
from mtkit.teach.notebook_runner import data_source, save_results

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)

# %% [markdown]
# ## Exercise 1: attention with a padding mask
#
# Open `exercises/attention.py` and write `attention(q, k, v, attention_mask)`. The inputs are
# `(B, heads, T, D)`; the mask is `(B, T)` with 1 for real tokens and 0 for `[PAD]`. Padded *keys* must get
# probability zero: add a very negative number to their scores before the softmax. Then run the check below; it
# checks *your* file (`exercise_source = None`). Until you have written it, the check says so and the notebook
# goes on with the worked answer, `solutions/attention.py`; run the cell again when yours is ready.
#
# `check_attention` compares your function with torch's fused kernel on random and edge-case inputs, and checks
# that gradients flow through it (autograd against a numerical gradient). When something is wrong, it says what
# was expected, what came back, and, for the classic mistakes, which one you made.

# %%
book = Workbook(exercise_source)  # whose answers are checked: yours in exercises/, unless told otherwise
attention = book.check("attention")  # yours if it passes, else the worked answer

# %% [markdown]
# A toy example: three tokens, the third is padding. Each row of `probs` is one query's distribution over the
# keys; the padded key gets nothing.

# %%
torch.manual_seed(seed)
q = k = v = torch.randn(1, 1, 3, 4)  # (B=1, heads=1, T=3, D=4)
context, probs = attention(q, k, v, torch.tensor([[1, 1, 0]]))
print("probs (rows: queries, columns: keys):\n", probs[0, 0].numpy().round(3))
print("rows sum to", probs[0, 0].sum(-1).numpy().round(6))

# %% [markdown]
# ## Exercise 2: one encoder layer
#
# Now write `layer_forward(layer, x, attention_mask)` in `exercises/transformer_layer.py`: project `x` into
# queries, keys and values, split them into heads, attend, join the heads, project, add & norm, feed-forward,
# add & norm. The `layer` is minBERT's own `BertLayer`, so its weights are real ones.

# %%
layer_forward = book.check("transformer_layer")

# %% [markdown]
# ## Your layers, the pretrained weights, the whole encoder
#
# minBERT (`mtkit.model.bert.BertModel`) loads the pretrained checkpoint. Its parameter names follow the paper's
# figure (`layers.3.attention.query.weight`), not Hugging Face's; `mtkit.model.pretrained` maps one to the other and
# refuses anything it cannot place. Run the embeddings, then *your* `layer_forward` with *your* `attention`
# for every layer, and compare with the model's own forward pass on a padded batch of real sentences.

# %%
from mtkit.model.bert import BertModel
from mtkit.data import default_tasks, load_split
from mtkit.model.tokenizer import Tokenizer

tokenizer = Tokenizer.from_pretrained(encoder)
model = BertModel.from_pretrained(encoder, attention="explicit").to(device).eval()
sst = default_tasks()[0]
examples, _ = load_split(sst, source.path, "dev")
texts = [ex.sentence for ex in examples[:train_limit]]
batch = {k: v.to(device) for k, v in tokenizer(texts[:batch_size], max_length=max_length).items()}
print(f"{model.config.num_hidden_layers} layers, {model.config.num_attention_heads} heads of size "
      f"{model.config.head_dim}; batch {tuple(batch['input_ids'].shape)} with "
      f"{int((batch['attention_mask'] == 0).sum())} padded positions")

# %%
mask = batch["attention_mask"]
real = mask.bool()
with torch.no_grad():
    x = model.embeddings(batch["input_ids"], batch["token_type_ids"])  # (B, T, H)
    for layer in model.layers:
        x = layer_forward(layer, x, mask, attention_fn=attention)
    reference = model(batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"])
yours_vs_minbert = (x[real] - reference.last_hidden_state[real]).abs().max().item()
print(f"your encoder vs minBERT, largest difference on real tokens below 1e-4: {yours_vs_minbert < 1e-4}")

# %% [markdown]
# minBERT has two attention paths: `"explicit"` (the formula written out, which can return the attention
# maps) and `"sdpa"` (torch's fused `scaled_dot_product_attention`, which picks a fast kernel and never stores
# the T x T matrix; on a padded batch it also skips the padding in every token-wise layer). They compute the
# same numbers; `bench/bench_throughput.py` measures the speed.

# %%
with torch.no_grad():
    fused = model.set_attention("sdpa")(batch["input_ids"], attention_mask=mask,
                                        token_type_ids=batch["token_type_ids"]).last_hidden_state
    model.set_attention("explicit")
explicit_vs_fused = (fused[real] - reference.last_hidden_state[real]).abs().max().item()
print(f"explicit vs fused attention, largest difference below 1e-5: {explicit_vs_fused < 1e-5}")

# %% [markdown]
# ## Parity with the reference implementation
#
# The strongest test of a from-scratch model: load the *same* checkpoint into Hugging Face `transformers`'
# `BertModel` and compare outputs. `transformers` is a test extra of the kit; without it this check is skipped.

# %%
try:
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
except ImportError:
    transformers = None
    print("transformers is not installed (pip install -e '.[test]'): skipping the parity check.")

parity = None
if transformers is not None:
    hf = transformers.BertModel.from_pretrained(str(tokenizer.vocab_file.parent)).to(device).eval()
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"])
    parity = {"last_hidden_state": (theirs.last_hidden_state[real] - reference.last_hidden_state[real]).abs().max().item(),
              "pooler_output": (theirs.pooler_output - reference.pooler_output).abs().max().item()}
    for name, diff in parity.items():
        print(f"minBERT vs transformers.BertModel, {name}: largest difference below 1e-5: {diff < 1e-5}")

# %% [markdown]
# ## What do the heads look at?
#
# `attention_maps` runs minBERT with `output_attentions=True` and keeps every layer's and head's probabilities
# for one sentence. Each small square below is one head of one layer: row = the token attending, column = the
# token attended to. Look for the patterns Clark et al. 2019 ("What Does BERT Look At?") describe: heads that
# look at the previous or the next token, heads that park their attention on `[SEP]` or `[CLS]` (a "no-op"
# when a head has nothing to do), heads that spread broadly.

# %%
from mtkit.teach.attention_viewer import AttentionViewer, attention_maps, plot_attention, plot_attention_heads

sentence = texts[0]
maps = attention_maps(model, tokenizer, sentence)
print(f"{sentence!r}: {maps.probs.shape[0]} layers x {maps.probs.shape[1]} heads x "
      f"{maps.probs.shape[2]} x {maps.probs.shape[3]} tokens")
plot_attention_heads(maps, layer=1)

# %% [markdown]
# One head with the tokens written out: the head of layer 1 that puts the most attention on the *previous*
# token (the sub-diagonal), chosen by the code below rather than by hand.

# %%
plot_attention(maps, layer=1, head=int(np.argmax(maps.probs[1, :, np.arange(1, len(maps.tokens)),
                                                           np.arange(0, len(maps.tokens) - 1)].mean(axis=0))))

# %% [markdown]
# How much attention goes to the special tokens, layer by layer, averaged over heads and over the sentences of
# the batch? Clark et al. found that in the middle layers of BERT-base over half of it goes to `[SEP]`; the
# default encoder here, all-MiniLM-L6-v2 (a distilled and then contrastively fine-tuned model), parks it on
# `[CLS]` instead. Either way the special token works as a place to put attention a head does not need.

# %%
share = {"[CLS]": [], "[SEP]": [], "the token itself": []}
for text in texts[:batch_size]:
    m = attention_maps(model, tokenizer, text)
    sep = len(m.tokens) - 1
    share["[CLS]"].append(m.probs[:, :, :, 0].mean(axis=(1, 2)))
    share["[SEP]"].append(m.probs[:, :, :, sep].mean(axis=(1, 2)))
    share["the token itself"].append(np.stack([np.diagonal(m.probs[l], axis1=1, axis2=2).mean()
                                               for l in range(m.probs.shape[0])]))
fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
for name, values in share.items():
    ax.plot(range(model.config.num_hidden_layers), np.mean(values, axis=0), marker="o", label=name)
ax.set(title="Where attention goes, by layer", xlabel="layer", ylabel="mean attention probability",
       xticks=range(model.config.num_hidden_layers))
ax.legend()
plt.show()

# %% [markdown]
# ### The attention-map viewer
#
# Move the sliders to browse every layer and head (head -1 is the mean over heads), and pick another sentence
# or a sentence *pair* (watch how tokens of one sentence attend to the other). The viewer redraws with
# `mtkit.teach.attention_viewer.plot_attention`, the function used above.

# %% tags=["nbval-ignore-output"]
para = default_tasks()[1]
pairs, _ = load_split(para, source.path, "dev")
viewer = AttentionViewer({sentence: maps,
                          texts[1]: attention_maps(model, tokenizer, texts[1]),
                          f"{pairs[0].sentence1} | {pairs[0].sentence2}":
                              attention_maps(model, tokenizer, pairs[0].sentence1, pairs[0].sentence2)})
viewer

# %%
metrics = {"check_attention": book.outcome("attention"),
           "check_layer_forward": book.outcome("transformer_layer"),
           "your_encoder_vs_minbert_max_diff": yours_vs_minbert, "explicit_vs_fused_max_diff": explicit_vs_fused,
           "hf_parity_last_hidden_max_diff": None if parity is None else parity["last_hidden_state"],
           "hf_parity_pooler_max_diff": None if parity is None else parity["pooler_output"]}
path = save_results("03_attention_and_minbert", metrics, results_dir, data=source.kind, device=str(device),
                    checks=book.record())
print(f"wrote {path.name}")

# %%
"""Sanity checks: your layers rebuild minBERT, both attention paths agree, minBERT matches the reference."""
assert yours_vs_minbert < 1e-4 and explicit_vs_fused < 1e-4
assert parity is None or max(parity.values()) < 1e-4
assert not viewer.errors

# %% [markdown]
# ## Summary
#
# - Attention is a softmax over query-key scores, scaled by $1/\sqrt{d}$, with padded keys masked out; each
#   token's output is a weighted average of the values.
# - A BERT layer is attention and a feed-forward network, each wrapped in a residual connection and a LayerNorm
#   (post-LN). Stacking your two functions over the pretrained weights reproduces minBERT, and minBERT
#   reproduces `transformers` to float rounding.
# - Heads specialise: some follow position, some park on `[SEP]` or `[CLS]`, some spread broadly.
#
# ## Questions
#
# 1. Why divide by $\sqrt{d}$? Compute the variance of $q \cdot k$ for random unit-variance vectors of size
#    $d$, and say what a softmax of very large scores does to the gradients.
# 2. What goes wrong if the mask is applied to the queries instead of the keys? (Try it: `check_attention`
#    recognises that mistake.)
# 3. The fused path returns no attention maps. Why is not storing the T x T matrix a big deal for long
#    sequences?
# 4. BERT is post-LN; GPT-2 and most newer models are pre-LN (`x + Attention(LayerNorm(x))`). Why is pre-LN
#    easier to train deep?
# 5. In the viewer, find a head that attends to the previous token. Is it in the same layer for every sentence?
