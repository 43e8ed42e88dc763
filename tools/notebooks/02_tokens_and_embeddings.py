# %% [markdown]
# # 02 · Tokens and embeddings
#
# A neural network reads numbers, not text. This notebook follows a sentence through the first two boxes:
#
# 1. the **tokenizer** cuts text into WordPiece *tokens* from a fixed vocabulary and turns them into ids, adds
#    the special tokens `[CLS]` and `[SEP]`, and pads a batch into a rectangle with an attention mask;
# 2. the **embedding layer** turns each id into a vector: a word embedding, plus a position embedding, plus a
#    token-type (segment) embedding, then LayerNorm.
#
# WordPiece is the sub-word scheme of Wu et al. 2016; BERT (Devlin et al. 2019) uses a 30,522-piece uncased
# vocabulary. Rare words are split into known pieces (`##` marks a piece that continues a word), so there is
# almost never an unknown token, and the vocabulary stays small.

# %% tags=["parameters"]
device = None          # None: the GPU if there is one, else the CPU
data_dir = None        # None: $MTKIT_DATA, ./data, else the demo set; "demo"; or a folder with the CS224N files
encoder = None         # None: all-MiniLM-L6-v2 (6 layers x 384); or a Hugging Face BERT folder
train_limit = 500      # sentences per task for the tokenizer parity check (None: all)
dev_limit = None       # (not used here)
epochs = 1             # (no training in this notebook)
batch_size = 16        # (no training in this notebook)
max_length = 64        # longest sequence in tokens
seed = 0
results_dir = None     # where results/02_tokens_and_embeddings.json goes
progress = True

# %% tags=["nbval-ignore-output"]
%matplotlib inline
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import mtkit
from mtkit.teach.notebook_runner import data_source, save_results

mtkit.seed_everything(seed)
device = mtkit.get_device(device)
source = data_source(data_dir)

# %% [markdown]
# ## The tokenizer
#
# `mtkit.Tokenizer` is built from the `tokenizers` library's building blocks, each one visible: a normalizer
# (lower-case, strip accents, clean control characters), a pre-tokenizer (split on spaces and punctuation), the
# WordPiece model (greedy longest-match against `vocab.txt`), and a template that adds `[CLS]` and `[SEP]`.

# %%
from mtkit.model.tokenizer import Tokenizer

tokenizer = Tokenizer.from_pretrained(encoder)
print(f"vocabulary: {tokenizer.vocab_size:,} pieces; longest sequence the model accepts: "
      f"{tokenizer.model_max_length} tokens")
for text in ["The movie was surprisingly good!", "unaffable", "Tokenization isn't hard.", "Café au lait ☕"]:
    print(f"{text!r:38} -> {tokenizer.tokenize(text)}")

# %% [markdown]
# Note what happened: upper case became lower case, the accent of *Café* disappeared, *unaffable* became three
# pieces, and the emoji, which no piece covers, became `[UNK]`.
#
# ## Ids, special tokens and pairs
#
# A single sentence becomes `[CLS] sentence [SEP]`; a pair becomes `[CLS] a [SEP] b [SEP]`, with
# `token_type_ids` 0 for the first segment and 1 for the second. The vector at `[CLS]` is what BERT's pooler
# reads; the pair layout is what a *cross-encoder* (notebook 06) feeds the model.

# %%
pair = tokenizer(["how do i learn chess ?"], pairs=["what is the best way to learn chess ?"])
pd.DataFrame({"token": tokenizer.convert_ids_to_tokens(pair["input_ids"][0]),
              "id": pair["input_ids"][0].tolist(),
              "token_type_id": pair["token_type_ids"][0].tolist()}).T

# %% [markdown]
# ## A batch: padding and the attention mask
#
# Sentences of different lengths are padded with `[PAD]` (id 0) to the longest one in the batch. The attention
# mask marks real tokens with 1 and padding with 0; attention will ignore the zeros (notebook 03).

# %%
batch = tokenizer(["a short one .", "a noticeably longer sentence about the movie ."], max_length=max_length)
for key, value in batch.items():
    print(f"{key:15} shape {tuple(value.shape)}\n{value}")

