"""Recording results in the docs: the machine in one line, and replacing a marked section of a markdown file."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

__all__ = ['machine_line', 'replace_marked_section']


def machine_line() -> str:
    """The machine in one line (system, Python, CPU cores, torch and its threads, GPU), for recorded results."""
    import torch  # imported here: torch is heavy; this module works without it until here
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu = f"{os.cpu_count()} CPU cores, torch {torch.__version__} using {torch.get_num_threads()} threads"
    return (f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, {cpu}"
            + (f", GPU {gpu}" if gpu else ", no GPU"))


def replace_marked_section(doc: str | Path, begin: str, end: str, block: str, title: str) -> Path:
    """Put ``begin + block + end`` into ``doc`` in place of the text between those markers (appended when they are
    not there yet; a new file starts with ``title``), written atomically. Text outside the markers is kept."""
    doc = Path(doc)
    text = doc.read_text(encoding="utf-8") if doc.is_file() else f"{title}\n"
    block = f"{begin}\n{block}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(doc)
    return doc
