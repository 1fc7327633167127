"""A layered (Sugiyama-style) layout in pure Python: boxes in ranks, edges routed between them.

The steps are the classic ones (Sugiyama, Tagawa and Toda 1981; Gansner et al. 1993, the
paper behind graphviz's `dot`), kept small:

1. rank: each box goes to the rank of its longest path from a source (networkx's
   topological generations), so every edge points down the page;
2. dummies: an edge that spans several ranks gets one zero-width dummy point per rank it
   crosses, so that it is routed *between* boxes instead of through them;
3. order: barycenter sweeps down and up the ranks reduce edge crossings (the best order seen
   is kept);
4. coordinates: within a rank, each item is pulled towards its neighbours' mean position and
   then projected onto the nearest non-overlapping placement (a weighted isotonic regression,
   solved exactly with pool-adjacent-violators), so boxes can never overlap;
5. routes: an edge runs straight through each rank band it crosses (at its box port or its
   dummy point) and as a cubic curve through the gaps between bands. Nothing but edges lives
   in the gaps and dummies keep their own slot in a band, so an edge never crosses a box.

Coordinates are computed along an abstract "order" axis (across a rank) and "rank" axis, then
mapped to x/y by `rankdir` (TB: ranks are rows; LR: ranks are columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

PathCommand = tuple[str, tuple[float, ...]]  # ("M", (x, y)), ("L", (x, y)), ("C", (x1, y1, x2, y2, x, y))


@dataclass(frozen=True)
class Rect:
    """An axis-aligned box: top-left corner, width, height."""

    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def overlaps(self, other: Rect) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )

    def contains(self, x: float, y: float, inset: float = 0.0) -> bool:
        return self.x + inset < x < self.x + self.w - inset and self.y + inset < y < self.y + self.h - inset


@dataclass(frozen=True)
class Route:
    """One edge: its endpoints and the path drawn for it (SVG-style commands)."""

    src: str
    dst: str
    commands: tuple[PathCommand, ...]

    @property
    def end(self) -> tuple[float, float]:
        return self.commands[-1][1][-2], self.commands[-1][1][-1]


@dataclass(frozen=True)
class Layout:
    rects: dict[str, Rect]
    routes: tuple[Route, ...]
    width: float
    height: float
    rankdir: str


@dataclass(frozen=True)
class _Dummy:
    src: str
    dst: str
    step: int


Item = Union[str, _Dummy]  # a box (its node name) or a dummy point of a long edge


def layered_layout(
    nodes: Sequence[str],
    sizes: Mapping[str, tuple[float, float]],
    edges: Sequence[tuple[str, str]],
    rankdir: str = "TB",
    *,
    node_gap: float = 28.0,
    rank_gap: float = 34.0,
    margin: float = 12.0,
) -> Layout:
    """Lay out a DAG: `nodes` in their preferred order (ties are broken by it), `sizes` as
    (width, height) per node, `edges` as (src, dst) pairs. Returns every box's rectangle and
    every edge's route."""
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")
    edges = list(dict.fromkeys(edges))
    rank = _ranks(nodes, edges)
    levels, up, down, chains = _layer(nodes, edges, rank)
    _order(levels, up, down, {n: i for i, n in enumerate(nodes)})

    def across(item: Item) -> float:  # extent along the order axis
        if isinstance(item, _Dummy):
            return 0.0
        w, h = sizes[item]
        return w if rankdir == "TB" else h

    def along(item: str) -> float:  # extent along the rank axis (boxes only: dummies have none)
        w, h = sizes[item]
        return h if rankdir == "TB" else w

    pos = _coordinates(levels, up, down, across, node_gap)
    band_start, band_end = _bands(levels, up, pos, along, rank_gap)
    left = min(pos[i] - across(i) / 2 for level in levels for i in level)
    shift = margin - left
    pos = {item: p + shift for item, p in pos.items()}
    center_r = {n: (band_start[rank[n]] + band_end[rank[n]]) / 2 for n in nodes}

    def to_xy(o: float, r: float) -> tuple[float, float]:
        return (o, r + margin) if rankdir == "TB" else (r + margin, o)

    rects = {}
    for n in nodes:
        o0, r0 = pos[n] - across(n) / 2, center_r[n] - along(n) / 2
        x, y = to_xy(o0, r0)
        w, h = sizes[n]
        rects[n] = Rect(x, y, w, h)
    ports = _ports(levels, up, down, pos, across)
    routes = []
    for (src, dst), chain in chains.items():
        head = pos[src] + ports[(chain[0], chain[1])][0]
        points = [(head, center_r[src] + along(src) / 2), (head, band_end[rank[src]])]
        for dummy in chain[1:-1]:
            assert isinstance(dummy, _Dummy)
            k = rank[src] + dummy.step
            points += [(pos[dummy], band_start[k]), (pos[dummy], band_end[k])]
        tail = pos[dst] + ports[(chain[-2], chain[-1])][1]
        points += [(tail, band_start[rank[dst]]), (tail, center_r[dst] - along(dst) / 2)]
        routes.append(Route(src, dst, _commands(points, to_xy)))
    right = max(pos[i] + across(i) / 2 for level in levels for i in level) + margin
    bottom = band_end[-1] + 2 * margin
    width, height = to_xy(right, bottom - margin)
    return Layout(rects, tuple(routes), width, height, rankdir)


