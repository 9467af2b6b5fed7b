"""``python -m desiru``: the same command line as the ``desiru`` script."""

from desiru.cli import main

if __name__ == "__main__":
    main()
