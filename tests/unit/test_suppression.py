"""Release-wide suppression: crafted tables, the issue's cross-table leak, and a brute-force attacker."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.evaluation.suppression import PROTECTION, SUPPRESSED, Ledger


def _list(counts: Sequence[int]) -> tuple[Ledger, list[Hashable]]:
    """A one-way table (counts of disjoint groups of records) published with its total."""
    ledger = Ledger(sum(counts))
    keys: list[Hashable] = []
    start = 0
    for i, c in enumerate(counts):
        keys.append(ledger.add(f"c{i}", range(start, start + c)))
        start += c
    ledger.add("total", range(start), cost=100)
    ledger.constrain("total", keys)
    return ledger, keys


def test_a_small_count_and_one_complement() -> None:
    ledger, keys = _list([5, 40, 30])
    ledger.suppress()
    shown = [ledger.shown(k) for k in keys]
    assert shown[0] == SUPPRESSED
    assert shown.count(SUPPRESSED) == 2, "one complement, not more"
    assert ledger.shown("total") == 75
    assert all(c.protected for c in ledger.audit().cells)


def test_zero_and_large_counts_are_published() -> None:
    ledger, keys = _list([0, 12, 30])
    ledger.suppress()
    assert [ledger.shown(k) for k in keys] == [0, 12, 30]
    assert ledger.audit().cells == []


def test_the_complement_must_be_large_enough_for_the_protection_interval() -> None:
    # Hiding 5 and 11 lets the 5 range only over 0..16 - fine; hiding 5 and 3 would not reach 10.
    ledger, _ = _list([5, 3, 40])
    ledger.suppress()
    audit = ledger.audit()
    assert all(c.protected for c in audit.cells)
    assert audit.narrowest is not None
    assert audit.narrowest.low <= PROTECTION[0] and audit.narrowest.high >= PROTECTION[1]


def test_audit_catches_a_leak_that_primary_suppression_alone_leaves() -> None:
    ledger, _ = _list([5, 40, 30])
    ledger.suppress()
    audit = ledger.audit(hidden_keys=["c0"])  # only the small count hidden: total - 40 - 30 = 5
    [cell] = audit.cells
    assert not cell.protected and cell.low == cell.high == 5


def test_the_issue_leak_status_table_against_time_to_contact_is_closed() -> None:
    """Issue 16: the status table showed SFV accepted + engaged = 4 and the time-to-contact table 19
    SFV youth reached against 16 closed, pinning the suppressed SFV "engaged" to {3, 4}."""
    # SFV: 4 engaged (reached), 16 closed after being reached, 15 closed never reached, 0 accepted.
    statuses = ["engaged"] * 4 + ["closed"] * 31 + ["accepted"] * 0 + ["received"] * 12
    reached = [True] * 4 + [True] * 15 + [False] * 16 + [False] * 12
    ledger = Ledger(len(statuses))
    parts = []
    for status in ("received", "accepted", "engaged", "closed"):
        members = [i for i, s in enumerate(statuses) if s == status]
        parts.append(ledger.add(("status", status), members))
    ledger.add(("status", "total"), range(len(statuses)), cost=100)
    ledger.constrain(("status", "total"), parts)
    reach = [i for i, r in enumerate(reached) if r]
    ledger.add(("reached",), reach, cost=4)
    # What a reader knows: reached youth are engaged or closed now.
    helpers = [
        ledger.add(("reached_by", s), [i for i in reach if statuses[i] == s], published=False)
        for s in ("engaged", "closed")
    ]
    ledger.constrain(("reached",), helpers)
    ledger.suppress()
    assert ledger.shown(("status", "engaged")) == SUPPRESSED
    audit = ledger.audit()
    assert audit.cells and all(c.protected for c in audit.cells), audit
    # Without the complements the engaged count is pinned between reached - closed and its cell.
    leaky = ledger.audit(hidden_keys=[("status", "engaged")])
    engaged = next(c for c in leaky.cells if "'engaged'" in c.key and c.published is False)
    assert not engaged.protected


def test_nesting_is_known_to_the_reader() -> None:
    # A subset's count bounds its superset's: hiding both parts of a 2 + 40 split in one table and
    # publishing a superset of the small part that is itself small would leak; nesting must see it.
    ledger = Ledger(60)
    a = ledger.add("a", range(2))
    b = ledger.add("b", range(2, 42))
    ledger.add("ab", range(42), cost=100)
    ledger.constrain("ab", [a, b])
    ledger.add("a_plus", range(5))  # published elsewhere: a is at most 5
    ledger.suppress()
    assert all(c.protected for c in ledger.audit().cells)
    assert ledger.shown("a_plus") == SUPPRESSED


def _brute_force_range(
    counts: list[list[int]], hidden: set[tuple[int, int]], cell: tuple[int, int]
) -> set[int]:
    """Every value the hidden cell can take in a non-negative integer table with the same published
    cells and margins (small tables only)."""
    rows, cols = len(counts), len(counts[0])
    row_totals = [sum(r) for r in counts]
    col_totals = [sum(counts[i][j] for i in range(rows)) for j in range(cols)]
    cells = sorted(hidden)
    top = max(max(row_totals), max(col_totals))
    seen = set()
    for values in itertools.product(range(top + 1), repeat=len(cells)):
        table = [row[:] for row in counts]
        for (i, j), v in zip(cells, values, strict=True):
            table[i][j] = v
        if [sum(r) for r in table] == row_totals and [
            sum(table[i][j] for i in range(rows)) for j in range(cols)
        ] == col_totals:
            seen.add(table[cell[0]][cell[1]])
    return seen


def _grid(counts: list[list[int]]) -> Ledger:
    rows, cols = len(counts), len(counts[0])
    ledger = Ledger(sum(map(sum, counts)))
    start = 0
    members: dict[tuple[int, int], range] = {}
    for i in range(rows):
        for j in range(cols):
            members[(i, j)] = range(start, start + counts[i][j])
            start += counts[i][j]
    for (i, j), m in members.items():
        ledger.add(("cell", i, j), m)
    for i in range(rows):
        ledger.add(("row", i), [x for j in range(cols) for x in members[(i, j)]], cost=4)
        ledger.constrain(("row", i), [("cell", i, j) for j in range(cols)])
    for j in range(cols):
        ledger.add(("col", j), [x for i in range(rows) for x in members[(i, j)]], cost=4)
        ledger.constrain(("col", j), [("cell", i, j) for i in range(rows)])
    ledger.add(("total",), range(start), cost=100)
    ledger.constrain(("total",), [("row", i) for i in range(rows)])
    return ledger


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([0, 1, 3, 6, 9, 12, 15]), min_size=2, max_size=2), min_size=2, max_size=2
    )
)
def test_two_by_two_against_brute_force(counts: list[list[int]]) -> None:
    """In a 2x2 table with margins, no hidden small cell has fewer possible values than 1..10 allows
    (an independent integer attacker, not the LP)."""
    ledger = _grid(counts)
    ledger.suppress()
    hidden = {(i, j) for i in range(2) for j in range(2) if ledger.shown(("cell", i, j)) == SUPPRESSED}
    margins_hidden = any(
        ledger.shown(k) == SUPPRESSED for k in [("row", 0), ("row", 1), ("col", 0), ("col", 1), ("total",)]
    )
    for i, j in hidden:
        if not 1 <= counts[i][j] <= 10 or margins_hidden:
            continue
        possible = _brute_force_range(counts, hidden, (i, j))
        assert min(possible) <= PROTECTION[0] and max(possible) >= PROTECTION[1], (counts, hidden, possible)
    assert all(c.protected for c in ledger.audit().cells)
