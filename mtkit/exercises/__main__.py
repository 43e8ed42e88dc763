"""``python -m mtkit.exercises solutions exercises``: regenerate exercises/ from solutions/."""
from mtkit.exercises.generator import main

raise SystemExit(main())
