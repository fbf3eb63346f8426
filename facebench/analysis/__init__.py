"""Analyses of finished runs: what their trained features are like, beside what they scored.

``python -m facebench.analyze RUN_DIR [RUN_DIR ...] [analysis=[...]]`` (facebench/analyze.py)
loads each run (``loaded.AnalysedRun``), runs the registered analyses chosen (the ``analysis``
component kind; built-ins in plugins/analyses), and writes ``analysis.json``, PNG plots and
``analysis.html`` into the run's folder (``report``); given several runs, it also writes a
side-by-side page where findings are tested across them.
"""
from facebench.analysis.loaded import AnalysedRun, AnalysisError, UnitModel

__all__ = ["AnalysedRun", "AnalysisError", "UnitModel"]
