"""The ``mtkit`` command: train, evaluate, predict, export, fetch and split data, write the demo set.

``mtkit train`` accepts the flags of the CS224N starter's ``multitask_classifier.py`` (same names, so a
command line from the handout works), plus ``--config file.yaml`` for everything else. The YAML keys are the
field names of :class:`mtkit.train.config.TrainConfig`; flags given on the command line override the file,
and ``--set key=value`` overrides any key (``--set schedule=round-robin --set surgery=pcgrad``)::

    mtkit demo-data --dest ./demo                             # or no --dest: the cache, reused
    mtkit train --config examples/report_a.yaml --fine-tune-mode full-model --lr 1e-5 --epochs 3
    mtkit train --config examples/report_a.yaml --resume          # continue a killed run
    mtkit evaluate runs/report_a                                  # dev metrics of the best model
    mtkit predict runs/report_a --split test                      # submission files
    mtkit evaluate runs/a runs/b runs/c                           # an ensemble: averaged logits and scores
    mtkit export runs/report_a --out exported --format sentence-transformers   # for the field's libraries

Flags of the starter that are not given keep the config's value (the starter's own defaults are the
config's defaults: seed 11711, 10 epochs, batch size 8, lr 1e-5, dropout 0.3), with one difference:
``fine_tune_mode`` defaults to ``full-model`` (the starter: ``last-linear-layer``). ``--use_gpu`` asks for
CUDA; without it the device is chosen automatically (``device: auto``).

Taught in notebooks/07_multitask_training.ipynb.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from mtkit.data import demo, fetch
from mtkit.data import split as data_split
from mtkit.export import FORMATS, export
from mtkit.train.checkpoint import CheckpointError
from mtkit.train.config import SURGERIES, ConfigError, TrainConfig
from mtkit.train.ensemble import Ensemble
from mtkit.train.schedules import SCHEDULES
from mtkit.train.trainer import Trainer

TASK_FLAGS = {"sst": "sst", "para": "para", "sts": "sts"}  # starter prefix -> task name


class CLIError(Exception):
    """A command-line mistake: printed as one line and exit status 2."""


def _parse_value(text: str):
    import yaml  # imported here: PyYAML is needed only when a YAML file is read
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (CS224N starter flags + --config YAML)",
                       description="Train one encoder with a head per task. Flags override --config; "
                                   "--set KEY=VALUE overrides any config key.",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--config", help="YAML file with TrainConfig keys (examples/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the run in output_dir from its newest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier run in output_dir and start over")
    p.add_argument("--output-dir", "--output_dir", dest="output_dir", help="where checkpoints, history and "
                                                                          "predictions go")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="folder of the CSV files, or 'demo'")
    p.add_argument("--tasks", help="comma-separated subset of the tasks to train, e.g. sst,sts")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override any config key (dotted for options: surgery_options.main_task=sst; "
                        "tasks.sst.loss=cross_entropy)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    # the CS224N starter's flags (multitask_classifier.py)
    for prefix in TASK_FLAGS:
        for split in ("train", "dev", "test"):
            p.add_argument(f"--{prefix}_{split}", help=f"{prefix} {split} file (default: in the data folder)")
    p.add_argument("--seed", type=int, help="random seed (default 11711)")
    p.add_argument("--epochs", type=int, help="epochs (default 10)")
    p.add_argument("--fine-tune-mode", "--fine_tune_mode", dest="fine_tune_mode",
                   choices=("full-model", "last-linear-layer", "two-stage"),
                   help="last-linear-layer: the encoder is frozen and only the heads train; full-model: the encoder "
                        "trains too; two-stage: heads first, then the full model (default full-model)")
    p.add_argument("--use_gpu", "--use-gpu", dest="use_gpu", action="store_true", help="train on CUDA")
    for prefix in TASK_FLAGS:
        for split in ("dev", "test"):
            p.add_argument(f"--{prefix}_{split}_out", help=f"where to write the {prefix} {split} predictions")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, help="batch size (default 8)")
    p.add_argument("--hidden_dropout_prob", type=float, help="dropout of the heads (default 0.3)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-5)")


def _apply_override(values: dict, key: str, value) -> None:
    parts = key.split(".")
    if parts[0] == "tasks" and len(parts) == 3:
        _task_entry(values, parts[1])[parts[2]] = value
        return
    target = values
    for part in parts[:-1]:
        current = target.get(part)
        if current is None:
            current = target[part] = {}
        if not isinstance(current, dict):
            raise CLIError(f"--set {key}: {part!r} is not a mapping of options, so it has no key {parts[-1]!r}.")
        target = current
    target[parts[-1]] = value


def _task_entries(values: dict) -> dict:
    """The config's tasks as an ordered mapping name -> options (whatever form the YAML used)."""
    tasks = values.get("tasks", ["sst", "para", "sts"])
    if isinstance(tasks, str):
        tasks = [tasks]
    if isinstance(tasks, dict):
        return {name: dict(options or {}) for name, options in tasks.items()}
    out = {}
    for entry in tasks:
        if isinstance(entry, str):
            out[entry] = {}
        elif isinstance(entry, dict) and "name" in entry:
            options = dict(entry)
            out[options.pop("name")] = options
        else:
            raise CLIError(f"tasks: each entry is a name or a mapping with a 'name', got {entry!r}.")
    return out


