"""``python -m scneural``: the same command line as the ``scneural`` script."""

from scneural.cli import main

if __name__ == "__main__":
    main()
