"""`python -m vechat_rls.cli`: the same as the `vechat-rls` console script."""

import sys

from vechat_rls.cli import main

sys.exit(main())
