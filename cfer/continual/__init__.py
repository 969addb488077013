"""Continual learning: the basic → compound stream, the growing classifier, the teacher,
cfer's Avalanche plugins, the baselines, metrics and a resumable runner.

The modules import Avalanche (a few seconds) when they are imported; ``import cfer`` and
``import cfer.continual`` do not.
"""
