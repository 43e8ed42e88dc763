"""``python -m mtkit.exercises solutions exercises``: regenerate exercises/ from solutions/."""
from mtkit.exercises.generate import main

raise SystemExit(main())
