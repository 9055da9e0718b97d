"""Printing benchmark tables: right-aligned plain text for the terminal, or Markdown for bench/RESULTS.md."""

from __future__ import annotations


def render_table(header: list[str], rows: list[list[str]], markdown: bool, title: str | None = None) -> str:
    """``header`` and ``rows`` of already formatted cells -> one string (a bold title line in Markdown)."""
    if markdown:
        lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        lines = ([title] if title else []) + [
            "  ".join(s.rjust(wd) for s, wd in zip(r, widths)) for r in [header] + rows
        ]
    return "\n".join(lines)
