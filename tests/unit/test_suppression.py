"""Small-cell suppression on crafted tables, checked against an independent brute-force attacker."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.evaluation.suppression import (
    SUPPRESSED,
    Grid,
    exposed_cells,
    suppress,
    suppress_grid,
    suppress_list,
)

S = SUPPRESSED


def hidden_interior(g: Grid) -> set[tuple[int, int]]:
    return {(i, j) for i, row in enumerate(g.cells) for j, v in enumerate(row) if v == S}


def attack(g: Grid, bound: int) -> dict[tuple[int, int], set[int]]:
    """Every value each hidden interior cell can take in some non-negative integer table that agrees
    with everything published (cells, row and column totals, grand total). Brute force, two rows:
    enumerate the first row's hidden cells; the second row follows from published column totals."""
    assert len(g.rows) == 2
    cols = len(g.columns)

    def domain(i: int, j: int) -> Sequence[int]:
        v = g.cells[i][j]
        if v != S:
            return [int(v)]
        # A cell is at most any published total it is part of.
        caps = [int(t) for t in (g.column_totals[j], g.row_totals[i], g.total) if t != S]
        return range(min([bound, *caps]) + 1)

    seen: dict[tuple[int, int], set[int]] = {cell: set() for cell in hidden_interior(g)}
    for row0 in itertools.product(*(domain(0, j) for j in range(cols))):
        if g.row_totals[0] != S and sum(row0) != g.row_totals[0]:
            continue
        options: list[Sequence[int]] = []
        for j in range(cols):
            if g.column_totals[j] != S:
                v = int(g.column_totals[j]) - row0[j]
                ok = v >= 0 and (g.cells[1][j] == S or g.cells[1][j] == v)
                options.append([v] if ok else [])
            else:
                options.append(domain(1, j))
        for row1 in itertools.product(*options):
            if g.row_totals[1] != S and sum(row1) != g.row_totals[1]:
                continue
            if g.total != S and sum(row0) + sum(row1) != g.total:
                continue
            for (i, j), values in seen.items():
                values.add((row0, row1)[i][j])
    return seen


def assert_protected(counts: list[list[int]], g: Grid, bound: int = 40) -> None:
    # Primary suppression: every count from 1 to 10, in cells and margins alike.
    flat = [(v, counts[i][j]) for i, row in enumerate(g.cells) for j, v in enumerate(row)]
    margins = [
        *zip(g.row_totals, [sum(r) for r in counts], strict=True),
        *zip(g.column_totals, [sum(c) for c in zip(*counts, strict=True)], strict=True),
        (g.total, sum(map(sum, counts))),
    ]
    for shown, true in flat + margins:
        if 1 <= true <= 10:
            assert shown == S, f"{true} must be suppressed"
        elif shown != S:
            assert shown == true
    # Complementary suppression: no hidden small count has only one possible value.
    for (i, j), values in attack(g, bound).items():
        assert counts[i][j] in values
        if 1 <= counts[i][j] <= 10:
            assert len(values) >= 2, f"cell {(i, j)} = {counts[i][j]} is recoverable from the totals"


# --------------------------------------------------------------------------- crafted tables


def test_nothing_small_nothing_hidden() -> None:
    g = suppress_grid(["a", "b"], ["x", "y"], [[11, 40], [0, 25]])
    assert g.cells == [[11, 40], [0, 25]]
    assert g.row_totals == [51, 25]
    assert g.column_totals == [11, 65]
    assert g.total == 76


def test_zero_is_published() -> None:
    values, total = suppress_list([0, 12, 30])
    assert values == [0, 12, 30]
    assert total == 42


def test_one_small_cell_needs_a_complement_in_a_list() -> None:
    values, total = suppress_list([5, 40, 30])
    # 5 alone would be 75 - 40 - 30: the smallest other count is hidden with it.
    assert values == [S, 40, S]
    assert total == 75


def test_two_small_cells_protect_each_other_in_a_list() -> None:
    values, total = suppress_list([5, 3, 40])
    assert values == [S, S, 40]
    assert total == 48


