"""Data sources and protocols beyond LFW's pair views: outside training sets (image folders,
CelebA) for the unrestricted_labeled_outside regime, and the BLUFR protocol."""
from __future__ import annotations

from facebench.data.celeba import CelebAConfig, CelebAData
from facebench.data.imagefolder import ImageFolderConfig, ImageFolderData
from facebench.hookspecs import hookimpl
from facebench.protocols.blufr import BlufrProtocol, BlufrProtocolConfig


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add("dataset", "imagefolder", lambda c, ctx: ImageFolderData(c), ImageFolderConfig)
    registry.add("dataset", "celeba", lambda c, ctx: CelebAData(c), CelebAConfig)
    registry.add("protocol", "blufr", lambda c, ctx: BlufrProtocol(c), BlufrProtocolConfig)
