"""`python -m gpt2compress.cli`."""

import sys

from . import main

sys.exit(main())
