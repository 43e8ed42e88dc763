"""Checkpoints that never lose work: safetensors + JSON, written atomically, loaded without unpickling.

A checkpoint is a folder::

    step-00000120/
        mtkit_model.safetensors  the weights (encoder.* and heads.*, mtkit's names)
        state.safetensors        every other tensor: optimizer moments, RNG states, surgery buffers' generator ...
        state.json               the rest of the training state (numbers, strings, lists), with references into
                                 state.safetensors where a tensor was
        mtkit_run.json           the TrainConfig as plain values
        vocab.txt ...            the tokenizer's files
        manifest.json            format version, step, the mtkit (version, commit) that wrote it, and the size
                                 and SHA-256 of each file above: written last

No file has a name Hugging Face gives a model folder's files (``config.json``, ``model.safetensors``): with
them, ``transformers.BertModel.from_pretrained`` took a checkpoint for a BERT folder, read the run config as
a BertConfig (a default bert-base) and initialised every weight at random, and transformers 5 builds a default
config even when ``config.json`` is missing but ``model.safetensors`` is there. With neither it raises
``OSError`` at once (tests/test_export.py); ``mtkit export`` writes the folders transformers and
sentence-transformers load. Checkpoints written before (``model.safetensors`` and ``config.json``, named so in
their manifest) still load.

Writing is crash-safe. Everything goes into a temporary folder beside the final one (``.tmp-...``); each file
is flushed and ``fsync``-ed, then the folder is renamed into place with ``os.replace`` (atomic on POSIX), and
only then does the pointer file ``latest.json`` move to it (a temporary file, ``fsync``, ``os.replace``).
Older checkpoints are deleted after that, so a kill at any moment leaves the previous checkpoint and a
pointer to it intact; a leftover ``.tmp-...`` folder is ignored and cleaned up by the next save.

Loading falls back, never silently: :meth:`CheckpointStore.load_latest` tries the folder ``latest.json`` names,
then the others newest first, and returns the first that verifies (sizes, SHA-256) and parses, with the list of
those it rejected and why (``Checkpoint.rejected``); ``Trainer.fit(resume=True)`` prints each and the one used.

Loading never unpickles: tensors come from safetensors and everything else from JSON, so a checkpoint from
someone else cannot run code on your machine. Python, NumPy and torch objects in the state (tuples, dicts with
integer keys, NumPy arrays, tensors) are encoded by :func:`flatten_state` and restored exactly by
:func:`unflatten_state`.

Taught in notebooks/07_multitask_training.ipynb.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtkit.train.state_tensors import flatten_state, unflatten_state
from mtkit.util.provenance import kit_provenance

FORMAT = "mtkit.checkpoint"  # the format's name in every manifest (not a module path)
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
POINTER = "latest.json"
MODEL_FILE = "mtkit_model.safetensors"  # never "model.safetensors", which transformers reads as BERT weights
RUN_CONFIG = "mtkit_run.json"  # the TrainConfig; never "config.json", which transformers reads as a BertConfig
LEGACY_NAMES = {MODEL_FILE: "model.safetensors", RUN_CONFIG: "config.json"}  # in checkpoints before issue 24
FILES = (MODEL_FILE, "state.safetensors", "state.json", RUN_CONFIG)
_NAME_RE = re.compile(r"^step-(\d+)$")

# Fault injection for the crash-consistency tests: called with each file name right after that file is
# written into the temporary folder (a test sets it to os._exit or a sleep in a subprocess). None in normal use.
_WRITE_HOOK: Callable[[str], None] | None = None


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or damaged; the message names the folder and what to do.

    ``reason``: what is wrong, in a few words naming the file (what a resume prints when it falls back)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass
class Rejection:
    """A checkpoint (or the pointer file) that a load skipped, and why."""
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name} rejected: {self.reason}"


# ------------------------------------------------------------------------------------------------ file helpers
def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms (Windows) cannot open folders; rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, value) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def _after_write(name: str) -> None:
    if _WRITE_HOOK is not None:
        _WRITE_HOOK(name)


def atomic_write_json(path: str | Path, value) -> None:
    """Write JSON to ``path`` atomically: a temporary file in the same folder, fsync, then os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    _write_json(tmp, value)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    from safetensors.torch import save_file  # imported here: safetensors is read only when a file is
    clean = {}
    for key, value in tensors.items():
        value = value.detach().to("cpu")
        clean[key] = value.contiguous()
    try:
        save_file(clean, str(path), metadata=metadata)
    except RuntimeError:  # tensors sharing memory (tied weights): safetensors wants separate copies
        save_file({k: v.clone() for k, v in clean.items()}, str(path), metadata=metadata)
    _fsync_file(path)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # imported here: safetensors is read only when a file is
    return load_file(str(path), device="cpu")


