import sys

from medseg.cli import main

if __name__ == "__main__":  # spawned worker processes import this module again
    sys.exit(main(prog="python -m medseg"))