# %% [markdown]
# Longer sequences are cut at `max_length` tokens, and the tokenizer says so (nothing is dropped silently):

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cut = tokenizer(["one two three four five six seven eight nine ten"], max_length=8)
print(tokenizer.convert_ids_to_tokens(cut["input_ids"][0]))
print("warning:", caught[0].message if caught else None)

# %% [markdown]
# ## Parity with the reference tokenizer
#
# The ids must be exactly those the pretrained model was trained with. If `transformers` is installed (it is a
# test extra of the kit), compare with its `BertTokenizerFast` on the sentences of all three tasks.

# %%
from mtkit.data import default_tasks, load_split

sentences = []
for spec in default_tasks():
    examples, _ = load_split(spec, source.path, "train")
    examples = examples[:train_limit] if train_limit else examples
    for ex in examples:
        sentences += [ex.sentence] if spec.kind == "classification" else [ex.sentence1, ex.sentence2]
print(f"{len(sentences):,} sentences from the three tasks")

try:
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
except ImportError:
    transformers = None
    print("transformers is not installed (pip install -e '.[test]'): skipping the parity check.")

tokenizer_parity = None
if transformers is not None:
    reference = transformers.BertTokenizerFast.from_pretrained(str(tokenizer.vocab_file.parent))
    ours = tokenizer(sentences, max_length=max_length, padding=False, return_tensors=None)["input_ids"]
    theirs = reference(sentences, max_length=max_length, truncation=True)["input_ids"]
    tokenizer_parity = float(np.mean([a == b for a, b in zip(ours, theirs)]))
    print(f"identical ids on {tokenizer_parity:.1%} of the sentences")

# %% [markdown]
# ## The embedding layer
#
# minBERT's `BertEmbeddings` holds three tables. The vector of token t at position p in segment s is
#
# $$x = \mathrm{LayerNorm}(E_\text{word}[t] + E_\text{position}[p] + E_\text{type}[s])$$
#
# (then dropout during training). Position embeddings are *learned*, one row per position up to 512: that is
# why BERT cannot read longer sequences.

# %%
from mtkit.model.bert import BertModel

model = BertModel.from_pretrained(encoder).to(device).eval()
emb = model.embeddings
for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
    table = getattr(emb, name).weight
    print(f"{name:22} {tuple(table.shape)}")
