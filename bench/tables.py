"""Printing benchmark tables (right-aligned plain text for the terminal, or Markdown for bench/RESULTS.md) and
naming the machine they were measured on."""

from __future__ import annotations

import platform
import re
from pathlib import Path


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


def cpu_description() -> str:
    """The processor's model and its wide-vector and matrix extensions, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flag_line = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    flags = set(flag_line.group(1).split()) if flag_line else set()
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    amx = sorted(f for f in flags if f.startswith("amx"))
    ext = [
        "AVX2" if "avx2" in flags else "no AVX2",
        f"AVX-512 ({', '.join(avx512)})" if avx512 else "no AVX-512",
        f"AMX ({', '.join(amx)})" if amx else "no AMX",
    ]
    hypervisor = " (virtual machine)" if "hypervisor" in flags else ""
    return f"{model.group(1).strip() if model else 'unknown CPU'}{hypervisor}; {', '.join(ext)}"
