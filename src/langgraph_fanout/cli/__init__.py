"""The ``langgraph-fanout`` command line and the deep-dive demo.

Private but for ``main``, the console script's entry point (``langgraph_fanout.cli:main``).
"""

from langgraph_fanout.cli.command import main as main
