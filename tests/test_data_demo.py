"""The demo set: deterministic, in the CS224N formats, plain English in BERT's vocabulary, and learnable."""
from __future__ import annotations

import collections
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtkit.data import default_tasks, load_split
from mtkit.data.demo import DEFAULT_SIZES, FILES, INFO_FILE, demo_data_dir, write_demo_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("demo"), seed=0)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, demo):
    again = write_demo_data(tmp_path / "again", seed=0)
    other = write_demo_data(tmp_path / "other", seed=1)
    for files in FILES.values():
        for name in files.values():
            assert (again / name).read_bytes() == (demo / name).read_bytes(), name
            assert (other / name).read_bytes() != (demo / name).read_bytes(), name


def test_demo_files_load_with_the_same_readers(demo):
    for spec in default_tasks():
        for split in ("train", "dev", "test"):
            examples, report = load_split(spec, demo, split)
            assert report.rows_read == report.rows_kept == DEFAULT_SIZES[split] and report.ok, str(report)
            assert all((ex.label is None) == (split == "test") for ex in examples)
    # The SST test-student file has the real file's two unnamed leading columns.
    assert (demo / "ids-sst-test-student.csv").read_text().startswith("0\t\tid\tsentence\n1\t0.0\t")
    assert (demo / INFO_FILE).is_file()


def test_no_item_is_shared_between_splits(demo):
    for spec in default_tasks():
        seen = {}
        for split in ("train", "dev", "test"):
            examples, _ = load_split(spec, demo, split)
            for ex in examples:
                key = ex.sentence if spec.kind == "classification" else tuple(sorted((ex.sentence1, ex.sentence2)))
                assert key not in seen, (key, seen.get(key), split)
                seen[key] = split


def test_every_word_is_one_token_of_the_uncased_vocabulary(demo):
    from mtkit.model.tokenizer import Tokenizer
    tokenizer = Tokenizer.from_pretrained()
    words = set()
    for files in FILES.values():
        for name in files.values():
            lines = (demo / name).read_text().splitlines()
            header = lines[0].split("\t")
            text_columns = [i for i, col in enumerate(header) if col.startswith("sentence")]
            for line in lines[1:]:
                fields = line.split("\t")
                for i in text_columns:
                    words.update(re.findall(r"[a-z]+", fields[i].lower()))
    assert len(words) > 100
    not_whole = sorted(w for w in words if tokenizer.tokenize(w) != [w])
    assert not_whole == []


def test_labels_are_graded_and_balanced(demo):
    tasks = {t.name: t for t in default_tasks()}
    sst, _ = load_split(tasks["sst"], demo, "train")
    counts = collections.Counter(ex.label for ex in sst)
    assert set(counts) == {0, 1, 2, 3, 4} and max(counts.values()) / len(sst) < 0.35
    para, _ = load_split(tasks["para"], demo, "train")
    positives = sum(ex.label for ex in para) / len(para)
    assert 0.3 < positives < 0.5

    def overlap(a, b):
        a, b = set(a.split()), set(b.split())
        return len(a & b) / len(a | b)

    hard = [ex for ex in para if ex.label == 0 and overlap(ex.sentence1, ex.sentence2) >= 0.6]
    assert len(hard) > 0.2 * len(para)  # hard negatives: most words shared, different meaning
    sts, _ = load_split(tasks["sts"], demo, "train")
    histogram = collections.Counter(min(4, int(ex.label)) for ex in sts)
    assert all(histogram[b] > 0.05 * len(sts) for b in range(5)), histogram  # scores spread over 0-5


def test_demo_data_dir_writes_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("MTKIT_CACHE", str(tmp_path / "cache"))
    first = demo_data_dir(sizes={"train": 20, "dev": 10, "test": 10})
    stamp = (first / "sts-train.csv").stat().st_mtime_ns
    again = demo_data_dir(sizes={"train": 20, "dev": 10, "test": 10})
    assert again == first and (first / "sts-train.csv").stat().st_mtime_ns == stamp
    assert str(first).startswith(str(tmp_path / "cache"))
    (first / "quora-dev.csv").unlink()  # an incomplete cache is rewritten
    assert (demo_data_dir(sizes={"train": 20, "dev": 10, "test": 10}) / "quora-dev.csv").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------------------------------ learnability
