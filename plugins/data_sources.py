"""Data sources and protocols beyond LFW's pair views: outside training sets (image folders,
CelebA, insightface's RecordIO sets) for the unrestricted_labeled_outside regime, and the BLUFR,
verification .bin and pair-list protocols."""
from __future__ import annotations

from facebench.data.celeba import CelebAConfig, CelebAData
from facebench.data.imagefolder import ImageFolderConfig, ImageFolderData
from facebench.data.recordio import RecordIOData, RecordIODataConfig
from facebench.hookspecs import hookimpl
from facebench.protocols.bin import BinProtocol, BinProtocolConfig
from facebench.protocols.blufr import BlufrProtocol, BlufrProtocolConfig
from facebench.protocols.pair_list import PairListConfig, PairListProtocol


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("dataset", "imagefolder", lambda c, ctx: ImageFolderData(c), ImageFolderConfig)
    registry.add("dataset", "celeba", lambda c, ctx: CelebAData(c), CelebAConfig)
    registry.add("dataset", "recordio", lambda c, ctx: RecordIOData(c), RecordIODataConfig)
    registry.add("protocol", "blufr", lambda c, ctx: BlufrProtocol(c), BlufrProtocolConfig)
    registry.add("protocol", "bin", lambda c, ctx: BinProtocol(c), BinProtocolConfig)
    registry.add("protocol", "pair_list", lambda c, ctx: PairListProtocol(c), PairListConfig)
