"""Small-cell suppression for published counts: primary (1-10) and complementary, so totals betray nothing."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from fractions import Fraction
from math import gcd
from typing import Literal, TypeVar

import msgspec

__all__ = [
    "SUPPRESSED",
    "THRESHOLD",
    "Grid",
    "Shown",
    "exposed_cells",
    "show",
    "suppress",
    "suppress_grid",
    "suppress_list",
]

K = TypeVar("K", bound=Hashable)

# Counts from 1 to THRESHOLD are never published (the common 11+ rule for health and justice data);
# zero is published: it describes nobody.
THRESHOLD = 10
SUPPRESSED: Literal["suppressed"] = "suppressed"
Shown = int | Literal["suppressed"]


def suppress(
    values: Mapping[K, int],
    constraints: Sequence[tuple[K, Sequence[K]]],
    *,
    threshold: int = THRESHOLD,
    propose: Callable[[K, frozenset[K]], list[set[K]]] | None = None,
) -> frozenset[K]:
    """The cells to hide: every count in 1..threshold, plus complementary cells chosen until no hidden
    small count can be worked out exactly from the published ones.

    ``constraints`` are the sums a reader knows hold: ``(total, parts)`` means
    ``values[total] == sum(values[p] for p in parts)``. A hidden cell is recoverable when the published
    cells and these sums leave it only one non-negative value; see ``exposed_cells``.

    Complements: ``propose(cell, hidden)`` may offer sets of cells that would protect ``cell`` (a
    table knows its own geometry, e.g. rectangles in a two-way table); the first proposal that leaves
    the fewest cells exposed, then hides the fewest and smallest counts, wins. Without a proposal that
    helps, one published cell sharing a sum with the exposed cell is hidden (look-ahead of one step,
    preferring parts over totals, non-zero cells, then the smallest count), and the loop continues.
    """
    for total, parts in constraints:
        if values[total] != sum(values[p] for p in parts):
            raise ValueError(f"constraint does not hold for {total!r}")
    hidden = {k for k, v in values.items() if 1 <= v <= threshold}
    totals = {t for t, _ in constraints}

    def exposed(cells: set[K]) -> list[K]:
        # Only small counts need protecting; a recoverable complement (0 or > threshold) harms nobody.
        return [k for k in exposed_cells(values, constraints, cells) if 1 <= values[k] <= threshold]

    at_risk = exposed(hidden)
    while at_risk:
        cell = at_risk[0]
        options: list[set[K]] = [s - hidden for s in (propose(cell, frozenset(hidden)) if propose else [])]
        options = [s for s in options if s]
        if not options:
            near = _neighbours(constraints, hidden, cell) or [k for k in values if k not in hidden]
            options = [{k} for k in near]
        if not options:
            break  # everything is hidden already
        scored: list[tuple[tuple[bool, int, int, int, int, int], int, set[K], list[K]]] = []
        for extra in options:
            after = exposed(hidden | extra)
            cost = (
                cell in after,
                len(after),
                len(extra),
                sum(values[c] == 0 for c in extra),
                sum(c in totals for c in extra),
                sum(values[c] for c in extra),
            )
            scored.append((cost, len(scored), extra, after))
        _, _, extra, at_risk = min(scored, key=lambda s: (s[0], s[1]))
        hidden |= extra
    return frozenset(hidden)


def _neighbours(constraints: Sequence[tuple[K, Sequence[K]]], hidden: set[K], cell: K) -> list[K]:
    """Published cells that share a sum with ``cell``."""
    out: list[K] = []
    for total, parts in constraints:
        members = [total, *parts]
        if cell in members:
            out.extend(m for m in members if m not in hidden and m != cell and m not in out)
    return out


def exposed_cells(
    values: Mapping[K, int],
    constraints: Sequence[tuple[K, Sequence[K]]],
    hidden: set[K] | frozenset[K],
) -> list[K]:
    """Hidden cells whose value a reader could recover exactly from the published cells and the sums."""
    unknown = [k for k in values if k in hidden]
    if not unknown:
        return []
    index = {k: i for i, k in enumerate(unknown)}
    rows: list[list[Fraction]] = []
    for total, parts in constraints:
        row = [Fraction(0)] * len(unknown)
        if total in index:
            row[index[total]] -= 1
        for p in parts:
            if p in index:
                row[index[p]] += 1
        if any(row):
            rows.append(row)
    basis = _null_space(rows, len(unknown))
    x = [values[k] for k in unknown]
    movable = [False] * len(unknown)
    for vec in basis:
        ints = _primitive(vec)
        # Another non-negative integer table with the same published cells and sums: x ± d.
        for sign in (1, -1):
            if all(xi + sign * di >= 0 for xi, di in zip(x, ints, strict=True)):
                for i, di in enumerate(ints):
                    if di:
                        movable[i] = True
                break
    return [k for k, m in zip(unknown, movable, strict=True) if not m]


def _null_space(rows: list[list[Fraction]], n: int) -> list[list[Fraction]]:
    """A basis of {x : A x = 0} by reduced row echelon form over the rationals (exact)."""
    a = [r[:] for r in rows]
    pivots: list[int] = []
    r = 0
    for c in range(n):
        pivot = next((i for i in range(r, len(a)) if a[i][c] != 0), None)
        if pivot is None:
            continue
        a[r], a[pivot] = a[pivot], a[r]
        pv = a[r][c]
        a[r] = [v / pv for v in a[r]]
        for i in range(len(a)):
            if i != r and a[i][c] != 0:
                factor = a[i][c]
                a[i] = [vi - factor * vr for vi, vr in zip(a[i], a[r], strict=True)]
        pivots.append(c)
        r += 1
        if r == len(a):
            break
    free = [c for c in range(n) if c not in pivots]
    basis = []
    for f in free:
        vec = [Fraction(0)] * n
        vec[f] = Fraction(1)
        for row_i, pc in enumerate(pivots):
            vec[pc] = -a[row_i][f]
        basis.append(vec)
    return basis


def _primitive(vec: list[Fraction]) -> list[int]:
    denominators = 1
    for v in vec:
        denominators = denominators * v.denominator // gcd(denominators, v.denominator)
    ints = [int(v * denominators) for v in vec]
    g = 0
    for i in ints:
        g = gcd(g, abs(i))
    return [i // g for i in ints] if g else ints


def show(value: int, hidden: bool) -> Shown:
    return SUPPRESSED if hidden else value


class Grid(msgspec.Struct, frozen=True):
    """A published two-way table with its margins; hidden counts read "suppressed"."""

    rows: list[str]
    columns: list[str]
    cells: list[list[Shown]]
    row_totals: list[Shown]
    column_totals: list[Shown]
    total: Shown


def suppress_grid(
    rows: Sequence[str],
    columns: Sequence[str],
    counts: Sequence[Sequence[int]],
    *,
    threshold: int = THRESHOLD,
) -> Grid:
    """Suppress a two-way table of counts whose row, column and grand totals are published too."""
    if len(counts) != len(rows) or any(len(r) != len(columns) for r in counts):
        raise ValueError("counts must be len(rows) x len(columns)")
    values: dict[tuple[object, ...], int] = {}
    for i, row in enumerate(counts):
        for j, v in enumerate(row):
            if v < 0:
                raise ValueError("counts are non-negative")
            values[("cell", i, j)] = v
        values[("row", i)] = sum(row)
    for j in range(len(columns)):
        values[("col", j)] = sum(counts[i][j] for i in range(len(rows)))
    values[("total",)] = sum(values[("row", i)] for i in range(len(rows)))
    constraints: list[tuple[tuple[object, ...], Sequence[tuple[object, ...]]]] = []
    for i in range(len(rows)):
        constraints.append((("row", i), [("cell", i, j) for j in range(len(columns))]))
    for j in range(len(columns)):
        constraints.append((("col", j), [("cell", i, j) for i in range(len(rows))]))
    constraints.append((("total",), [("row", i) for i in range(len(rows))]))
    constraints.append((("total",), [("col", j) for j in range(len(columns))]))

    def rectangles(
        cell: tuple[object, ...], hidden: frozenset[tuple[object, ...]]
    ) -> list[set[tuple[object, ...]]]:
        # In a two-way table a hidden cell is protected by a rectangle of hidden cells: moving +1/-1
        # around its corners keeps every margin. Offer every rectangle through the cell that could move.
        if cell[0] != "cell":
            return []
        _, i, j = cell
        out: list[set[tuple[object, ...]]] = []
        for i2 in range(len(rows)):
            for j2 in range(len(columns)):
                if i2 == i or j2 == j:
                    continue
                a: tuple[object, ...] = ("cell", i, j2)
                b: tuple[object, ...] = ("cell", i2, j)
                c: tuple[object, ...] = ("cell", i2, j2)
                if values[c] >= 1 or (values[a] >= 1 and values[b] >= 1):
                    out.append({a, b, c})
        return out

    hidden = suppress(values, constraints, threshold=threshold, propose=rectangles)

    def out(key: tuple[object, ...]) -> Shown:
        return show(values[key], key in hidden)

    return Grid(
        rows=list(rows),
        columns=list(columns),
        cells=[[out(("cell", i, j)) for j in range(len(columns))] for i in range(len(rows))],
        row_totals=[out(("row", i)) for i in range(len(rows))],
        column_totals=[out(("col", j)) for j in range(len(columns))],
        total=out(("total",)),
    )


def suppress_list(counts: Sequence[int], *, threshold: int = THRESHOLD) -> tuple[list[Shown], Shown]:
    """Suppress a one-way list of counts published with its total."""
    values: dict[tuple[object, ...], int] = {("cell", i): v for i, v in enumerate(counts)}
    values[("total",)] = sum(counts)
    hidden = suppress(values, [(("total",), [("cell", i) for i in range(len(counts))])], threshold=threshold)
    return [show(v, ("cell", i) in hidden) for i, v in enumerate(counts)], show(
        values[("total",)], ("total",) in hidden
    )
