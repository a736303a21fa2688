"""Entry point for `python -m plasmacount` and the `plasmacount` console script."""

from plasmacount.cli import main

if __name__ == "__main__":
    main()
