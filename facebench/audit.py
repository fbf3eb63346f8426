"""Identity-overlap audit: a verification number is worthless if test people were trained on."""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Optional

from facebench.errors import FacebenchError


class IdentityOverlapError(FacebenchError):
    """Training and evaluated identities overlap where the regime forbids it."""


def normalise_name(name: str) -> str:
    """Case, accents and separators removed: 'José_Maria-Aznar' and 'jose maria aznar' match."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[\s_\-.]+", " ", text).strip().lower()


def audit_identities(
    train_names: list[str],
    test_names: list[str],
    allow_overlap: bool,
    what: str,
    regime: str,
    unnamed: Optional[list[str]] = None,
    unnamed_reason: str = "",
) -> dict[str, Any]:
    """Compare normalised names; refuse overlap unless explicitly allowed. Returns the audit record.

    ``test_names`` are the people the evaluated pairs or trials actually use. ``unnamed``: training
    identities known only by a number (CelebA without a names file), which no name comparison
    can match; the record then says the audit was not (or only partly) checkable, and why.
    """
    unnamed = sorted(set(unnamed or []))
    named = [n for n in train_names if n not in set(unnamed)]
    train = {normalise_name(n): n for n in named}
    overlap = sorted(train[k] for k in {normalise_name(n) for n in test_names} if k in train)
    if not unnamed:
        status = "checked"
    elif named:
        status = "partly checked"
    else:
        status = "not checkable"
    audit = {
        "what": what,
        "status": status,
        "train_identities": len(set(train_names)),
        "evaluated_identities": len(set(test_names)),
        "overlap": overlap,
        "allowed": bool(allow_overlap),
    }
    if unnamed:
        audit["unchecked_identities"] = len(unnamed)
        audit["why_unchecked"] = unnamed_reason
    if overlap and not allow_overlap:
        shown = ", ".join(overlap[:20]) + (f" and {len(overlap) - 20} more" if len(overlap) > 20 else "")
        raise IdentityOverlapError(
            f"{what}: {len(overlap)} training identities are also evaluated people ({shown}). Regime {regime} "
            "forbids testing on people seen in training: remove them from the training set, or set "
            "allow_identity_overlap=true to report anyway (the record will say so)."
        )
    return audit


def audit_status(audits: list[dict[str, Any]]) -> str:
    """One word for a record's audits together: the weakest of them (records made before the
    status existed were compared by name: "checked")."""
    statuses = {a.get("status", "checked") for a in audits}
    for status in ("not checkable", "partly checked"):
        if status in statuses:
            return status
    return "checked" if audits else "none"
