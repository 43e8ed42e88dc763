"""mtkit: a teaching kit for multi-task fine-tuning of BERT.

The path of data, one package per stretch of it (docs/ARCHITECTURE.md draws it)::

    text -> model (tokenizer, minBERT, pooling) -> tasks (heads, losses, the multitask model)
         -> train (task schedules, optim, surgery, the loop, checkpoints) -> eval (metrics) -> teach (plots, widgets)

Below them sit ``mtkit.util`` (device, registry, paths) and ``mtkit.data`` (readers, batching); ``mtkit.optim``
and ``mtkit.surgery`` are the optimizer and the gradient methods; ``mtkit.exercises`` is the learner's code.

The public API is the names in ``__all__``: ``from mtkit import Trainer, TrainConfig``. They are loaded on
first use (PEP 562), so that ``import mtkit`` stays light and ``python -m mtkit.data.demo`` runs its module
cleanly; the table below is the whole API, each name with the module that defines it.
"""
from importlib import import_module

__version__ = "0.1.0"

_API = {
    # the model: text -> ids -> minBERT -> pooled vectors
    "BertConfig": "mtkit.model.bert_config",
    "BertModel": "mtkit.model.bert",
    "Tokenizer": "mtkit.model.tokenizer",
    "load_pretrained": "mtkit.model.pretrained",
    "save_pretrained": "mtkit.model.pretrained",
    "build_encoder": "mtkit.model.build",
    "pool": "mtkit.model.pooling",
    "POOLING_REGISTRY": "mtkit.model.pooling",
    # the tasks: heads and losses on the shared encoder
    "HEAD_REGISTRY": "mtkit.tasks.heads",
    "make_head": "mtkit.tasks.heads",
    "LOSS_REGISTRY": "mtkit.tasks.losses",
    "make_loss": "mtkit.tasks.losses",
    "register_loss": "mtkit.tasks.losses",
    "MultitaskModel": "mtkit.tasks.multitask",
    "build_model": "mtkit.tasks.multitask",
    # data
    "TaskSpec": "mtkit.data.tasks",
    "load_split": "mtkit.data.tasks",
    "demo_data_dir": "mtkit.data.demo",
    # optimization and gradient methods
    "AdamW": "mtkit.optim.adamw",
    "layerwise_lr_groups": "mtkit.optim.llrd",
    "GradientSurgery": "mtkit.surgery",
    "GRAM_METHODS": "mtkit.surgery.methods",
    "LOSS_WEIGHTINGS": "mtkit.surgery.weighting",
    # training
    "TrainConfig": "mtkit.train.config",
    "TaskConfig": "mtkit.train.task_config",
    "ConfigError": "mtkit.train.checker",
    "SCHEDULE_REGISTRY": "mtkit.train.schedules",
    "make_task_schedule": "mtkit.train.schedules",
    "Trainer": "mtkit.train.trainer",
    "TrainResult": "mtkit.train.result",
    "train": "mtkit.train.trainer",
    "load_checkpoint_model": "mtkit.train.trained_model",
    # evaluation
    "overall_score": "mtkit.eval.metrics",
    "evaluate_task": "mtkit.eval.metrics",
    # the foundation
    "get_device": "mtkit.util.device",
    "seed_everything": "mtkit.util.device",
    "Registry": "mtkit.util.registry",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'mtkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
