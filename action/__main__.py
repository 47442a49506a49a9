import sys

from action.cli import main

sys.exit(main())
