"""``python -m langgraph_fanout.cli``: the same as the ``langgraph-fanout`` command."""

import sys

from langgraph_fanout.cli.command import main

sys.exit(main())
