"""MultitaskModel: parameter names, layouts, label-space predictions, losses from the right inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtkit.data.batching import make_loader
from mtkit.data.readers import PairExample, SentenceExample
from mtkit.data.tasks import TaskSpec, default_tasks
from mtkit.model.bert import BertModel
from mtkit.model.bert_config import BertConfig
from mtkit.model.tokenizer import Tokenizer
from mtkit.tasks.multitask import SHARED_PAIR, build_model
from mtkit.train.config import TrainConfig

SENTENCES = [SentenceExample(f"s{i}", text, label) for i, (text, label) in enumerate([
    ("a superb film", 4), ("dreadful acting", 0), ("the story was ordinary", 2), ("charming music", 3)])]
PAIRS = [PairExample(f"p{i}", a, b, label) for i, (a, b, label) in enumerate([
    ("how do i learn chess ?", "what is the best way to learn chess ?", 1.0),
    ("where can i buy shoes ?", "how much do bikes cost ?", 0.0),
    ("a man is running in the park", "a guy is jogging in the park", 1.0),
    ("a dog sleeps", "a cat eats in the kitchen on a rainy day", 0.0)])]
STS = [PairExample(p.id, p.sentence1, p.sentence2, s) for p, s in zip(PAIRS, (4.5, 0.5, 4.8, 1.0))]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_pretrained(None)


def tiny_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig.tiny()
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    return BertModel(config)


def make(config: TrainConfig, seed: int = 0):
    specs = {t.name: t for t in default_tasks()}
    chosen = [t.task_spec() if t.name not in specs else specs[t.name] for t in config.tasks]
    return build_model(config, chosen, encoder=tiny_encoder(seed)).eval()


def batch(tokenizer, examples, layout="bi"):
    return next(iter(make_loader(examples, tokenizer, len(examples), layout=layout, shuffle=False)))


def test_parameter_names_follow_the_contract_and_llrd_accepts_them():
    from mtkit.optim.llrd import layerwise_lr_groups
    model = make(TrainConfig(encoder="tiny", shared_pair_layer=16, dropout=0.0))
    names = [n for n, _ in model.named_parameters()]
    assert all(n.startswith(("encoder.", "heads.")) for n in names), names
    assert any(n.startswith(f"heads.{SHARED_PAIR}.") for n in names)
    assert {n.split(".")[1] for n in names if n.startswith("heads.")} == {"sst", "para", SHARED_PAIR}  # cosine: none
    groups = layerwise_lr_groups(model, lr=1e-3, decay=0.9).groups
    assert sum(len(g["params"]) for g in groups) == len(names)


def test_bi_layout_encodes_both_sides_in_one_call_like_two_separate_calls(tokenizer):
    model = make(TrainConfig(encoder="tiny", dropout=0.0))
    b = batch(tokenizer, PAIRS)
    calls = []
    hook = model.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    u, v = model.features("para", b)
    hook.remove()
    assert len(calls) == 1 and calls[0][0] == 2 * len(PAIRS)  # one encoder call over 2B rows
    u1 = model.encode(b["input_ids_1"], b["attention_mask_1"], b["token_type_ids_1"], "mean")
    v1 = model.encode(b["input_ids_2"], b["attention_mask_2"], b["token_type_ids_2"], "mean")
    torch.testing.assert_close(u, u1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v, v1, atol=1e-5, rtol=1e-5)


def test_cross_layout_is_one_pass_over_the_joined_pair(tokenizer):
    config = TrainConfig(encoder="tiny", dropout=0.0, tasks={"para": {"layout": "cross", "pooling": "cls"}})
    model = make(config)
    info = model.task_info["para"]
    assert (info.layout, info.head, info.loss, info.output) == ("cross", "cross_encoder", "bce_with_logits",
                                                                "binary_logit")
    b = batch(tokenizer, PAIRS, layout="cross")
    assert "input_ids" in b and "input_ids_1" not in b
    x, = model.features("para", b)
    out = model.encoder(b["input_ids"], b["attention_mask"], b["token_type_ids"]).last_hidden_state[:, 0]
    torch.testing.assert_close(x, out)
    logits = model("para", b)
    assert logits.shape == (len(PAIRS),)
    torch.testing.assert_close(model.predict("para", b), (logits > 0).float())


def test_predictions_are_in_label_space(tokenizer):
    config = TrainConfig(encoder="tiny", dropout=0.0, tasks={
        "sst": {}, "para": {}, "sts": {},
        "sts_buckets": {"kind": "pair_regression", "train": "x", "dev": "y", "label_range": [0, 5],
                        "head": "buckets", "head_options": {"num_buckets": 6}}})
    model = make(config)
    sst = batch(tokenizer, SENTENCES)
    logits = model("sst", sst)
    assert logits.shape == (4, 5)
    assert torch.equal(model.predict("sst", sst), logits.argmax(-1))
    pairs = batch(tokenizer, PAIRS)
    assert set(model.predict("para", pairs).tolist()) <= {0.0, 1.0}
    # cosine head for STS: score = 0 + (cos - 0) * 5 with cosine_range (0, 1), the target range of its loss
    u, v = model.features("sts", pairs)
    torch.testing.assert_close(model.predict("sts", pairs), 5 * F.cosine_similarity(u, v, dim=-1))
    # buckets: the expected value of the centres 0..5 under softmax(logits)
    bucket_logits = model("sts_buckets", pairs)
    expected = bucket_logits.softmax(-1) @ torch.arange(6.0)
    torch.testing.assert_close(model.predict("sts_buckets", pairs), expected)


def test_to_labels_by_hand():
    model = make(TrainConfig(encoder="tiny", tasks={"sst": {}, "para": {},
                                                    "cos_para": {"kind": "pair_classification", "train": "x",
                                                                 "dev": "y", "head": "cosine",
                                                                 "head_options": {"cosine_range": [0.0, 1.0]},
                                                                 "loss": "cosine_embedding"}}))
    assert model.to_labels("sst", torch.tensor([[0.1, 2.0, 0.3, 0, 0], [5.0, 0, 0, 0, 0]])).tolist() == [1, 0]
    assert model.to_labels("para", torch.tensor([-0.1, 0.0, 0.2])).tolist() == [0.0, 0.0, 1.0]
    # cosine head on a 0/1 task: the score is cos mapped from [margin, 1] = [0, 1] onto [0, 1], threshold 0.5
    assert model.to_labels("cos_para", torch.tensor([0.49, 0.51])).tolist() == [0.0, 1.0]


def test_embedding_loss_gets_the_sentence_vectors(tokenizer):
    """The cosine-similarity loss is computed from u, v: mean((cos(u, v) - y / 5)^2) for STS labels on [0, 5]."""
    model = make(TrainConfig(encoder="tiny", dropout=0.0, tasks={"sts": {}}))
    b = batch(tokenizer, STS)
    u = model.encode(b["input_ids_1"], b["attention_mask_1"], b["token_type_ids_1"], "mean")
    v = model.encode(b["input_ids_2"], b["attention_mask_2"], b["token_type_ids_2"], "mean")
    by_hand = ((F.cosine_similarity(u, v, dim=-1) - b["labels"] / 5) ** 2).mean()
    torch.testing.assert_close(model.loss("sts", b), by_hand, atol=1e-6, rtol=1e-5)


def test_output_losses_by_hand(tokenizer):
    model = make(TrainConfig(encoder="tiny", dropout=0.0, tasks={"sst": {}, "para": {}}))
    s = batch(tokenizer, SENTENCES)
    torch.testing.assert_close(model.loss("sst", s), F.cross_entropy(model("sst", s), s["labels"]))
    p = batch(tokenizer, PAIRS)
    torch.testing.assert_close(model.loss("para", p),
                               F.binary_cross_entropy_with_logits(model("para", p), p["labels"]))


def test_shared_pair_layer_feeds_both_pair_heads(tokenizer):
    model = make(TrainConfig(encoder="tiny", dropout=0.0, shared_pair_layer=16))
    assert model.heads["para"].hidden == 16 and model.heads["sst"].hidden == 64
    b = batch(tokenizer, PAIRS)
    model.zero_grad()
    model.loss("para", b).backward()
    assert model.heads[SHARED_PAIR].dense.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.loss("sst", batch(tokenizer, SENTENCES)).backward()
    assert model.heads[SHARED_PAIR].dense.weight.grad is None  # sentiment does not use it


def test_frozen_encoder_gets_no_gradient(tokenizer):
    from mtkit.optim import apply_finetune_mode
    model = make(TrainConfig(encoder="tiny", dropout=0.0, tasks={"sst": {}}))
    apply_finetune_mode(model, "last-linear-layer")
    model.loss("sst", batch(tokenizer, SENTENCES)).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.heads["sst"].classifier.weight.grad is not None


@pytest.mark.parametrize("task, message", [
    ({"para": {"head": "sentiment"}}, "takes 1 vector"),
    ({"para": {"loss": "cosent"}}, "does not go with head"),
    ({"para": {"head": "cross_encoder"}}, "layout: cross"),
    ({"sts": {"layout": "cross", "head": "cosine"}}, "cross layout"),
    ({"sst": {"head_options": {"featurs": ["u"]}}}, "no option 'featurs'"),
])
def test_bad_head_and_loss_choices_name_the_task(task, message):
    with pytest.raises(ValueError, match=message) as info:
        make(TrainConfig(encoder="tiny", tasks=task))
    assert f"task {next(iter(task))!r}" in str(info.value)


def test_custom_classification_task_with_two_labels(tokenizer):
    spec = TaskSpec("cfimdb", "classification", "x", "y", num_labels=2)
    config = TrainConfig(encoder="tiny", dropout=0.0, tasks={"cfimdb": {"kind": "classification", "train": "x",
                                                                        "dev": "y", "num_labels": 2}})
    model = build_model(config, [spec], encoder=tiny_encoder())
    examples = [SentenceExample("a", "good", 1), SentenceExample("b", "bad", 0)]
    assert model("cfimdb", batch(tokenizer, examples)).shape == (2, 2)


def test_cosine_head_predicts_on_the_scale_its_loss_trains():
    """CosineSimilarityLoss pulls cos toward labels mapped onto [0, 1]: the head's threshold is then cos 0.5."""
    model = make(TrainConfig(encoder="tiny", tasks={
        "cos_para": {"kind": "pair_classification", "train": "x", "dev": "y", "head": "cosine",
                     "loss": "cosine_similarity"},
        "emb_para": {"kind": "pair_classification", "train": "x", "dev": "y", "head": "cosine",
                     "head_options": {"cosine_range": [0.3, 1.0]}, "loss": "cosine_embedding",
                     "loss_options": {"margin": 0.3}}}))
    assert model.heads["cos_para"].cosine_range == (0.0, 1.0)
    assert model.heads["emb_para"].cosine_range == (0.3, 1.0)  # 1 - cos vs max(0, cos - margin): threshold 0.65
    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.65, (1 - 0.65 ** 2) ** 0.5]])  # cos(u, v) = 0.65
    torch.testing.assert_close(model.heads["emb_para"](u, v), torch.tensor([0.5]))


