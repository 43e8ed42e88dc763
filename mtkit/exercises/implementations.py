"""Your implementations train the model: a learner's exercises swapped into the trainer, after a parity check.

The exercises (``exercises/*.py``) are the pieces of the CS224N project a learner writes: attention, a
transformer layer's forward, one AdamW step, mean pooling, PCGrad. With the training option
``implementations`` the trainer runs *those* functions instead of mtkit's own::

    TrainConfig(..., implementations="exercises")          # every piece this run uses, from exercises/
    TrainConfig(..., implementations="solutions")          # the worked answers (they match mtkit's)
    TrainConfig(..., implementations="path/to/folder")     # any folder holding the exercise files
    TrainConfig(..., implementations={"attention": "exercises", "adamw": "solutions"})   # piece by piece

Before anything trains, each swapped piece goes through its check from :mod:`mtkit.exercises.checks` (the same parity
check against mtkit's modules the notebooks run). If one does not pass, or is not written yet, the trainer
refuses with :class:`ImplementationError`, whose message is the check's (what was expected, what came back, a
hint). :func:`choose` is the forgiving version for notebooks: it takes a learner's piece where it passes and
the worked answer where it does not, and says which is which.

Where each piece plugs in (nothing changes on the default path, ``implementations: null``):

=================  ===================  ====================================================================
exercise file      function             replaces
=================  ===================  ====================================================================
attention.py       ``attention``        minBERT's attention in every layer (``BertModel.set_implementations``)
transformer_layer  ``layer_forward``    every minBERT layer's forward, called with your attention
adamw.py           ``adamw_step``       the update of ``mtkit.optim.AdamW``, once per parameter (``step_fn``)
mean_pooling.py    ``mean_pool``        mean pooling of every task that pools with "mean"
pcgrad.py          ``pcgrad``           PCGrad's combination of the task-gradient rows (``GradientSurgery``)
=================  ===================  ====================================================================

A piece the run does not use (PCGrad without ``surgery: pcgrad``, AdamW under ``optimizer: torch-adamw``,
mean pooling when every task pools with [CLS]) is neither checked nor swapped, and the report says why. The
exercises compute the eval-mode forward (no dropout), so an encoder running a learner's attention or layer
trains without encoder dropout; the heads keep theirs.

Adding a piece (the embedding layer, once it is an exercise) is one entry in :data:`COMPONENTS` with the
name of the :class:`Hooks` field it fills (``embeddings``: ``BertModel.set_implementations`` already takes
``embeddings_forward(embeddings, input_ids, token_type_ids)``).

Taught in notebooks/05_sentiment_finetuning.ipynb (the last section: your minBERT and AdamW fine-tune SST).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from mtkit.exercises.checks import EXERCISES, Workbook
from mtkit.exercises.sources import resolve_source

__all__ = ["COMPONENTS", "Component", "Hooks", "ImplementationError", "Implementations", "parse", "used_components",
           "load", "choose", "install"]


class ImplementationError(ValueError):
    """A learner's implementation that cannot train the model (not written yet, or it fails its check); the
    message is the check's."""


@dataclass(frozen=True)
class Component:
    """One swappable piece: its exercise file, the function the trainer calls, what it replaces, and when the
    run uses it."""

    name: str  # the exercise file's stem, as in mtkit.exercises.checks.EXERCISES
    function: str  # the function the trainer calls
    hook: str  # the Hooks field it fills
    replaces: str  # what it replaces, for the report
    unused: Callable[[object], str | None]  # config -> why this run does not use it (None: it does)


def _mean_pooling_unused(config) -> str | None:
    modes = {t.pooling or config.pooling for t in config.tasks}
    return None if "mean" in modes else f"no task pools with 'mean' (pooling: {', '.join(sorted(modes))})"


COMPONENTS: dict[str, Component] = {c.name: c for c in [
    Component("attention", "attention", "attention", "minBERT's attention (mtkit.model.bert.SelfAttention)",
              lambda config: None),
    Component("transformer_layer", "layer_forward", "layer", "minBERT's layer forward (mtkit.model.bert.BertLayer)",
              lambda config: None),
    Component("adamw", "adamw_step", "adamw_step", "the update of mtkit.optim.AdamW",
              lambda config: None if config.optimizer == "adamw" else f"optimizer is {config.optimizer!r}"),
    Component("mean_pooling", "mean_pool", "mean_pool", "mean pooling (mtkit.model.pooling.mean_pool)",
              _mean_pooling_unused),
    Component("pcgrad", "pcgrad", "pcgrad", "PCGrad's combination of the task gradients (mtkit.surgery)",
              lambda config: None if config.surgery in ("pcgrad", "main_aux") else f"surgery is {config.surgery!r}"),
]}