def test_complement_prefers_a_non_zero_cell() -> None:
    values, _ = suppress_list([4, 0, 30, 12])
    assert values == [S, 0, 30, S]


def test_single_small_cell_in_a_two_way_table_gets_a_rectangle() -> None:
    counts = [[5, 40], [30, 25], [12, 60]]
    g = suppress_grid(["a", "b", "c"], ["x", "y"], counts)
    assert g.cells[0] == [S, S]
    assert sum(v == S for row in g.cells for v in row) == 4, "a rectangle, not more"
    # Margins stay published: complements are taken inside the table.
    assert g.row_totals == [45, 55, 72]
    assert g.column_totals == [47, 125]
    assert g.total == 172
    assert_protected(counts[:2], suppress_grid(["a", "b"], ["x", "y"], counts[:2]), bound=60)


def test_crafted_two_row_tables_resist_the_attacker() -> None:
    for counts in (
        [[5, 40, 30], [20, 12, 18]],
        [[3, 4, 50], [20, 30, 40]],
        [[1, 0, 35], [14, 22, 9]],
        [[2, 2, 2], [30, 30, 30]],
        [[0, 7, 0], [0, 0, 0]],
        [[15, 15, 6], [15, 15, 0]],
    ):
        g = suppress_grid(["a", "b"], ["x", "y", "z"], counts)
        assert_protected(counts, g, bound=max(60, sum(map(sum, counts))))


def test_small_row_total_is_hidden_with_a_complementary_total() -> None:
    counts = [[3, 4], [30, 20], [25, 35]]
    g = suppress_grid(["a", "b", "c"], ["x", "y"], counts)
    assert g.row_totals[0] == S
    # 7 = total - 50 - 60 unless another row total is hidden as well.
    assert sum(v == S for v in g.row_totals) >= 2
    assert g.column_totals == [58, 59]


def test_small_grand_total_hides_everything_small() -> None:
    g = suppress_grid(["a", "b"], ["x", "y"], [[0, 0], [0, 7]])
    assert g.total == S
    assert g.cells == [[0, 0], [0, S]]
    assert g.row_totals == [0, S]
    assert g.column_totals == [0, S]


def test_exposed_cells_finds_recovery_through_totals() -> None:
    values = {"a": 5, "b": 40, "c": 30, "t": 75}
    constraints = [("t", ["a", "b", "c"])]
    assert exposed_cells(values, constraints, {"a"}) == ["a"]
    assert exposed_cells(values, constraints, {"a", "c"}) == []
    # Hidden but pinned by non-negativity: 0 and 0 must both be zero if the hidden sum is 0.
    assert exposed_cells({"a": 0, "b": 0, "t": 0}, [("t", ["a", "b"])], {"a", "b"}) == ["a", "b"]


def test_inconsistent_constraints_are_refused() -> None:
    try:
        suppress({"a": 1, "t": 2}, [("t", ["a"])])
    except ValueError:
        return
    raise AssertionError("a constraint that does not hold must be refused")


# --------------------------------------------------------------------------- any small table


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 3).flatmap(
        lambda cols: st.lists(
            st.lists(st.integers(0, 14), min_size=cols, max_size=cols), min_size=2, max_size=2
        )
    )
)
def test_any_two_row_table_is_protected(counts: list[list[int]]) -> None:
    g = suppress_grid(["a", "b"], [f"c{j}" for j in range(len(counts[0]))], counts)
    assert_protected(counts, g, bound=sum(map(sum, counts)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=6))
def test_any_list_is_protected(counts: list[int]) -> None:
    values, total = suppress_list(counts)
    for shown, true in [*zip(values, counts, strict=True), (total, sum(counts))]:
        assert shown == S if 1 <= true <= 10 else shown in (S, true)
    hidden = [i for i, v in enumerate(values) if v == S]
    if total != S:
        # Each hidden small count must share the published remainder with another hidden count.
        small = [i for i in hidden if 1 <= counts[i] <= 10]
        if small:
            assert len(hidden) >= 2