BROKEN_REPORT_B = """
data_dir: demo
tasks:
  sst: {}
  para: {head: cosine, loss: cosine_embedding, loss_options: {margin: 0.0}}
  sts: {head: cosine, loss: cosine_similarity}
"""


def test_a_cosine_head_without_the_range_its_loss_trains_is_refused(tmp_path):
    """Report B's configuration as it was: a cosine head trained with cosine_embedding and no cosine_range
    predicts on [-1, 1] (threshold cos 0), so almost every pair came out "paraphrase"."""
    from mtkit.train.config import ConfigError
    path = tmp_path / "report_b_broken.yaml"
    path.write_text(BROKEN_REPORT_B)
    with pytest.raises(ConfigError, match=r"tasks\.para\.head_options: the cosine head was given no cosine_range, "
                                          r"but loss 'cosine_embedding' trains the cosines toward \[0, 1\]") as info:
        TrainConfig.from_yaml(path)
    assert "set head_options: {cosine_range: [0, 1]}" in str(info.value) and str(path) in str(info.value)
    # a range that disagrees with the loss's is refused too, naming the one to use
    with pytest.raises(ConfigError, match=r"maps cosine_range \[-1, 1\].*toward \[0.2, 1\].*\[0.2, 1\]"):
        TrainConfig(encoder="tiny", tasks={"para": {"head": "cosine", "head_options": {"cosine_range": [-1, 1]},
                                                    "loss": "cosine_embedding", "loss_options": {"margin": 0.2}}})
    # the model builder refuses it as well (a config built without validation, e.g. edited in place)
    config = TrainConfig(encoder="tiny", tasks={"para": {"head": "cosine", "loss": "cosine_embedding",
                                                         "head_options": {"cosine_range": [0, 1]}}})
    config.tasks[0].head_options = {}
    with pytest.raises(ValueError, match=r"task 'para': the cosine head was given no cosine_range"):
        make(config)


def test_the_cosine_ranges_that_need_nothing_written():
    """cosine_similarity gives the head its target_range; ranking losses and mse need no range."""
    model = make(TrainConfig(encoder="tiny", tasks={
        "sts": {"head": "cosine", "loss": "cosine_similarity"},
        "cosent_para": {"kind": "pair_classification", "train": "x", "dev": "y", "head": "cosine", "loss": "cosent"},
        "mse_sts": {"kind": "pair_regression", "train": "x", "dev": "y", "head": "cosine", "loss": "mse",
                    "head_options": {"cosine_range": [-1, 1]}}}))
    assert model.heads["sts"].cosine_range == (0.0, 1.0)
    assert model.heads["cosent_para"].cosine_range == (-1.0, 1.0)  # the head's default: cosent only ranks
    for letter in "abcde":
        TrainConfig.from_yaml(f"examples/report_{letter}.yaml")  # every example config passes the check