def _ranks(nodes: Sequence[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest path from a source: networkx's topological generations."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return {n: r for r, generation in enumerate(nx.topological_generations(g)) for n in generation}


def _layer(nodes, edges, rank):
    """Items per rank (dummies included), the adjacency between consecutive ranks, and the
    chain of items each edge runs through."""
    levels: list[list[Item]] = [[] for _ in range(max(rank.values()) + 1)]
    for n in nodes:
        levels[rank[n]].append(n)
    up: dict[Item, list[Item]] = {n: [] for n in nodes}
    down: dict[Item, list[Item]] = {n: [] for n in nodes}
    chains: dict[tuple[str, str], list[Item]] = {}
    for src, dst in edges:
        chain: list[Item] = [src]
        for step in range(1, rank[dst] - rank[src]):
            dummy = _Dummy(src, dst, step)
            levels[rank[src] + step].append(dummy)
            up[dummy], down[dummy] = [], []
            chain.append(dummy)
        chain.append(dst)
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)
        chains[(src, dst)] = chain
    return levels, up, down, chains


def _order(levels: list[list[Item]], up, down, index: dict[str, int]) -> None:
    """Barycenter sweeps (in place); keeps the order with the fewest crossings."""

    def tie(item: Item) -> float:
        return index[item] if isinstance(item, str) else index[item.dst] - 0.5

    def sweep(rows: range, neighbours) -> None:
        for r in rows:
            place = {item: i for i, item in enumerate(levels[r - 1 if neighbours is up else r + 1])}
            keys = {}
            for i, item in enumerate(levels[r]):
                near = [place[n] for n in neighbours[item]]
                keys[item] = (sum(near) / len(near) if near else i, tie(item))
            levels[r].sort(key=keys.__getitem__)

    for level in levels:
        level.sort(key=tie)
    sweep(range(1, len(levels)), up)
    best, best_cost = [list(level) for level in levels], _crossings(levels, down)
    for iteration in range(12):
        if iteration % 2:
            sweep(range(1, len(levels)), up)
        else:
            sweep(range(len(levels) - 2, -1, -1), down)
        cost = _crossings(levels, down)
        if cost < best_cost:
            best, best_cost = [list(level) for level in levels], cost
    levels[:] = best


def _crossings(levels: list[list[Item]], down) -> int:
    total = 0
    for r in range(len(levels) - 1):
        below = {item: i for i, item in enumerate(levels[r + 1])}
        pairs = [(i, below[b]) for i, a in enumerate(levels[r]) for b in down[a]]
        total += sum(1 for k, (a1, b1) in enumerate(pairs) for a2, b2 in pairs[k + 1 :] if (a1 - a2) * (b1 - b2) < 0)
    return total


def _coordinates(levels, up, down, across, node_gap: float) -> dict[Item, float]:
    """Order-axis centres: pull each item towards its neighbours, then project onto the
    closest placement that keeps every pair of neighbours `node_gap` apart."""

    def separation(a: Item, b: Item) -> float:
        dummies = isinstance(a, _Dummy) + isinstance(b, _Dummy)
        gap = node_gap if dummies == 0 else node_gap / 2 if dummies == 1 else node_gap / 3
        return across(a) / 2 + across(b) / 2 + gap

    pos: dict[Item, float] = {}
    for level in levels:
        x = 0.0
        for i, item in enumerate(level):
            x += separation(level[i - 1], item) if i else 0.0
            pos[item] = x

    def place(level: list[Item], sides) -> None:
        desired, weights = [], []
        for item in level:
            near = [n for side in sides for n in side[item]]
            # Real boxes follow real neighbours more than the dummy points of long edges, so a
            # chain of layers stays straight and its skip connections bend around it.
            pull = [1.0 if isinstance(n, str) or isinstance(item, _Dummy) else 0.25 for n in near]
            desired.append(sum(w * pos[n] for w, n in zip(pull, near)) / sum(pull) if near else pos[item])
            weights.append(1.0 if isinstance(item, _Dummy) else 4.0)
        seps = [separation(a, b) for a, b in zip(level, level[1:])]
        for item, x in zip(level, _project(desired, weights, seps)):
            pos[item] = x

    for _ in range(8):
        for level in levels[1:]:
            place(level, (up,))
        for level in reversed(levels[:-1]):
            place(level, (down,))
    for level in levels:
        place(level, (up, down))
    _straighten(levels, up, down, pos, separation)
    return pos


def _straighten(levels, up, down, pos, separation) -> None:
    """Put each run of one-to-one links (a chain of layers, the dummies of a long edge) on one
    line where its neighbours leave room: the pulls above trade straightness for short edges,
    and a chain that sways reads worse than one long edge that bends."""
    rank_of = {item: (r, i) for r, level in enumerate(levels) for i, item in enumerate(level)}
    blocks, seen = [], set()
    for level in levels:
        for item in level:
            if item in seen:
                continue
            block = [item]
            while len(down[block[-1]]) == 1 and len(up[down[block[-1]][0]]) == 1:
                block.append(down[block[-1]][0])
            seen.update(block)
            if len(block) > 1:
                blocks.append(block)
    blocks.sort(key=len, reverse=True)
    for _ in range(3):
        for block in blocks:
            lo, hi = float("-inf"), float("inf")
            for item in block:
                r, i = rank_of[item]
                level = levels[r]
                if i:
                    lo = max(lo, pos[level[i - 1]] + separation(level[i - 1], item))
                if i + 1 < len(level):
                    hi = min(hi, pos[level[i + 1]] - separation(item, level[i + 1]))
            if lo <= hi:
                target = min(max(sum(pos[item] for item in block) / len(block), lo), hi)
                for item in block:
                    pos[item] = target


def _project(desired: list[float], weights: list[float], seps: list[float]) -> list[float]:
    """argmin sum w_i (x_i - d_i)^2 subject to x_{i+1} - x_i >= sep_i: with y_i = x_i - offset_i
    this is isotonic regression of the shifted targets, solved by pool-adjacent-violators."""
    offsets = [0.0]
    for s in seps:
        offsets.append(offsets[-1] + s)
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for d, w, off in zip(desired, weights, offsets):
        blocks.append([d - off, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    ys = [mean for mean, _, count in blocks for _ in range(int(count))]
    return [y + off for y, off in zip(ys, offsets)]


def _bands(levels, up, pos, along, rank_gap: float) -> tuple[list[float], list[float]]:
    """Where each rank's band starts and ends on the rank axis. A gap is widened by the edges
    that bend in it, so that curves stay readable."""
    starts, ends, r = [], [], 0.0
    for k, level in enumerate(levels):
        if k:
            bends = sum(1 for item in level for n in up[item] if abs(pos[n] - pos[item]) > 1)
            r += rank_gap + min(3 * bends, 36)
        thickness = max((along(i) for i in level if isinstance(i, str)), default=0.0)
        starts.append(r)
        r += thickness
        ends.append(r)
    return starts, ends


def _ports(levels, up, down, pos, across) -> dict[tuple[Item, Item], tuple[float, float]]:
    """Where each layered edge leaves its upper item and enters its lower one, as offsets from
    the item's centre: a box's edges are spread along its side, in the order of their other
    ends, so that they do not start on top of each other."""
    out: dict[Item, dict[Item, float]] = {}
    inn: dict[Item, dict[Item, float]] = {}
    for level in levels:
        for item in level:
            out[item] = _spread(item, down[item], pos, across)
            inn[item] = _spread(item, up[item], pos, across)
    return {(a, b): (out[a][b], inn[b][a]) for level in levels for a in level for b in down[a]}


def _spread(item: Item, others: list[Item], pos, across) -> dict[Item, float]:
    k = len(others)
    if k <= 1 or isinstance(item, _Dummy):
        return {o: 0.0 for o in others}
    spacing = min(14.0, 0.8 * across(item) / k)
    ranked = sorted(others, key=lambda o: pos[o])
    return {o: (i - (k - 1) / 2) * spacing for i, o in enumerate(ranked)}


def _commands(points: list[tuple[float, float]], to_xy) -> tuple[PathCommand, ...]:
    """Points alternate: (band entry, band exit) pairs joined by straight lines inside a band,
    and curves (vertical tangents on the rank axis) across the gap between two bands."""
    commands: list[PathCommand] = [("M", to_xy(*points[0]))]
    for i in range(1, len(points)):
        (o0, r0), (o1, r1) = points[i - 1], points[i]
        if i % 2:  # inside a band: straight along the rank axis
            if abs(r1 - r0) > 1e-6:
                commands.append(("L", to_xy(o1, r1)))
        else:
            mid = (r0 + r1) / 2
            commands.append(("C", (*to_xy(o0, mid), *to_xy(o1, mid), *to_xy(o1, r1))))
    return tuple(commands)


def sample(route: Route, steps: int = 16) -> list[tuple[float, float]]:
    """Points along a route (curves sampled), for checks that an edge stays clear of boxes."""
    out: list[tuple[float, float]] = []
    x0 = y0 = 0.0
    for op, values in route.commands:
        if op == "M":
            x0, y0 = values
            out.append((x0, y0))
        elif op == "L":
            x1, y1 = values
            out += [(x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(1, steps + 1)]
            x0, y0 = x1, y1
        else:
            c1x, c1y, c2x, c2y, x1, y1 = values
            for k in range(1, steps + 1):
                t = k / steps
                a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
                out.append((a * x0 + b * c1x + c * c2x + d * x1, a * y0 + b * c1y + c * c2y + d * y1))
            x0, y0 = x1, y1
    return out
