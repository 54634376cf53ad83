"""LangGraph ``create_*_graph`` factories on the run controller.

Private: import from ``langgraph_fanout``.
"""
