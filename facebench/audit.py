"""Identity-overlap audit: a verification number is worthless if test people were trained on."""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from facebench.errors import FacebenchError


class IdentityOverlapError(FacebenchError):
    """Training and evaluated identities overlap where the regime forbids it."""


def normalise_name(name: str) -> str:
    """Case, accents and separators removed: 'José_Maria-Aznar' and 'jose maria aznar' match."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[\s_\-.]+", " ", text).strip().lower()


def audit_identities(
    train_names: list[str], test_names: list[str], allow_overlap: bool, what: str, regime: str
) -> dict[str, Any]:
    """Compare normalised names; refuse overlap unless explicitly allowed. Returns the audit record."""
    train = {normalise_name(n): n for n in train_names}
    overlap = sorted(train[k] for k in {normalise_name(n) for n in test_names} if k in train)
    audit = {
        "what": what,
        "train_identities": len(train),
        "evaluated_identities": len(set(test_names)),
        "overlap": overlap,
        "allowed": bool(allow_overlap),
    }
    if overlap and not allow_overlap:
        shown = ", ".join(overlap[:20]) + (f" and {len(overlap) - 20} more" if len(overlap) > 20 else "")
        raise IdentityOverlapError(
            f"{what}: {len(overlap)} training identities are also evaluated people ({shown}). Regime {regime} "
            "forbids testing on people seen in training: remove them from the training set, or set "
            "allow_identity_overlap=true to report anyway (the record will say so)."
        )
    return audit
