"""Values: results, the report, stop conditions, prompt templates, text.

Private: import from ``langgraph_fanout``.
"""
