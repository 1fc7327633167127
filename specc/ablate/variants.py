"""The ablation's variants, derived from one spec with the transform table — never from
hand-written files, so the comparison holds for any spec, not only the paper's.

| variant | transform | paper's name (model X) |
|---|---|---|
| base | none: the spec itself | Model X |
| strided | replace_pooling=strided | Strided-CNN-X |
| convpool | replace_pooling=convpool | ConvPool-CNN-X |
| all | replace_pooling=conv | ALL-CNN-X |

A variant the rule cannot build (a spec without max-pooling, a pool whose input is not a
conv) is skipped with the transform's own words, and the report says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from specc.errors import SpecError, UserError, did_you_mean
from specc.ir import Graph
from specc.shapes import ShapeReport
from specc.transforms import make, run

# name -> the replace_pooling rule that derives it (None: the spec as written).
VARIANTS: dict[str, str | None] = {"base": None, "strided": "strided", "convpool": "convpool", "all": "conv"}
PAPER_PREFIX = {"base": "Model", "strided": "Strided-CNN", "convpool": "ConvPool-CNN", "all": "ALL-CNN"}
_PAPER_MODEL = re.compile(r"^model_([abc])$")


@dataclass(frozen=True)
class Variant:
    """A derived network: its graph (recipe not yet attached) and shapes."""

    name: str
    label: str  # "ALL-CNN-C" for the paper's models, "model_x (all)" otherwise
    graph: Graph
    report: ShapeReport
    steps: tuple[str, ...]  # the transforms that made it, as `specc transform` labels them

    @property
    def params(self) -> int:
        return self.report.total_params

    @property
    def macs(self) -> int:
        return self.report.total_macs


@dataclass(frozen=True)
class Skipped:
    """A variant the transforms cannot derive from this spec, and why."""

    name: str
    label: str
    reason: str


def parse_variants(text: str) -> tuple[str, ...]:
    """`base,all` -> ('base', 'all'), in the order given; unknown names are refused."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UserError(f"--variants {text!r}: expected a comma-separated list of {', '.join(VARIANTS)}")
    for name in names:
        if name not in VARIANTS:
            raise UserError(
                f"--variants {text}: unknown variant '{name}'{did_you_mean(name, VARIANTS)}"
                f" (known: {', '.join(VARIANTS)})"
            )
    if len(set(names)) != len(names):
        raise UserError(f"--variants {text}: a variant is named twice")
    return tuple(names)


def label(spec_name: str, variant: str) -> str:
    """The paper's name for model_a/b/c variants (`Strided-CNN-C`), else `name (variant)`."""
    match = _PAPER_MODEL.match(spec_name)
    if match:
        return (
            f"{PAPER_PREFIX[variant]}-{match.group(1).upper()}"
            if variant != "base"
            else f"Model {match.group(1).upper()}"
        )
    return spec_name if variant == "base" else f"{spec_name} ({variant})"


def paper_model(spec_name: str) -> str | None:
    """'C' for model_c, None for a spec that is not one of the paper's base models."""
    match = _PAPER_MODEL.match(spec_name)
    return match.group(1).upper() if match else None


def derive(graph: Graph, names: tuple[str, ...], **budgets: int) -> list[Variant | Skipped]:
    """Each named variant of `graph`, in order: a `Variant`, or `Skipped` with the reason."""
    out: list[Variant | Skipped] = []
    for name in names:
        rule = VARIANTS[name]
        steps = [make("replace_pooling", rule)] if rule else []
        try:
            result = run(graph, steps, **budgets)
        except SpecError as exc:
            if not steps:
                raise  # the spec itself is invalid: the user's error, reported as such
            reason = "; ".join(d.format() for d in exc.diagnostics)
            out.append(Skipped(name, label(graph.name, name), reason))
            continue
        if steps and result.graph.nodes == graph.nodes:
            # The rule found nothing to rewrite (a spec that is already all-convolutional):
            # training the same network again would only repeat the base row.
            why = "; ".join(d.message for d in result.notes) or "the transform changed nothing"
            out.append(Skipped(name, label(graph.name, name), why))
            continue
        labels = tuple(t.label() for t in result.steps)
        out.append(Variant(name, label(graph.name, name), result.graph, result.report, labels))
    return out
