"""``python -m medrobot_llm.cli``: the ``medrobot`` command without its console script."""

import sys

from medrobot_llm.cli import main

sys.exit(main())
