"""The guards of every call: limits, budget, prices, tokens, rate limits, cache,
breakers, error classification, recovery, hedging, screening and redaction.

Private: import from ``langgraph_fanout``.
"""
