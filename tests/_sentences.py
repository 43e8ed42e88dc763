"""Sentences for the parity tests: 64 real ones from the CS224N files when present, generated ones otherwise."""
from __future__ import annotations

import itertools
import random
from pathlib import Path

import pandas as pd
from conftest import real_data_dir

_SUBJECTS = ["the film", "this movie", "a quiet story", "the director's début", "our café scene",
             "the cast", "every line of dialogue", "a two-hour epic"]
_VERBS = ["is", "feels", "turns out to be", "never becomes", "is not quite", "remains"]
_OBJECTS = ["a gorgeous, moving piece of work", "dull and far too long", "funny -- really funny!",
            "a mess (though an interesting one)", "the best thing I've seen in 2019", "naïve but charming",
            "an overlong exercise in style over substance", "what you'd expect: nothing more"]


def generated_sentences(n: int = 64, seed: int = 0) -> list[str]:
    combos = list(itertools.product(_SUBJECTS, _VERBS, _OBJECTS))
    random.Random(seed).shuffle(combos)
    return [f"{s.capitalize()} {v} {o}." for s, v, o in combos[:n]]


def parity_sentences(n: int = 64) -> tuple[list[str], str]:
    """``n`` sentences and where they came from: SST dev, STS dev and Quora dev in equal parts when present."""
    data = real_data_dir()
    if data is None:
        return generated_sentences(n), "generated (CS224N data not found)"
    picks: list[str] = []
    for name, column in (("ids-sst-dev.csv", "sentence"), ("sts-dev.csv", "sentence1"), ("quora-dev.csv", "sentence1")):
        frame = pd.read_csv(Path(data) / name, sep="\t")
        picks += [s for s in frame[column].tolist() if isinstance(s, str)][: n // 3 + 1]
    return picks[:n], f"real ({data})"