@dataclass
class Hooks:
    """The functions to install; None keeps mtkit's own."""

    attention: Callable | None = None
    layer: Callable | None = None
    embeddings: Callable | None = None
    mean_pool: Callable | None = None
    adamw_step: Callable | None = None
    pcgrad: Callable | None = None


@dataclass
class Piece:
    """One row of the report: a component, whose code, and what its check said."""

    component: str
    source: str | None  # None: not used by this run
    file: str | None = None
    status: str = "not used"  # "passed", "failed", "not written yet", "not used"
    message: str = ""
    fallback_from: str | None = None  # choose(): the learner's file this piece replaces


@dataclass
class Implementations:
    """The checked pieces of one run (``pieces``, in :data:`COMPONENTS` order) and the hooks to install."""

    pieces: list[Piece] = field(default_factory=list)
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def used(self) -> list[Piece]:
        return [p for p in self.pieces if p.source is not None]

    @property
    def sources(self) -> dict[str, str]:
        """``{component: source}`` of the pieces used: a value for the ``implementations`` option."""
        return {p.component: p.source for p in self.used}

    @property
    def ok(self) -> bool:
        return all(p.status == "passed" for p in self.used)

    def whose(self, learner: str = "exercises") -> str:
        """"yours" when every piece used comes from ``learner``, "the worked answers" when none does (or the
        learner's source is ``solutions``), else "partly yours"."""
        if learner == "solutions":
            return "the worked answers"
        mine = [p for p in self.used if p.source == learner]
        if self.used and len(mine) == len(self.used):
            return "yours"
        return "partly yours" if mine else "the worked answers"

    def describe(self, learner: str = "exercises") -> str:
        """One sentence for a notebook: whose code trained the model."""
        used = self.used
        mine = [p for p in used if p.source == learner]
        names = lambda pieces: ", ".join(COMPONENTS[p.component].function for p in pieces)  # noqa: E731
        if used and len(mine) == len(used):
            if learner == "solutions":
                return (f"This model was fine-tuned by the worked answers in solutions/: {names(used)}. (The kit's "
                        "tests and the outputs saved with this notebook use them; run the notebook with "
                        "implementations = None to fine-tune with yours, in exercises/.)")
            return f"This model was fine-tuned by your code in {learner}/: {names(used)}."
        others = [p for p in used if p.source != learner]
        if mine:
            why = ", ".join(f"{COMPONENTS[p.component].function} ({p.message})" for p in others)
            return (f"This model was fine-tuned partly by your code: {names(mine)} from {learner}/; the worked "
                    f"answers did the rest: {why}.")
        why = ", ".join(f"{COMPONENTS[p.component].function} ({p.message or 'not checked'})" for p in others)
        return (f"The worked answers in solutions/ fine-tuned this model, because your pieces in {learner}/ are not "
                f"ready: {why}. Write them (notebooks 03, 04 and 06) and run this section again to fine-tune with "
                f"your own code.")

    def record(self) -> dict:
        """Per piece: the file that trained the model, and the learner's file it replaced (results files)."""
        out = {}
        for p in self.pieces:
            if p.source is None:
                out[p.component] = {"file": None, "outcome": p.message}
                continue
            out[p.component] = {"source": p.source, "file": p.file, "outcome": p.status}
            if p.fallback_from:
                out[p.component] |= {"instead_of": p.fallback_from, "why": p.message}
        return out

    def __str__(self) -> str:
        width = max((len(p.component) for p in self.pieces), default=0)
        lines = []
        for p in self.pieces:
            if p.source is None:
                lines.append(f"  {p.component:<{width}}  mtkit's own: {p.message}")
                continue
            line = f"  {p.component:<{width}}  {p.file}: {p.status}"
            if p.fallback_from:
                line += f" (instead of {p.fallback_from}, {p.message})"
            lines.append(line)
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ building
def parse(value) -> dict[str, str]:
    """The ``implementations`` option as ``{component: source}``: None -> {}; a string -> that source for every
    component; a mapping -> as given. Unknown components raise ``ValueError`` naming the known ones."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("expected 'exercises', 'solutions', a folder, or a mapping of pieces to sources; "
                             "got an empty string")
        return {name: value for name in COMPONENTS}
    if isinstance(value, dict):
        unknown = [k for k in value if k not in COMPONENTS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a piece that can be swapped; the pieces are "
                             f"{list(COMPONENTS)}")
        bad = [k for k, v in value.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise ValueError(f"{bad[0]}: expected 'exercises', 'solutions' or a folder, got {value[bad[0]]!r}")
        return dict(value)
    raise ValueError(f"expected 'exercises', 'solutions', a folder, or a mapping of pieces to sources; got "
                     f"{value!r}")


def used_components(config) -> dict[str, str | None]:
    """``{component: None if the run uses it, else why not}`` for a TrainConfig."""
    return {name: c.unused(config) for name, c in COMPONENTS.items()}


def _check(component: str, source: str, root=None):
    book = Workbook(source, root=root, verbose=False)
    outcomes, fn = [], None
    for function, _ in _checks_of(component):
        outcome, checked = book.run(component, function)
        outcomes.append(outcome)
        if function == COMPONENTS[component].function:
            fn = checked
    return outcomes, fn


def _checks_of(component: str):
    return EXERCISES[component]


def load(config, root=None, strict: bool = True) -> Implementations:
    """Check and collect the pieces ``config.implementations`` asks for (only those the run uses).

    With ``strict`` (the trainer), any piece that is not written yet or fails its check raises
    :class:`ImplementationError` with the check's message, before anything trains; otherwise its status is
    recorded and no hook is set for it.
    """
    wanted = parse(getattr(config, "implementations", None))
    result = Implementations()
    failures = []
    for name, why_not in used_components(config).items():
        component = COMPONENTS[name]
        if name not in wanted:
            continue
        if why_not is not None:
            result.pieces.append(Piece(name, None, message=f"not used ({why_not})"))
            continue
        source = wanted[name]
        outcomes, fn = _check(name, source, root)
        failing = next((o for o in outcomes if not o.passed), None)
        piece = Piece(name, source, file=outcomes[0].file, status="passed" if failing is None else failing.status,
                      message="" if failing is None else failing.message)
        result.pieces.append(piece)
        if failing is not None:
            failures.append((component, failing))
            continue
        setattr(result.hooks, component.hook, fn)
    if strict and failures:
        parts = [f"{o.file} ({component.replaces}): {o.status}.\n{o.message}" for component, o in failures]
        checks = ", ".join(f"mtkit.exercises.checks.{o.check}" for _, o in failures)
        raise ImplementationError(
            "implementations: refusing to train, before the first step: " + "\n\n".join(parts) +
            f"\n\nFix {'it' if len(failures) == 1 else 'them'} and run the check ({checks}) until it passes, or "
            "train with mtkit's own (implementations: null) or the worked answers (implementations: solutions).")
    return result


def choose(source: str | None, config, fallback: str = "solutions", root=None, verbose: bool = True) -> Implementations:
    """For a notebook: every piece ``config`` uses, from ``source`` where it passes its check, else from
    ``fallback`` (the worked answers), saying which. ``source=None`` follows
    :func:`mtkit.exercises.resolve_source`. Pass ``result.sources`` as the ``implementations`` option."""
    source = resolve_source(source)
    mine = load(_with(config, {name: source for name in COMPONENTS}), root=root, strict=False)
    result = Implementations()
    for piece in mine.pieces:
        if piece.source is None or piece.status == "passed":
            result.pieces.append(piece)
            if piece.source is not None:
                setattr(result.hooks, COMPONENTS[piece.component].hook,
                        getattr(mine.hooks, COMPONENTS[piece.component].hook))
            continue
        theirs = load(_with(config, {piece.component: fallback}), root=root, strict=True)
        replacement = next(p for p in theirs.pieces if p.component == piece.component)
        replacement.fallback_from = piece.file
        replacement.message = piece.status if piece.status != "failed" else "it fails its check"
        result.pieces.append(replacement)
        hook = COMPONENTS[piece.component].hook
        setattr(result.hooks, hook, getattr(theirs.hooks, hook))
    if verbose:
        print(result)
    return result


def _with(config, implementations: dict):
    """A shallow stand-in of ``config`` with another ``implementations`` (no revalidation needed here)."""
    clone = copy.copy(config)
    object.__setattr__(clone, "implementations", implementations)
    return clone


# ------------------------------------------------------------------------------------------------ installing
def install(model, hooks: Hooks) -> None:
    """Put the encoder and pooling hooks into a MultitaskModel (AdamW and PCGrad hooks are passed to the
    optimizer and the surgery when the trainer builds them)."""
    encoder = model.encoder
    if hooks.attention is not None or hooks.layer is not None or hooks.embeddings is not None:
        if not hasattr(encoder, "set_implementations"):
            raise ImplementationError(f"implementations: the encoder ({type(encoder).__name__}) is not minBERT "
                                      "(mtkit.model.bert.BertModel), so your attention and layer cannot run in it.")
        encoder.set_implementations(attention=hooks.attention, layer=hooks.layer, embeddings=hooks.embeddings)
    if hooks.mean_pool is not None:
        model.set_pooling_function("mean", hooks.mean_pool)
