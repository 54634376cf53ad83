"""LangChain ``create_*_tool`` factories.

Private: import from ``langgraph_fanout``.
"""
