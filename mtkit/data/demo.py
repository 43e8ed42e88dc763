"""The embedded demo dataset: three small, learnable tasks that mtkit writes itself, from a seed.

Why it exists: the notebooks must run anywhere, without the CS224N files, and still show real learning curves
in seconds on a CPU. So mtkit generates a small set in **exactly the CS224N file formats and names**
(``ids-sst-*.csv``, ``quora-*.csv``, ``sts-*.csv``; train, dev and an unlabeled test-student file per task),
and the same readers load it. Every word is an ordinary English word that is one token of BERT's uncased
vocabulary (checked by tests/test_data_demo.py).

The three tasks, built from templates so that what decides the label is known and can be inspected:

- **Sentiment, 5 graded levels** (0 very negative ... 4 very positive). A sentence about a film aspect uses
  adjectives of one level ("dreadful" 0, "dull" 1, "ordinary" 2, "charming" 3, "superb" 4), with
  intensifiers and opinion openers as noise, and a few negations ("not good" is 1, "not bad" is 2) that a
  bag of words cannot fully read. One label in ten moves one level up or down, as human annotators
  disagree, so accuracy tops out near 90% and the confusion matrix has the neighbouring-class errors of SST.
- **Paraphrase with hard negatives.** Questions with an intent (learn, buy, price, origin, ...) and a topic
  (chess, coffee, ...), each intent written several ways. Positive: same intent and topic, different
  wording. Hard negatives: the same wording with another topic (one word differs), or the same topic with
  another intent; plus some unrelated pairs. About 40% positives, as in Quora.
- **Similarity graded 0-5.** Scene sentences with four slots (who, what kind, doing what, where). The score
  falls with each slot that changes (who matters most, the adjective least), synonyms and word order leave
  it almost untouched, and a little noise is added: ``5 - 1.6 who - 1.4 action - 1.0 place - 0.6 kind``.

``write_demo_data(folder, seed)`` writes the files; ``demo_data_dir()`` writes them once into a cache folder
(``$MTKIT_CACHE`` or ``~/.cache/mtkit``) and reuses them.

Taught in notebooks/01_setup_and_data.ipynb.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

DEMO_VERSION = 1  # bump when the generator changes, so cached copies are regenerated
DEFAULT_SIZES = {"train": 600, "dev": 200, "test": 200}
INFO_FILE = "mtkit-demo.json"  # marks a folder as mtkit's demo set (locate.py reads it)

FILES = {
    "sst": {"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
    "para": {"train": "quora-train.csv", "dev": "quora-dev.csv", "test": "quora-test-student.csv"},
    "sts": {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test-student.csv"},
}

# ------------------------------------------------------------------------------------------ sentiment
SENTIMENT_WORDS = {
    0: ["terrible", "awful", "horrible", "dreadful", "painful", "unbearable"],
    1: ["bad", "dull", "boring", "weak", "poor", "bland"],
    2: ["okay", "average", "ordinary", "uneven", "plain", "mixed"],
    3: ["good", "nice", "enjoyable", "pleasant", "solid", "charming"],
    4: ["wonderful", "excellent", "brilliant", "amazing", "superb", "fantastic"],
}
SENTIMENT_PRIOR = [0.13, 0.25, 0.20, 0.26, 0.16]  # roughly SST's class balance
SENTIMENT_DISAGREEMENT = 0.1  # share of sentences whose label moves one level, as annotators disagree
SUBJECTS = ["the movie", "the film", "this show", "the story", "the acting", "the music", "the ending",
            "the cast", "the plot", "the script", "the camera work", "the dialogue"]
VERBS = ["was", "is", "felt", "seemed"]
INTENSIFIERS = ["", "", "very", "really", "quite", "truly", "so"]
OPENERS = ["i thought", "honestly ,", "in my view", "to be fair ,", "overall ,", "i think"]

# ------------------------------------------------------------------------------------------ paraphrase
SKILLS = ["chess", "guitar", "piano", "painting", "swimming", "cooking", "dancing", "drawing", "singing",
          "tennis", "golf", "chemistry", "physics", "math", "french", "spanish", "german", "photography"]
PRODUCTS = ["shoes", "bikes", "phones", "cars", "books", "watches", "cameras", "guitars", "chairs", "boots",
            "jackets", "tents", "bags", "lamps", "tires"]
SKILL_INTENTS = {
    "learn": ["How do I learn {x}?", "What is the best way to learn {x}?", "How can I get better at {x}?",
              "How should I start learning {x}?"],
    "hard": ["Why is {x} so hard?", "What makes {x} difficult?", "Is {x} hard to learn?",
             "Why do people find {x} so difficult?"],
    "job": ["Can I make money from {x}?", "Is it possible to earn money with {x}?",
            "How do people earn a living from {x}?"],
    "start": ["At what age should a child start {x}?", "What is the right age to begin {x}?",
              "How young can kids start {x}?"],
}
PRODUCT_INTENTS = {
    "buy": ["Where can I buy good {x}?", "What is the best place to buy {x}?", "Where do people buy {x}?"],
    "price": ["Why are {x} so expensive?", "Why do {x} cost so much?", "What makes {x} so expensive?"],
    "made": ["How are {x} made?", "What is the process for making {x}?", "How do factories make {x}?"],
    "choose": ["How do I choose good {x}?", "What should I look for when buying {x}?",
               "How can I pick the right {x}?"],
}

# ------------------------------------------------------------------------------------------ similarity
STS_WHO = {"man": ["man", "guy"], "woman": ["woman", "lady"], "boy": ["boy", "kid"], "girl": ["girl", "child"],
           "dog": ["dog", "puppy"], "cat": ["cat", "kitten"], "horse": ["horse", "pony"], "bird": ["bird"]}
STS_KIND = {"small": ["small", "little"], "big": ["big", "large"], "young": ["young"], "old": ["old"],
            "black": ["black"], "white": ["white"], "brown": ["brown"]}
STS_ACTION = {"running": ["running", "jogging"], "sleeping": ["sleeping", "resting"], "eating": ["eating"],
              "playing": ["playing"], "jumping": ["jumping", "leaping"], "swimming": ["swimming"],
              "sitting": ["sitting"], "walking": ["walking"]}
STS_PREPOSITION = {"beach": "on", "street": "on", "road": "on"}  # default "in"
STS_PLACE = {"park": ["park"], "garden": ["garden", "yard"], "kitchen": ["kitchen"], "river": ["river"],
             "field": ["field", "meadow"], "street": ["street", "road"], "house": ["house", "home"],
             "beach": ["beach"]}
STS_WEIGHTS = {"who": 1.6, "action": 1.4, "place": 1.0, "kind": 0.6}
STS_SLOTS = {"who": STS_WHO, "kind": STS_KIND, "action": STS_ACTION, "place": STS_PLACE}


# ------------------------------------------------------------------------------------------ generators
def _sentence_case(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def _sentiment_sentence(rng: random.Random, label: int) -> str:
    subject = rng.choice(SUBJECTS)
    verb = rng.choice(VERBS)
    roll = rng.random()
    if roll < 0.14 and label in (1, 2):  # negation: "not good" is negative, "not bad" is neutral
        adjective = rng.choice(SENTIMENT_WORDS[3] if label == 1 else SENTIMENT_WORDS[1] + SENTIMENT_WORDS[0][:2])
        body = f"{subject} {verb} not {adjective}"
    elif roll < 0.32:  # two adjectives of the same level
        first, second = rng.sample(SENTIMENT_WORDS[label], 2)
        body = f"{subject} {verb} {first} and {second}"
    elif roll < 0.42:  # a contrast: the clause after "but" decides, as annotators of SST tend to
        other = rng.choice([k for k in SENTIMENT_WORDS if abs(k - label) >= 2])
        body = (f"{subject} {verb} {rng.choice(SENTIMENT_WORDS[other])} at first , but "
                f"{rng.choice(SENTIMENT_WORDS[label])} in the end")
    else:
        body = f"{subject} {verb} {rng.choice(INTENSIFIERS)} {rng.choice(SENTIMENT_WORDS[label])}"
    if rng.random() < 0.3:
        opener = rng.choice(OPENERS)
        body = f"{opener} {body}"
    # SST style: tokens separated by spaces, a leading space, the first letter upper-case.
    return " " + _sentence_case(body) + " ."


def _question(rng: random.Random, intent_forms: list[str], topic: str, avoid: str | None = None) -> str:
    forms = [f for f in intent_forms if f != avoid] or intent_forms
    return rng.choice(forms).format(x=topic)


def _paraphrase_pair(rng: random.Random, label: int) -> tuple[str, str]:
    family = SKILL_INTENTS if rng.random() < 0.55 else PRODUCT_INTENTS
    topics = SKILLS if family is SKILL_INTENTS else PRODUCTS
    intent = rng.choice(list(family))
    topic = rng.choice(topics)
    first_form = rng.choice(family[intent])
    first = first_form.format(x=topic)
    if label == 1:  # same intent and topic, other wording
        return first, _question(rng, family[intent], topic, avoid=first_form)
    roll = rng.random()
    if roll < 0.5:  # hard negative: same wording, another topic (one word differs)
        other = rng.choice([t for t in topics if t != topic])
        second_form = first_form if rng.random() < 0.7 else rng.choice(family[intent])
        return first, second_form.format(x=other)
    if roll < 0.8:  # hard negative: same topic, another intent
        other_intent = rng.choice([i for i in family if i != intent])
        return first, _question(rng, family[other_intent], topic)
    # easy negative: another family altogether
    other_family = PRODUCT_INTENTS if family is SKILL_INTENTS else SKILL_INTENTS
    other_topics = PRODUCTS if other_family is PRODUCT_INTENTS else SKILLS
    return first, _question(rng, other_family[rng.choice(list(other_family))], rng.choice(other_topics))


def _scene(rng: random.Random, slots: dict[str, str]) -> str:
    words = {name: rng.choice(STS_SLOTS[name][value]) for name, value in slots.items()}
    article = "An" if words["kind"][0] in "aeiou" else "A"
    prep = STS_PREPOSITION.get(words["place"], "in")
    if rng.random() < 0.75:
        return f"{article} {words['kind']} {words['who']} is {words['action']} {prep} the {words['place']}."
    return f"{prep.capitalize()} the {words['place']}, {article.lower()} {words['kind']} {words['who']} is {words['action']}."


def _similarity_pair(rng: random.Random) -> tuple[str, str, float]:
    base = {name: rng.choice(list(values)) for name, values in STS_SLOTS.items()}
    changes = rng.choice([0, 0, 1, 1, 2, 2, 3, 4])  # how many slots differ
    changed = rng.sample(list(STS_SLOTS), changes)
    other = dict(base)
    for name in changed:
        other[name] = rng.choice([v for v in STS_SLOTS[name] if v != base[name]])
    score = 5.0 - sum(STS_WEIGHTS[name] for name in changed) + rng.gauss(0.0, 0.2)
    score = round(min(5.0, max(0.0, score)), 1)
    first, second = _scene(rng, base), _scene(rng, other)
    while second == first:  # same meaning, but never the very same sentence
        second = _scene(rng, other)
    return first, second, score


def _new_id(rng: random.Random, used: set[str]) -> str:
    while True:
        ex_id = "".join(rng.choice("0123456789abcdef") for _ in range(25))
        if ex_id not in used:
            used.add(ex_id)
            return ex_id


def generate_demo(seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, dict[str, list[tuple]]]:
    """The demo examples as {task: {split: [(id, text..., label), ...]}}; no two splits share an item."""
    sizes = DEFAULT_SIZES | (sizes or {})
    for split, n in sizes.items():
        if split not in DEFAULT_SIZES or not isinstance(n, int) or n < 1:
            raise ValueError(f"sizes must map train/dev/test to positive whole numbers (got {sizes}).")
    out: dict[str, dict[str, list[tuple]]] = {}
    for _task_index, task in enumerate(("sst", "para", "sts")):
        rng = random.Random(f"mtkit-demo-{DEMO_VERSION}-{seed}-{task}")
        used_ids: set[str] = set()
        seen: set = set()
        out[task] = {}
        for split in ("train", "dev", "test"):
            rows: list[tuple] = []
            while len(rows) < sizes[split]:
                # Draw the label first, then retry that label until the item is new (so that retries do not
                # shift the class balance towards the labels with more distinct items).
                if task == "sst":
                    label = rng.choices(range(5), weights=SENTIMENT_PRIOR)[0]
                elif task == "para":
                    label = 1 if rng.random() < 0.4 else 0
                for _ in range(1000):
                    if task == "sst":
                        item = (_sentiment_sentence(rng, label),)
                        key = item[0].lower()
                    elif task == "para":
                        item = _paraphrase_pair(rng, label)
                        key = tuple(sorted(s.lower() for s in item))
                    else:
                        s1, s2, label = _similarity_pair(rng)
                        item = (s1, s2)
                        key = tuple(sorted(s.lower() for s in item))
                    if key not in seen:
                        break
                else:
                    raise RuntimeError(f"could not draw {sizes[split]} distinct {task} examples; ask for fewer.")
                seen.add(key)
                if task == "sst" and rng.random() < SENTIMENT_DISAGREEMENT:
                    label = min(4, max(0, label + rng.choice((-1, 1))))
                rows.append((_new_id(rng, used_ids), *item, label))
            out[task][split] = rows
    return out


# ------------------------------------------------------------------------------------------ writing
def _write_text(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8", newline="\n")


def write_demo_data(folder: str | Path, seed: int = 0, sizes: dict[str, int] | None = None) -> Path:
    """Write the demo set into ``folder`` in the CS224N formats and file names; returns the folder.

    Same seed and sizes, same bytes. The folder also gets ``mtkit-demo.json`` (seed, sizes, version), which
    tells :func:`mtkit.data.locate.find_data_dir` that this is the demo set, not real data.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = DEFAULT_SIZES | (sizes or {})
    data = generate_demo(seed, sizes)
    for split in ("train", "dev", "test"):
        rows = data["sst"][split]
        if split == "test":  # the real test-student file has two unnamed leading columns
            lines = ["0\t\tid\tsentence\n"]
            lines += [f"{i + 1}\t{float(i)}\t{ex_id}\t{text}\n" for i, (ex_id, text, _) in enumerate(rows)]
        else:
            lines = ["\tid\tsentence\tsentiment\n"]
            lines += [f"{i}\t{ex_id}\t{text}\t{label}\n" for i, (ex_id, text, label) in enumerate(rows)]
        _write_text(folder / FILES["sst"][split], lines)

        for task, label_column, fmt in (("para", "is_duplicate", lambda v: f"{float(v):.1f}"),
                                        ("sts", "similarity", lambda v: f"{float(v):.1f}")):
            rows = data[task][split]
            header = "\tid\tsentence1\tsentence2" + ("" if split == "test" else f"\t{label_column}") + "\n"
            lines = [header]
            for i, (ex_id, s1, s2, label) in enumerate(rows):
                tail = "" if split == "test" else f"\t{fmt(label)}"
                lines.append(f"{i}\t{ex_id}\t{s1}\t{s2}{tail}\n")
            _write_text(folder / FILES[task][split], lines)
    info = {"generator": "mtkit.data.demo", "version": DEMO_VERSION, "seed": seed, "sizes": sizes,
            "files": FILES, "note": "Synthetic demo data written by mtkit; not the CS224N data."}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return folder


