"""`python -m talkinghead_jax <command>` is the same as `talkinghead <command>`."""

import sys

from talkinghead_jax.cli import main

sys.exit(main())
