"""The shell every static page of results shares (the leaderboard's, a study's report), so the
pages a reader moves between look alike and a change of style is made once."""
from __future__ import annotations

import html

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}\n"
         "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}")


def html_page(title: str, body: str) -> str:
    """A whole document around ``body``, which the caller has already escaped; ``title`` is
    escaped here."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>
{body}</body></html>
"""
