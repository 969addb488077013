"""Continual strategies: the growing classifier, cfer's plugins, the baselines and a runner.

Its modules import Avalanche (a few seconds) when they are imported; ``import cfer`` and
``import cfer.strategies`` do not.
"""
