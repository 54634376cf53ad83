"""Delegation requests, the agent registry client (``A2AClient``).

Private: import from ``langgraph_fanout``.
"""
