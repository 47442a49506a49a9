import sys

from action.cli import main

if __name__ == "__main__":  # spawned worker processes import this module again
    sys.exit(main(prog="python -m action"))
