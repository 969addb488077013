"""Continual strategies: the growing classifier, cfer's plugins, the baselines and a runner.

Importing this package imports Avalanche (a few seconds); ``import cfer`` does not.
"""