def _mean_pool(hidden, mask):
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)


def _train_and_score(spec, folder, epochs: int, lr: float = 2e-3, history: list | None = None) -> tuple[float, float]:
    """Tiny BERT from scratch + a linear head on one demo task; returns (dev score, majority baseline)."""
    from mtkit.data.batching import make_loader
    from mtkit.eval import metrics
    from mtkit.model.bert import BertModel
    from mtkit.model.bert_config import BertConfig
    from mtkit.model.tokenizer import Tokenizer

    torch.manual_seed(0)
    tokenizer = Tokenizer.from_pretrained()
    train, _ = load_split(spec, folder, "train")
    dev, _ = load_split(spec, folder, "dev")
    config = BertConfig.tiny()
    bert = BertModel(config)
    head = nn.Linear(config.hidden_size * (1 if spec.kind == "classification" else 2),
                     5 if spec.kind == "classification" else 1)
    optimizer = torch.optim.AdamW([*bert.parameters(), *head.parameters()], lr=lr, weight_decay=0.0)
    train_loader = make_loader(train, tokenizer, 32, seed=0)
    dev_loader = make_loader(dev, tokenizer, 100, shuffle=False)

    def forward(batch):
        if spec.kind == "classification":
            out = bert(batch["input_ids"], batch["attention_mask"])
            return head(_mean_pool(out.last_hidden_state, batch["attention_mask"]))  # (B, 5)
        u = _mean_pool(bert(batch["input_ids_1"], batch["attention_mask_1"]).last_hidden_state, batch["attention_mask_1"])
        v = _mean_pool(bert(batch["input_ids_2"], batch["attention_mask_2"]).last_hidden_state, batch["attention_mask_2"])
        return head(torch.cat([(u - v).abs(), u * v], dim=-1)).squeeze(-1)  # (B,)

    def dev_score() -> float:
        bert.eval()
        preds, labels = [], []
        with torch.no_grad():
            for batch in dev_loader:
                out = forward(batch)
                if spec.kind == "classification":
                    preds += out.argmax(-1).tolist()
                elif spec.kind == "pair_classification":
                    preds += (out > 0).long().tolist()
                else:
                    preds += (out * 5).tolist()
                labels += batch["labels"].tolist()
        bert.train()
        return metrics.evaluate_task(spec, preds, labels)["score"]

    for _ in range(epochs):
        for batch in train_loader:
            out = forward(batch)
            if spec.kind == "classification":
                loss = F.cross_entropy(out, batch["labels"])
            elif spec.kind == "pair_classification":
                loss = F.binary_cross_entropy_with_logits(out, batch["labels"])
            else:
                loss = F.mse_loss(out, batch["labels"] / 5)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if history is not None:
            history.append(dev_score())
    if spec.kind == "pair_regression":
        majority = 0.0  # a constant prediction has no correlation
    else:
        counts = collections.Counter(ex.label for ex in dev)
        majority = max(counts.values()) / len(dev)
    return dev_score(), majority


@pytest.mark.parametrize("task, epochs, margin", [("sst", 3, 0.25), ("para", 4, 0.10), ("sts", 4, 0.40)])
def test_demo_is_learnable_by_tiny_bert_from_scratch(demo, task, epochs, margin):
    """A few seconds of training on the CPU beat the majority baseline by a clear margin on each task."""
    spec = {t.name: t for t in default_tasks()}[task]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model gains nothing from more threads on a shared CPU
    try:
        score, majority = _train_and_score(spec, demo, epochs)
    finally:
        torch.set_num_threads(threads)
    assert score >= majority + margin, (task, score, majority)


def test_demo_cli(tmp_path, capsys):
    from mtkit.data.demo import cli
    assert cli(["--dest", str(tmp_path / "d"), "--seed", "2", "--train-size", "30"]) == 0
    examples, _ = load_split(default_tasks()[0], tmp_path / "d", "train")
    assert len(examples) == 30 and str(tmp_path / "d") in capsys.readouterr().out
    assert cli(["--dest", str(tmp_path / "e"), "--dev-size", "0"]) == 1
