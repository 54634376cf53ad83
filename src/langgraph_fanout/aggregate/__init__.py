"""Reading outputs, aggregators and voting.

Private: import from ``langgraph_fanout``.
"""
