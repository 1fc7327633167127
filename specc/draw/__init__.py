"""Network diagrams (`specc draw`): a pure-Python layered layout of a spec's graph, rendered
as SVG (written directly), PNG/PDF (matplotlib) or DOT (for graphviz users).

    scene = network_scene(report)            # or diff_scene(before, after)
    data = render(scene, "svg")             # bytes, ready for specc.fileio

The layout needs nothing beyond networkx; only PNG and PDF need matplotlib.
"""

from __future__ import annotations

from pathlib import Path

from specc.draw.scene import Scene, diff_scene, network_scene
from specc.errors import UserError

__all__ = ["FORMATS", "Scene", "diff_scene", "network_scene", "output_format", "render"]

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot"}


def output_format(path: str | Path, flag: str = "-o") -> str:
    """The format an output file's extension asks for; a one-line refusal otherwise (before
    any work is done). PNG/PDF are refused here too when matplotlib is missing."""
    # a directory first: `-o out/` would otherwise read as a file without an extension
    if Path(path).is_dir():
        raise UserError(f"{flag} {path}: is a directory, expected a file name (.svg, .png, .pdf or .dot)")
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(
            f"{flag} {path}: unknown diagram format {suffix or '(no extension)'!r} — use .svg, .png, .pdf or .dot"
        )
    fmt = FORMATS[suffix]
    if fmt in ("png", "pdf"):
        from specc.draw.render_mpl import require_matplotlib

        require_matplotlib()
    return fmt


def render(scene: Scene, fmt: str, rankdir: str = "TB") -> bytes:
    """The file's bytes in format `fmt` ("svg", "png", "pdf" or "dot")."""
    if fmt == "svg":
        from specc.draw.render_svg import render_svg

        return render_svg(scene).encode("utf-8")
    if fmt == "dot":
        from specc.draw.render_dot import render_dot

        return render_dot(scene, rankdir).encode("utf-8")
    from specc.draw.render_mpl import render_image

    return render_image(scene, fmt)
