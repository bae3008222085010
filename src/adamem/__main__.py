"""``python -m adamem``: the same as the ``adamem`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
