"""The teaching box: what the notebooks show and how they run (plots, widgets, the attention viewer, the
notebook runner and the committed outputs' fingerprint).

May import: everything below it; only ``mtkit.cli`` sits above. The modules are not re-exported here, so that
``python -m mtkit.teach.notebook_runner`` runs its module cleanly.
"""
