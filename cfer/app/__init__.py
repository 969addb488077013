"""The ``cfer`` application: the command line, the main job and its report.

Everything here exists for the ``cfer`` command: the run configuration (frozen
dataclasses and their YAML form), the preparation of a run's data, the main job as a
list of stages, the HTML report and its figures, and the command-line parser. The
library below (:mod:`cfer.data`, :mod:`cfer.models`, :mod:`cfer.continual`,
:mod:`cfer.fewshot`, :mod:`cfer.explain`) never imports this package.
"""
