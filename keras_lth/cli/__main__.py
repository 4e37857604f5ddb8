"""`python -m keras_lth.cli`: the `keras-lth` command."""

import sys

from keras_lth.cli import main

if __name__ == "__main__":
    sys.exit(main())
