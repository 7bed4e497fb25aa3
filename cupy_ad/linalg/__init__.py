"""Matrix decompositions and solvers with exact JVP rules (one primitive per file)."""
from __future__ import annotations

__all__: list[str] = []
