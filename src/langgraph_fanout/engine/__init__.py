"""Sub-agents, the call pipeline, the estimator, the run controller, dispatch,
the plan and ensembles.

Private: import from ``langgraph_fanout``.
"""
