"""Node kinds: one module per kind, each with ``create(config: NodeConfig) -> meshdcm.Node``.

``meshdcm node KIND`` runs one; ``meshdcm up`` runs them all.
"""
