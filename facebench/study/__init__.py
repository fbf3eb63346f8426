"""Studies: named, declarative comparisons run as Hydra sweeps (``python -m facebench.study``).

A study fixes everything but what it compares (``facebench/study/conf/study/<name>.yaml``):
the trunk, input, embedding size, optimiser family, budget, features and verifiers are the
same for every entry; an entry is a loss (and any setting it needs), tuned over the search
space its plugin declares (``Registry.add(..., search_space=...)``) plus the study's learning
rate range, with the same number of trials for every entry, on the study's tuning split only.
The reported runs then use each entry's best trial, over several seeds, on the evaluation
protocol. Every run is an ordinary ``python -m facebench`` job with ``reuse_complete=true``
and ``trainer.resume=true``, so re-running the study's command redoes only what is missing
and continues an interrupted training from its checkpoint.
"""
