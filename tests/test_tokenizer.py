"""Tokenizer: the same ids as transformers.BertTokenizerFast on every sentence of the real files, and a documented
behaviour or a clear error for each awkward input."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from mtkit.model.pretrained import default_encoder_dir
from mtkit.model.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers", reason="transformers is the reference oracle (test extra)")

SENTENCE_COLUMNS = ("sentence", "sentence1", "sentence2")
AWKWARD = [
    "Hello, World!", "  leading and trailing spaces  ", "UPPER lower MiXeD", "Café crème brûlée, naïve façade",
    "Straße und Übermut", "日本語のテキスト", "中文字符和English混合", "emoji 😀 and symbols ©®™",
    "tab\tand\nnewline",
    "control\x00char\x07s", "unaffable unbelievably antidisestablishmentarianism", "e-mail: a.b@c.com, $3.50 (50%)",
    "don't won't can't", "literal [CLS] and [MASK] tokens [SEP]", "\\/slashes\\/ and \"quotes\"",
    "Ελληνικά και русский", "", " ", "a" * 150,
]


@pytest.fixture(scope="module")
def ours() -> Tokenizer:
    return Tokenizer.from_pretrained()


@pytest.fixture(scope="module")
def reference():
    return transformers.BertTokenizerFast(str(default_encoder_dir() / "vocab.txt"))


def as_text(values) -> list[str]:
    """Cells as strings; the few empty cells pandas reads as NaN (the data README's malformed rows) become ''."""
    return [v if isinstance(v, str) else "" for v in values]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ----- parity with BertTokenizerFast -------------------------------------------------------------------------------

def test_every_real_sentence_matches_bert_tokenizer_fast(ours, reference, real_data):
    files = sorted(real_data.glob("*.csv"))
    assert files
    checked = 0
    for file in files:
        frame = pd.read_csv(file, sep="\t")
        for column in [c for c in SENTENCE_COLUMNS if c in frame.columns]:
            texts = as_text(frame[column].tolist())
            mine = quiet(ours, texts, max_length=512, padding=False, return_tensors=None)["input_ids"]
            theirs = reference(texts, max_length=512, truncation=True)["input_ids"]
            bad = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
            assert not bad, f"{file.name}:{column} differs on rows {bad[:5]} (first: {texts[bad[0]]!r})"
            checked += len(texts)
    assert checked > 60_000


def test_every_real_pair_matches_bert_tokenizer_fast(ours, reference, real_data):
    for file in sorted(real_data.glob("*.csv")):
        frame = pd.read_csv(file, sep="\t")
        if not {"sentence1", "sentence2"} <= set(frame.columns):
            continue
        a, b = as_text(frame["sentence1"].tolist()), as_text(frame["sentence2"].tolist())
        mine = quiet(ours, a, b, max_length=512, padding=False, return_tensors=None)
        theirs = reference(a, b, max_length=512, truncation=True)
        for key in ("input_ids", "token_type_ids"):
            bad = [i for i, (x, y) in enumerate(zip(mine[key], theirs[key])) if x != y]
            assert not bad, f"{file.name} pairs: {key} differs on rows {bad[:5]}"


def test_padded_truncated_tensors_match_on_real_pairs(ours, reference, real_data):
    """Short max_length forces pair truncation: the longest-first strategy must cut the same tokens."""
    frame = pd.read_csv(real_data / "quora-dev.csv", sep="\t").head(256)
    a, b = as_text(frame["sentence1"].tolist()), as_text(frame["sentence2"].tolist())
    mine = quiet(ours, a, b, max_length=24)
    theirs = reference(a, b, max_length=24, truncation=True, padding="longest", return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(mine[key], theirs[key]), key


def test_awkward_texts_match_bert_tokenizer_fast(ours, reference):
    """Accents, CJK, emoji, control characters, very long words, empty strings: no real data needed."""
    mine = quiet(ours, AWKWARD, max_length=64)
    theirs = reference(AWKWARD, max_length=64, truncation=True, padding="longest", return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(mine[key], theirs[key]), key
    pairs = quiet(ours, AWKWARD, AWKWARD[::-1], max_length=32, padding="max_length")
    ref_pairs = reference(AWKWARD, AWKWARD[::-1], max_length=32, truncation=True, padding="max_length",
                          return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(pairs[key], ref_pairs[key]), key


def test_special_ids_and_vocab(ours, reference):
    assert (ours.pad_token_id, ours.cls_token_id, ours.sep_token_id) == (0, 101, 102)
    assert ours.pad_token_id == reference.pad_token_id and ours.cls_token_id == reference.cls_token_id
    assert ours.sep_token_id == reference.sep_token_id and ours.unk_token_id == reference.unk_token_id
    assert ours.vocab_size == reference.vocab_size == len(ours) == 30522
    assert ours.model_max_length == 512


# ----- layouts ---------------------------------------------------------------------------------------------------

def test_single_and_pair_layouts(ours):
    single = ours(["the cat sat"])
    assert ours.convert_ids_to_tokens(single["input_ids"][0]) == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert single["token_type_ids"].sum() == 0
    pair = ours(["the cat"], ["a dog"])
    assert ours.convert_ids_to_tokens(pair["input_ids"][0]) == ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]"]
    assert pair["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_padding_modes(ours):
    texts = ["short", "a somewhat longer sentence"]
    longest = ours(texts)
    assert longest["input_ids"].shape == (2, 6) and longest["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0]
    assert longest["input_ids"][0, 3:].tolist() == [0, 0, 0]
    fixed = ours(texts, padding="max_length", max_length=10)
    assert fixed["input_ids"].shape == (2, 10)
    ragged = ours(texts, padding=False, return_tensors=None)
    assert [len(x) for x in ragged["input_ids"]] == [3, 6]
    with pytest.raises(ValueError, match="padding='longest'"):
        ours(texts, padding=False)
    with pytest.raises(ValueError, match="padding must be"):
        ours(texts, padding="left")


def test_a_single_string_is_a_batch_of_one(ours):
    assert ours("hello there")["input_ids"].shape == (1, 4)


def test_decode_and_tokenize(ours):
    ids = ours(["Unaffable café!"])["input_ids"][0]
    assert ours.decode(ids) == "unaffable cafe!"
    assert ours.decode(ids, skip_special_tokens=False).startswith("[CLS]")
    assert ours.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert ours.convert_tokens_to_ids(["[CLS]", "notawordpiecetoken##"]) == [101, ours.unk_token_id]
    assert ours.batch_decode(ours(["a b", "c"])["input_ids"]) == ["a b", "c"]


# ----- bad input ---------------------------------------------------------------------------------------------------

def test_empty_string_is_cls_sep(ours):
    """Documented: an empty sentence becomes [CLS] [SEP], and the model can still encode it."""
    batch = ours([""])
    assert batch["input_ids"].tolist() == [[101, 102]]
    pair = ours([""], [""])
    assert pair["input_ids"].tolist() == [[101, 102, 102]]


def test_none_and_nan_raise_a_type_error_naming_the_position(ours):
    with pytest.raises(TypeError, match="texts is None"):
        ours(None)
    with pytest.raises(TypeError, match=r"texts\[1\] is None .*missing sentences"):
        ours(["fine", None])
    with pytest.raises(TypeError, match=r"pairs\[0\] is nan .*empty CSV field"):
        ours(["fine"], [float("nan")])
    with pytest.raises(TypeError, match="strings"):
        ours([3])
    with pytest.raises(ValueError, match="partner"):
        ours(["a", "b"], ["c"])


def test_long_sentence_is_truncated_with_one_warning(ours):
    long = " ".join(["word"] * 600)
    with pytest.warns(UserWarning, match=r"2 of 3 sentences were longer than max_length=128") as record:
        batch = ours([long, "short", long])
    assert len([w for w in record if "truncated" in str(w.message)]) == 1
    assert batch["input_ids"].shape == (3, 128)
    assert batch["input_ids"][0, -1].item() == ours.sep_token_id  # [SEP] kept at the end


def test_max_length_is_clamped_to_the_position_limit(ours):
    long = " ".join(["word"] * 600)
    with pytest.warns(UserWarning) as record:
        batch = ours([long], max_length=2048)
    messages = " | ".join(str(w.message) for w in record)
    assert "position limit (512)" in messages and "1 of 1 sentences" in messages
    assert batch["input_ids"].shape == (1, 512)
    with pytest.warns(UserWarning, match="truncated"):
        assert ours([long], max_length=None)["input_ids"].shape == (1, 512)
    with pytest.raises(ValueError, match="position limit"):
        ours([long], truncation=False)
    with pytest.raises(ValueError, match="at least 3"):
        ours(["x"], max_length=2)


def test_non_ascii_text(ours):
    batch = ours(["Crème brûlée à Paris", "東京"])
    assert ours.decode(batch["input_ids"][0]) == "creme brulee a paris"  # lower-cased, accents stripped
    assert ours.convert_ids_to_tokens(batch["input_ids"][1])[:4] == ["[CLS]", "東", "京", "[SEP]"]


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)