def _task_entry(values: dict, name: str) -> dict:
    entries = _task_entries(values)
    if name not in entries:
        raise CLIError(f"task {name!r} is not among the config's tasks {list(entries)}; add it to 'tasks' (or "
                       "--tasks) first.")
    values["tasks"] = entries
    return entries[name]


def _set_example() -> str:
    """An example of ``--set`` built from the registries' real names, so that it cannot drift from them."""
    schedule = "round-robin" if "round-robin" in SCHEDULES else SCHEDULES[0]
    surgery = "pcgrad" if "pcgrad" in SURGERIES else SURGERIES[-1]
    return (f"--set schedule={schedule} --set surgery={surgery} (schedules: {', '.join(SCHEDULES)}; "
            f"surgeries: {', '.join(SURGERIES)})")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of ``mtkit train``: the YAML file, then the starter flags, then ``--set`` overrides."""
    import yaml  # imported here: PyYAML is needed only when a YAML file is read
    a = vars(args)
    source = None
    values: dict = {}
    if "config" in a:
        path = Path(a["config"])
        if not path.is_file():
            raise CLIError(f"--config {path}: no such file.")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a training config is a mapping of keys to values.")
        source = str(path)
        TrainConfig.from_dict(copy.deepcopy(values), source=source)  # the file alone: its errors name the file
    if "tasks" in a:
        wanted = [t.strip() for t in a["tasks"].split(",") if t.strip()]
        entries = _task_entries(values)
        values["tasks"] = {name: entries.get(name, {}) for name in wanted}
    simple = {"seed": "seed", "epochs": "epochs", "fine_tune_mode": "fine_tune_mode", "batch_size": "batch_size",
              "hidden_dropout_prob": "dropout", "lr": "lr", "output_dir": "output_dir", "data_dir": "data_dir"}
    for flag, key in simple.items():
        if flag in a:
            values[key] = a[flag]
    if a.get("use_gpu"):
        values["device"] = "cuda"
    if a.get("quiet"):
        values["progress"] = False
    for prefix, task in TASK_FLAGS.items():
        for split in ("train", "dev", "test"):
            flag = f"{prefix}_{split}"
            if flag in a:
                _task_entry(values, task)[split] = str(Path(a[flag]).expanduser().resolve())
        for split in ("dev", "test"):
            flag = f"{prefix}_{split}_out"
            if flag in a:
                _task_entry(values, task)[f"{split}_out"] = a[flag]
    for item in a.get("overrides", []) or []:
        if "=" not in item:
            raise CLIError(f"--set {item!r}: write KEY=VALUE, e.g. {_set_example()}.")
        key, text = item.split("=", 1)
        _apply_override(values, key.strip(), _parse_value(text))
    where = "the command line" if source is None else f"the command line over {source}"
    return TrainConfig.from_dict(values, source=where)


def cmd_train(args) -> int:
    config = config_from_args(args)
    trainer = Trainer(config)
    result = trainer.fit(resume=getattr(args, "resume", False), overwrite=getattr(args, "overwrite", False))
    print(result)
    return 0


def _add_model_parsers(sub) -> None:
    for name, text in (("evaluate", "dev metrics of a trained model (several paths: an ensemble)"),
                       ("predict", "write predictions in the CS224N submission format")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("checkpoints", nargs="+", help="run folder(s), best/ or checkpoints/ folder(s), or "
                                                      "step-XXXXXXXX folder(s); several make an ensemble")
        p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="folder of the CSV files (default: the "
                                                                         "one the model was trained on)")
        p.add_argument("--tasks", help="comma-separated subset of the tasks")
        p.add_argument("--use_gpu", "--use-gpu", dest="use_gpu", action="store_true")
        p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=64)
        if name == "evaluate":
            p.add_argument("--json", action="store_true", help="print the metrics as JSON")
        else:
            p.add_argument("--split", choices=("dev", "test", "both"), default="both")
            p.add_argument("--out-dir", "--out_dir", dest="out_dir", default="predictions",
                           help="folder for <task>-<split>-output.csv (default ./predictions)")
            for prefix in TASK_FLAGS:
                for split in ("dev", "test"):
                    p.add_argument(f"--{prefix}_{split}_out")


def _ensemble_from(args):
    device = "cuda" if args.use_gpu else "cpu"
    return Ensemble.load(args.checkpoints, device=device)


def cmd_evaluate(args) -> int:
    ensemble = _ensemble_from(args)
    tasks = None if not args.tasks else [t.strip() for t in args.tasks.split(",")]
    result = ensemble.evaluate(data_dir=args.data_dir, tasks=tasks, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for task, metrics in result["metrics"].items():
            print(f"{task}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if result.get("overall") is not None:
            print(f"overall: {result['overall']:.4f}")
    return 0


def cmd_predict(args) -> int:
    ensemble = _ensemble_from(args)
    tasks = None if not args.tasks else [t.strip() for t in args.tasks.split(",")]
    splits = ("dev", "test") if args.split == "both" else (args.split,)
    paths = {}
    for prefix in TASK_FLAGS:
        for split in ("dev", "test"):
            value = getattr(args, f"{prefix}_{split}_out", None)
            if value:
                paths[(TASK_FLAGS[prefix], split)] = value
    written = ensemble.write_predictions(args.out_dir, splits=splits, data_dir=args.data_dir, tasks=tasks,
                                         paths=paths, batch_size=args.batch_size)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a trained model as a transformers or sentence-transformers folder",
                       description="Export a trained model (a run folder: its best checkpoint) as a folder that "
                                   "transformers or sentence-transformers loads, with the task heads beside it "
                                   "(heads.safetensors, heads.json) and a model card (README.md).")
    p.add_argument("checkpoint", help="run folder, best/ or checkpoints/ folder, or one step-XXXXXXXX folder")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--format", choices=FORMATS, default="transformers", help="default: transformers")
    p.add_argument("--task", help="sentence-transformers: the task whose sentence vectors to export (default: the "
                                  "similarity task, else a bi-encoder pair task, else the first)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="sentence-transformers: add a Normalize module (default: when the task compares cosines)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")


def cmd_export(args) -> int:
    result = export(args.checkpoint, args.out, format=args.format, task=args.task, normalize=args.normalize,
                    overwrite=args.overwrite)
    print(result)
    return 0


def cmd_demo_data(argv: list[str]) -> int:
    return int(demo.cli(argv) or 0)


def cmd_data(argv: list[str]) -> int:
    code = fetch.cli(argv)
    return int(code or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtkit", description="mtkit: multitask fine-tuning of BERT, for learning.")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,predict,export,data,demo-data}")
    _add_train_parser(sub)
    _add_model_parsers(sub)
    _add_export_parser(sub)
    sub.add_parser("demo-data", help="write the synthetic demo set (CS224N file formats): mtkit demo-data --help",
                   add_help=False)
    sub.add_parser("data", help="data commands: mtkit data fetch --help, mtkit data split --help", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mtkit`` and ``python -m mtkit``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "data":  # delegated as a whole: mtkit data fetch ... / mtkit data split ...
        rest = argv[1:]
        if rest and rest[0] == "split":
            return int(data_split.cli(rest[1:]) or 0)
        if rest and rest[0] == "fetch":
            rest = rest[1:]
        elif not rest or rest[0] in ("-h", "--help"):
            print("usage: mtkit data fetch [options]   download the public CS224N files (mtkit data fetch --help)\n"
                  "       mtkit data split SOURCE --into NAME=SIZE ... --seed N --dest DIR   carve a file "
                  "(mtkit data split --help)")
            return 0
        else:
            print(f"mtkit data: unknown command {rest[0]!r}; the commands are 'fetch' and 'split'.", file=sys.stderr)
            return 2
        try:
            return cmd_data(rest)
        except CLIError as err:
            print(f"mtkit: error: {err}", file=sys.stderr)
            return 2
    if argv and argv[0] == "demo-data":  # delegated as a whole to mtkit.data.demo
        return cmd_demo_data(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export}
    try:
        return handlers[args.command](args)
    except (CLIError, ConfigError) as err:
        print(f"mtkit: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError, FloatingPointError) as err:
        print(f"mtkit: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
