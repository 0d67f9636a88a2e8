"""`python -m o1.cli ...`, the same as `o1 ...` (for a subprocess that must use this Python)."""

import sys

from o1.cli import main

if __name__ == "__main__":  # importing the module (as the wheel test does) runs nothing
    sys.exit(main())
