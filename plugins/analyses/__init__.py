"""The DeepID2+ findings as analyses of finished runs (``python -m facebench.analyze RUN_DIR``):
sparsity, binary codes, identity and attribute selectivity, occlusion robustness and
sparsification (Sun, Wang, Tang, CVPR 2015, Sec. 5-6). Registered like any third party's."""
from __future__ import annotations

from facebench.hookspecs import hookimpl
from facebench_plugins.analyses.attributes import AttributesAnalysis, AttributesConfig
from facebench_plugins.analyses.binary import BinaryAnalysis, BinaryConfig
from facebench_plugins.analyses.occlusion import OcclusionAnalysis, OcclusionConfig
from facebench_plugins.analyses.selectivity import SelectivityAnalysis, SelectivityConfig
from facebench_plugins.analyses.sparsification import SparsificationAnalysis, SparsificationConfig
from facebench_plugins.analyses.sparsity import SparsityAnalysis, SparsityConfig


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("analysis", "sparsity", lambda c, ctx: SparsityAnalysis(c), SparsityConfig)
    registry.add("analysis", "binary", lambda c, ctx: BinaryAnalysis(c), BinaryConfig)
    registry.add("analysis", "selectivity", lambda c, ctx: SelectivityAnalysis(c), SelectivityConfig)
    registry.add("analysis", "attributes", lambda c, ctx: AttributesAnalysis(c), AttributesConfig)
    registry.add("analysis", "occlusion", lambda c, ctx: OcclusionAnalysis(c), OcclusionConfig)
    registry.add("analysis", "sparsification", lambda c, ctx: SparsificationAnalysis(c), SparsificationConfig)
