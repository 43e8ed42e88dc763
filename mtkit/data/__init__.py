"""Data: readers for the CS224N files, task specs, the self-made demo set, finding the data, batching, fetch.

The path of data through this box: ``find_data_dir()`` picks a folder (yours, ``$MTKIT_DATA``, ``./data`` or
the demo set) -> ``load_split(spec, folder, split)`` reads one file into examples plus a ``LoadReport`` ->
``make_loader(examples, tokenizer, batch_size)`` pads batches for the model.

Taught in notebooks/01_setup_and_data.ipynb.
"""
import importlib

from mtkit.data.batching import BucketBatchSampler, Collator, EncodedDataset, make_loader, padding_stats
from mtkit.data.readers import (
    DataFormatError,
    LoadReport,
    PairExample,
    Rejection,
    SentenceExample,
    load_examples,
    read_pairs,
    read_sentences,
    to_dataframe,
)
from mtkit.data.tasks import TaskSpec, default_task, default_tasks, load_split, tasks_from_config

__all__ = ["BucketBatchSampler", "Collator", "DataFormatError", "DataSource", "EncodedDataset", "FetchError",
           "LoadReport", "PairExample", "Rejection", "SentenceExample", "TaskSpec", "default_task",
           "default_tasks", "demo_data_dir", "find_data_dir", "load_examples", "load_split",
           "make_loader", "padding_stats", "read_pairs", "read_sentences", "tasks_from_config", "to_dataframe",
           "write_demo_data"]

# Loaded on first use, so that `python -m mtkit.data.fetch` / `python -m mtkit.data.demo` run their module
# cleanly. The function fetch is deliberately not re-exported: it would hide the module mtkit.data.fetch.
_LAZY = {"demo_data_dir": "demo", "write_demo_data": "demo", "FetchError": "fetch", "DataSource": "locate",
         "find_data_dir": "locate"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"mtkit.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mtkit.data' has no attribute {name!r}")