# ------------------------------------------------------------------------------------------------ the checkpoint
@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` (name -> tensor), ``state`` (the training state), ``config`` (plain dict)."""
    path: Path
    step: int
    model: dict[str, torch.Tensor]
    state: dict
    config: dict
    manifest: dict  # with "mtkit": {"version", "commit", "dirty"} for checkpoints written since issue 24
    rejected: list = field(default_factory=list)  # Rejection of each newer checkpoint skipped to reach this one


def write_checkpoint(folder: str | Path, model_state: dict[str, torch.Tensor], state: dict | None = None,
                     config: dict | None = None, step: int = 0, extra_files: dict[str, str | Path] | None = None
                     ) -> Path:
    """Write one checkpoint folder atomically (temporary folder, fsync, ``os.replace``). Returns its path.

    ``model_state``: name -> tensor (safetensors). ``state``: anything :func:`flatten_state` accepts.
    ``config``: plain JSON. ``extra_files``: name -> existing file to copy in (e.g. the tokenizer's vocab.txt).
    An existing folder of the same name is replaced only once the new one is complete.
    """
    folder = Path(folder)
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _save_tensors(tmp / MODEL_FILE, dict(model_state), metadata={"format": "pt"})
        _after_write(MODEL_FILE)
        skeleton, tensors = flatten_state(state or {})
        _save_tensors(tmp / "state.safetensors", tensors)
        _after_write("state.safetensors")
        _write_json(tmp / "state.json", skeleton)
        _after_write("state.json")
        _write_json(tmp / RUN_CONFIG, config or {})
        _after_write(RUN_CONFIG)
        names = list(FILES)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, tmp / name)
            _fsync_file(tmp / name)
            names.append(name)
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "step": int(step), "mtkit": kit_provenance(),
                    "files": {n: {"bytes": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in names}}
        _write_json(tmp / MANIFEST, manifest)
        _after_write(MANIFEST)
        _fsync_dir(tmp)
        if folder.exists():
            old = parent / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def verify(folder: str | Path, check_hash: bool = True) -> dict:
    """The manifest of a complete checkpoint folder; CheckpointError naming what is wrong otherwise."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise CheckpointError(f"{folder} does not exist.", f"{folder.name} does not exist")
    if not manifest_path.is_file():
        raise CheckpointError(f"{folder} is not a complete mtkit checkpoint (no {MANIFEST}); it was probably cut "
                              "short by a crash. Use an earlier checkpoint (see latest.json beside it).",
                              f"no {MANIFEST} (an incomplete checkpoint)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        entries = {name: (int(info["bytes"]), str(info["sha256"])) for name, info in files.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{manifest_path} cannot be read ({type(err).__name__}: {err}).",
                              f"{MANIFEST} cannot be read ({type(err).__name__}: {err})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{folder} is not an mtkit checkpoint (format {manifest.get('format')!r}).",
                              f"not an mtkit checkpoint (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{folder} was written by a newer mtkit (format {manifest['version']}); upgrade mtkit.",
                              f"written by a newer mtkit (format {manifest['version']})")
    for name, (size, sha) in entries.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: the checkpoint is damaged; use an earlier one.",
                                  f"{name} is missing")
        found = path.stat().st_size
        if found != size:
            reason = (f"{name} has {found:,} bytes where {MANIFEST} says {size:,} "
                      f"({'truncated' if found < size else 'grown'}: damaged)")
            raise CheckpointError(f"{path}: {reason}; use an earlier checkpoint.", reason)
        if check_hash and _sha256(path) != sha:
            reason = f"{name} does not match its SHA-256 in {MANIFEST} (its bytes changed: damaged)"
            raise CheckpointError(f"{path} does not match its SHA-256 in {MANIFEST}: the checkpoint is damaged.",
                                  reason)
    return manifest


def file_name(manifest: dict, name: str) -> str:
    """The name ``name`` (MODEL_FILE or RUN_CONFIG) has in the checkpoint of ``manifest``: itself, or its old
    name (LEGACY_NAMES) in a checkpoint written before issue 24, whose manifest lists that one instead."""
    files = manifest.get("files", {})
    legacy = LEGACY_NAMES.get(name)
    return legacy if name not in files and legacy in files else name


def run_config_name(manifest: dict) -> str:
    """The file of a checkpoint that holds its TrainConfig: ``mtkit_run.json`` (``config.json`` before)."""
    return file_name(manifest, RUN_CONFIG)


def read_checkpoint(folder: str | Path, check_hash: bool = True, load_state: bool = True) -> Checkpoint:
    """Load a checkpoint folder (verified against its manifest) without unpickling anything."""
    folder = Path(folder)
    manifest = verify(folder, check_hash=check_hash)
    reading = file_name(manifest, MODEL_FILE)
    try:  # a file whose size and hash agree with the manifest may still fail to parse (a manifest edited by hand)
        model = _load_tensors(folder / reading)
        state: dict = {}
        if load_state:
            reading = "state.json"
            skeleton = json.loads((folder / reading).read_text(encoding="utf-8"))
            reading = "state.safetensors"
            state = unflatten_state(skeleton, _load_tensors(folder / reading))
        reading = run_config_name(manifest)
        config = json.loads((folder / reading).read_text(encoding="utf-8"))
    except CheckpointError:
        raise
    except Exception as err:  # safetensors' own error type, JSONDecodeError, a missing tensor key ...
        reason = f"{reading} cannot be read ({type(err).__name__}: {str(err)[:200]})"
        raise CheckpointError(f"{folder / reading}: {reason}; the checkpoint is damaged, use an earlier one.",
                              reason) from None
    return Checkpoint(path=folder, step=int(manifest["step"]), model=model, state=state, config=config,
                      manifest=manifest)


# ------------------------------------------------------------------------------------------------ a store of them
class CheckpointStore:
    """Numbered checkpoints ``step-XXXXXXXX/`` in one folder, a ``latest.json`` pointer, and pruning.

    ``keep``: how many checkpoints to keep besides the newest (0 keeps only the newest). The pointer moves only
    after the new checkpoint is complete, and older checkpoints are removed only after the pointer moved.
    """

    def __init__(self, root: str | Path, keep: int = 1):
        self.root = Path(root)
        self.keep = int(keep)
        self.rejected: list[Rejection] = []  # what the last latest() / load_latest() skipped, and why

    def name_for(self, step: int) -> str:
        return f"step-{int(step):08d}"

    def save(self, step: int, model_state: dict[str, torch.Tensor], state: dict | None = None,
             config: dict | None = None, extra_files: dict | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_leftovers()
        folder = write_checkpoint(self.root / self.name_for(step), model_state, state, config, step, extra_files)
        atomic_write_json(self.root / POINTER, {"checkpoint": folder.name, "step": int(step)})
        _after_write(POINTER)
        self._prune(keep_name=folder.name)
        return folder

    def _clean_leftovers(self) -> None:
        for child in self.root.iterdir():
            if child.name.startswith((".tmp-", ".old-")) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)

    def complete(self) -> list[Path]:
        """Complete checkpoint folders (those with a manifest), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _NAME_RE.match(child.name)
            if match and child.is_dir() and (child / MANIFEST).is_file():
                found.append((int(match.group(1)), child))
        return [p for _, p in sorted(found)]

    def _prune(self, keep_name: str) -> None:
        folders = [p for p in self.complete() if p.name != keep_name]
        doomed = folders[:max(0, len(folders) - self.keep)]
        for folder in doomed:
            shutil.rmtree(folder, ignore_errors=True)

    def candidates(self) -> tuple[list[Path], list[Rejection]]:
        """The folders a load tries, in order: the one ``latest.json`` names, then every other ``step-*`` folder,
        newest first; and the rejection of the pointer itself when it is unreadable or names a missing folder."""
        if not self.root.is_dir():
            return [], []
        rejected: list[Rejection] = []
        order: list[Path] = []
        pointer = self.root / POINTER
        if pointer.is_file():
            try:
                name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
                folder = self.root / str(name)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
                rejected.append(Rejection(pointer, f"{POINTER} cannot be read ({type(err).__name__}: {err})"))
            else:
                if folder.is_dir():
                    order.append(folder)
                else:
                    rejected.append(Rejection(pointer, f"{POINTER} points to {name}, which does not exist"))
        numbered = sorted((int(m.group(1)), child) for child in self.root.iterdir()
                          if (m := _NAME_RE.match(child.name)) and child.is_dir())
        order += [folder for _, folder in reversed(numbered) if folder not in order]
        return order, rejected

    def latest(self, check_hash: bool = False) -> Path | None:
        """The folder ``latest.json`` points to; if that is missing or damaged, the newest complete one.

        What was skipped on the way, and why, is in ``self.rejected`` (a list of :class:`Rejection`)."""
        order, self.rejected = self.candidates()
        for folder in order:
            try:
                verify(folder, check_hash=check_hash)
                return folder
            except CheckpointError as err:
                self.rejected.append(Rejection(folder, err.reason))
        return None

    def load_latest(self, check_hash: bool = True) -> Checkpoint | None:
        """The newest checkpoint that verifies (sizes and, by default, SHA-256) and parses; None when none does.

        Falling back is never silent: the returned checkpoint's ``rejected`` (and ``self.rejected``) lists each
        newer checkpoint skipped, and the pointer when it was wrong, with the reason: a size, a hash, a missing
        file or a parse failure."""
        order, self.rejected = self.candidates()
        for folder in order:
            try:
                checkpoint = read_checkpoint(folder, check_hash=check_hash)
            except CheckpointError as err:
                self.rejected.append(Rejection(folder, err.reason))
                continue
            checkpoint.rejected = list(self.rejected)
            return checkpoint
        return None


def resolve(path: str | Path, prefer: str = "best") -> Path:
    """The checkpoint folder meant by ``path``: a checkpoint folder itself, a store (``checkpoints/`` or
    ``best/``) or a run's output folder (``prefer`` "best" or "checkpoints" chooses which store)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    candidates = [path]
    if (path / "best").is_dir() or (path / "checkpoints").is_dir():
        order = ["best", "checkpoints"] if prefer == "best" else ["checkpoints", "best"]
        candidates = [path / name for name in order]
    for candidate in candidates:
        folder = CheckpointStore(candidate).latest()
        if folder is not None:
            return folder
    raise CheckpointError(f"No complete mtkit checkpoint in {path}. Pass a run's output folder, its best/ or "
                          "checkpoints/ folder, or one step-XXXXXXXX/ folder.")