def read_demo_info(folder: str | Path) -> dict | None:
    """The demo marker of ``folder`` (a dict), or None when the folder is not a demo set."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def default_cache_dir() -> Path:
    """``$MTKIT_CACHE`` if set, else ``~/.cache/mtkit``."""
    env = os.environ.get("MTKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mtkit"


def _complete(folder: Path, seed: int, sizes: dict[str, int]) -> bool:
    info = read_demo_info(folder)
    if not info or info.get("version") != DEMO_VERSION or info.get("seed") != seed or info.get("sizes") != sizes:
        return False
    return all((folder / name).is_file() for files in FILES.values() for name in files.values())


def demo_data_dir(cache: str | Path | None = None, seed: int = 0, sizes: dict[str, int] | None = None) -> Path:
    """The demo set's folder in the cache, written on first use and reused afterwards.

    Written into a temporary folder first and renamed into place, so an interrupted or concurrent run never
    leaves a half-written set behind.
    """
    sizes = DEFAULT_SIZES | (sizes or {})
    root = Path(cache).expanduser() if cache is not None else default_cache_dir()
    suffix = "" if sizes == DEFAULT_SIZES else "-" + "-".join(f"{sizes[s]}" for s in ("train", "dev", "test"))
    folder = root / f"demo-v{DEMO_VERSION}-seed{seed}{suffix}"
    if _complete(folder, seed, sizes):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=root))
    try:
        write_demo_data(tmp, seed=seed, sizes=sizes)
        if folder.exists():  # stale or incomplete: replace it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _complete(folder, seed, sizes):  # someone else won the race with a complete set: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def cli(argv=None) -> int:
    """``mtkit demo-data --dest DIR [--seed N]`` / ``python -m mtkit.data.demo``: write the demo set."""
    parser = argparse.ArgumentParser(prog="mtkit demo-data",
                                     description="Write mtkit's synthetic demo set in the CS224N file formats.")
    parser.add_argument("--dest", default=None, help="folder to write into (default: the cache, reused)")
    parser.add_argument("--seed", type=int, default=0)
    for split, n in DEFAULT_SIZES.items():
        parser.add_argument(f"--{split}-size", type=int, default=n, help=f"examples per task in {split} ({n})")
    args = parser.parse_args(argv)
    sizes = {"train": args.train_size, "dev": args.dev_size, "test": args.test_size}
    try:
        folder = (write_demo_data(args.dest, seed=args.seed, sizes=sizes) if args.dest
                  else demo_data_dir(seed=args.seed, sizes=sizes))
    except (ValueError, OSError) as err:
        print(f"mtkit demo-data: {err}")
        return 1
    print(f"mtkit's demo set (seed {args.seed}, {sizes}) is in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