print(f"encoder: {model.config.num_hidden_layers} layers, hidden size {model.config.hidden_size}, "
      f"{sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# Compute the embeddings of the pair above by hand and compare with the layer:

# %%
ids, types = pair["input_ids"].to(device), pair["token_type_ids"].to(device)
positions = torch.arange(ids.shape[1], device=device)
with torch.no_grad():
    by_hand = emb.layer_norm(emb.word_embeddings(ids) + emb.position_embeddings(positions)
                             + emb.token_type_embeddings(types))  # (1, T, H)
    by_layer = emb(ids, types)
embedding_diff = (by_hand - by_layer).abs().max().item()
print(f"shape {tuple(by_hand.shape)}; by hand == layer to 1e-6: {embedding_diff < 1e-6}")

# %% [markdown]
# ## What the word embeddings know
#
# Each row of the word table is a point in 384 dimensions (for the default encoder). Words used alike end up
# close: the nearest rows by cosine similarity to a few words:

# %%
table = torch.nn.functional.normalize(emb.word_embeddings.weight.detach().float().cpu(), dim=1)  # (V, H)

def neighbours(word, k=6):
    i = tokenizer.convert_tokens_to_ids(word)
    scores = table @ table[i]
    best = scores.topk(k + 1).indices.tolist()[1:]
    return [tokenizer.convert_ids_to_tokens(j) for j in best]

pd.DataFrame({word: neighbours(word) for word in ["good", "terrible", "movie", "chess", "expensive"]})

# %% [markdown]
# The demo set's sentiment words come in five levels (0 very negative ... 4 very positive). Projected to two
# dimensions (PCA), do the *static* word embeddings already separate them? And the *contextual* ones, the
# encoder's output for the word inside a sentence?

# %%
from mtkit.data.demo import SENTIMENT_WORDS

words = [(w, level) for level, ws in SENTIMENT_WORDS.items() for w in ws if len(tokenizer.tokenize(w)) == 1]
static = np.stack([table[tokenizer.convert_tokens_to_ids(w)].numpy() for w, _ in words])
sentences_with = [f"the movie was {w} ." for w, _ in words]
enc = tokenizer(sentences_with, max_length=max_length)
with torch.no_grad():
    hidden = model(enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).last_hidden_state
contextual = hidden[:, 4].float().cpu().numpy()  # position 4 = the adjective ([CLS] the movie was X)

def pca2(x):
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
for ax, points, title in ((axes[0], pca2(static), "static word embeddings"),
                          (axes[1], pca2(contextual), "contextual: last layer, in 'the movie was X .'")):
    for level in range(5):
        sel = [i for i, (_, lv) in enumerate(words) if lv == level]
        ax.scatter(points[sel, 0], points[sel, 1], label=f"level {level}", s=40)
        for i in sel:
            ax.annotate(words[i][0], points[i], fontsize=7, alpha=0.7)
    ax.set(title=title, xlabel="first principal component", ylabel="second principal component")
axes[0].legend(title="sentiment", fontsize="small")
fig.suptitle("Sentiment words of the demo set, projected to 2-D (PCA)")
plt.show()

# %% [markdown]
# ## Same word, different vectors
#
# The static table gives *bank* one vector whatever the sentence. After the encoder, the vector depends on the
# context: that is the point of BERT.

# %%
bank = tokenizer(["he sat on the bank of the river .", "she opened an account at the bank ."], max_length=max_length)
with torch.no_grad():
    out = model(bank["input_ids"].to(device), attention_mask=bank["attention_mask"].to(device)).last_hidden_state
where = [tokenizer.convert_ids_to_tokens(row).index("bank") for row in bank["input_ids"]]
v1, v2 = out[0, where[0]], out[1, where[1]]
bank_cosine = torch.nn.functional.cosine_similarity(v1, v2, dim=0).item()
print(f"cosine of the two static vectors of 'bank': 1.00; of the two contextual vectors: {bank_cosine:.2f}")

# %%
metrics = {"vocab_size": tokenizer.vocab_size, "embedding_by_hand_max_diff": embedding_diff,
           "tokenizer_parity": tokenizer_parity, "bank_contextual_cosine": bank_cosine}
path = save_results("02_tokens_and_embeddings", metrics, results_dir, data=source.kind, device=str(device))
print(f"wrote {path.name}")

# %%
"""Sanity checks: the embedding layer is what the formula says; the reference tokenizer agrees."""
assert embedding_diff < 1e-5
assert tokenizer_parity is None or tokenizer_parity == 1.0
assert bank_cosine < 0.99

# %% [markdown]
# ## Summary
#
# - Text becomes WordPiece tokens, then ids; `[CLS]`, `[SEP]` and `token_type_ids` mark sentences and pairs;
#   padding and the attention mask turn a batch into a rectangle.
# - mtkit's tokenizer gives the same ids as the reference implementation, which is what lets us load
#   pretrained weights (notebook 03).
# - An embedding is a sum of three table rows (word, position, segment) and a LayerNorm. Static embeddings
#   already cluster related words; the encoder then makes every vector depend on its context.
#
# ## Questions
#
# 1. Why does WordPiece almost never produce `[UNK]`, while a word-level vocabulary of the same size often
#    would? Which characters still end up as `[UNK]`?
# 2. BERT's position embeddings are learned. What happens if you feed a sequence of 600 tokens? What would a
#    sinusoidal position encoding (Vaswani et al. 2017) change?
# 3. In the PCA plot, which sentiment levels overlap in the static embeddings? Why might "not good" be hard
#    for a model that only looks at word embeddings?
# 4. The tokenizer lower-cases everything. Find a sentence whose meaning changes with case.
