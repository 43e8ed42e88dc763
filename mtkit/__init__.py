"""mtkit: a teaching kit for multi-task fine-tuning of BERT.

The path of data, one module per box:
text -> tokenizer -> bert (minBERT) -> pooling -> heads -> losses
     -> multitask trainer (task_schedules, optim, surgery) -> metrics -> plots and widgets.
"""
from mtkit.model.bert_config import BertConfig
from mtkit.util.device import get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["BertConfig", "get_device", "seed_everything", "__version__"]
