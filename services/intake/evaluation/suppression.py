"""Small-count suppression across a whole release: every count of every table, protected together by LP.

A release (the report's JSON, its HTML and its CSV tables, which all show the same numbers) publishes
many counts of the same youth: by region, by status, by variable, at risk over time. What a reader can
combine is modelled as a linear programme over every count of the release (the unknowns):

- the sums each table states: a margin is the sum of its row, a group's youth are its events plus its
  non-events, the youth at risk on one day are those at risk the next plus the events and censorings
  between, and the like (``Ledger.constrain``);
- the same set of youth counted in two tables is one unknown (a region's total in every table);
- nesting between tables: a count of a subset of another count's youth is at most that count (derived
  from the sets themselves, so no table has to declare it);
- every count is non-negative, and every published count is fixed to its value.

For a hidden count, the smallest and largest values this allows are what a reader can narrow it to.
Suppression hides every count from 1 to the threshold, then further published counts (complements)
until no small count, hidden or never published but derivable (e.g. "not re-arrested" = followed up -
re-arrested), can be narrowed below its protection interval. The audit (``Ledger.audit``) recomputes
every bound from scratch with ``scipy.optimize.linprog``.

Hiding a published count only removes a constraint, so a protected count stays protected: one pass
over the small counts suffices.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

__all__ = [
    "PROTECTION",
    "SUPPRESSED",
    "THRESHOLD",
    "AuditCell",
    "AuditResult",
    "Grid",
    "Ledger",
    "Shown",
    "protection_interval",
]

Key = Hashable

# Counts from 1 to THRESHOLD are never published (the common 11+ rule for health and justice data);
# zero is published: it describes nobody.
THRESHOLD = 10
SUPPRESSED: Literal["suppressed"] = "suppressed"
Shown = int | Literal["suppressed"]

# The protection interval: whatever a reader combines from the release, a count from 1 to 10 must stay
# possible anywhere from 1 to 10 — the release says no more about it than that it is small.
PROTECTION = (1, THRESHOLD)
# Complement candidates tried per step (cheapest first).
_CANDIDATES = 24
_EPS = 1e-7


def protection_interval(value: int) -> tuple[int, int]:
    """The range a reader must not be able to narrow a small count below (the same for every one)."""
    del value
    return PROTECTION


class AuditCell(msgspec.Struct, kw_only=True):
    key: str
    value: int
    published: bool
    low: float
    high: float
    protected: bool


class AuditResult(msgspec.Struct, kw_only=True):
    cells: list[AuditCell]
    # The narrowest interval any small count can be narrowed to, and which.
    narrowest: AuditCell | None
    unknowns: int
    equations: int
    inequalities: int
    published: int


@dataclass
class _Cell:
    keys: list[Key]
    members: np.ndarray
    published: bool
    # What hiding it costs readers: an ordinary cell 1, a margin more, a headline number most.
    cost: float
    value: int = field(init=False)

    def __post_init__(self) -> None:
        self.value = int(self.members.sum())


class Ledger:
    """Every count of one release: its members (record indices), whether it is published, what hiding
    it would cost, and the sums the tables state. Counts of the same records are one cell."""

    def __init__(self, records: int, *, threshold: int = THRESHOLD) -> None:
        self.records = records
        self.threshold = threshold
        self._cells: list[_Cell] = []
        self._by_key: dict[Key, int] = {}
        self._by_mask: dict[bytes, int] = {}
        self._sums: list[tuple[int, tuple[int, ...]]] = []
        self._hidden: frozenset[int] | None = None

    def add(
        self, key: Key, members: Iterable[int] | np.ndarray, *, published: bool = True, cost: float = 1.0
    ) -> Key:
        """Register a count (the number of ``members``). ``published=False`` marks a count the release
        does not show but a reader could derive through the sums (protected, never fixed)."""
        if self._hidden is not None:
            raise RuntimeError("the release is already suppressed")
        if isinstance(members, np.ndarray) and members.dtype == bool:
            mask = members
        else:
            mask = np.zeros(self.records, dtype=bool)
            mask[np.fromiter(members, dtype=np.int64)] = True
        if key in self._by_key:
            raise ValueError(f"{key!r} registered twice")
        packed = np.packbits(mask).tobytes() + len(mask).to_bytes(4, "big")
        cell = self._by_mask.get(packed)
        if cell is None:
            cell = self._by_mask[packed] = len(self._cells)
            self._cells.append(_Cell([key], mask, published, cost))
        else:
            c = self._cells[cell]
            c.keys.append(key)
            c.published |= published
            c.cost = max(c.cost, cost)
        self._by_key[key] = cell
        return key

    def constrain(self, total: Key, parts: Sequence[Key]) -> None:
        """State that ``total`` is the sum of ``parts`` (checked: their sets must partition it)."""
        t = self._by_key[total]
        ps = tuple(self._by_key[p] for p in parts)
        union = np.zeros(self.records, dtype=int)
        for p in ps:
            union += self._cells[p].members
        if not np.array_equal(union, self._cells[t].members.astype(int)):
            raise ValueError(f"{parts!r} do not partition {total!r}")
        if len(set(ps)) == 1 and ps[0] == t:
            return
        self._sums.append((t, ps))

    def has(self, key: Key) -> bool:
        return key in self._by_key

    def value(self, key: Key) -> int:
        return self._cells[self._by_key[key]].value

    def shown(self, key: Key) -> Shown:
        if self._hidden is None:
            raise RuntimeError("suppress() first")
        return SUPPRESSED if self._by_key[key] in self._hidden else self.value(key)

    def visible(self, key: Key) -> bool:
        return self.shown(key) != SUPPRESSED

    @property
    def hidden(self) -> frozenset[Key]:
        if self._hidden is None:
            raise RuntimeError("suppress() first")
        return frozenset(k for i in self._hidden for k in self._cells[i].keys)

    # ----------------------------------------------------------------- the linear programme

    def _programme(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
        """Equations (sums, = 0) and inequalities (nesting, <= 0) over the cells; and their values."""
        n = len(self._cells)
        eq_rows, eq_cols, eq_vals = [], [], []
        for r, (t, ps) in enumerate(self._sums):
            coeffs: dict[int, float] = {t: -1.0}
            for p in ps:
                coeffs[p] = coeffs.get(p, 0.0) + 1.0
            for c, v in coeffs.items():
                if v:
                    eq_rows.append(r)
                    eq_cols.append(c)
                    eq_vals.append(v)
        equations = sparse.csr_matrix((eq_vals, (eq_rows, eq_cols)), shape=(len(self._sums), n))
        pairs = _direct_subsets(np.vstack([c.members for c in self._cells])) if n else []
        rows = [r for r, _ in enumerate(pairs) for _ in (0, 1)]
        cols = [c for pair in pairs for c in pair]
        vals = [1.0, -1.0] * len(pairs)
        nesting = sparse.csr_matrix((vals, (rows, cols)), shape=(len(pairs), n))
        values = np.array([c.value for c in self._cells], dtype=float)
        return equations, nesting, values

    def suppress(self) -> frozenset[Key]:
        """Hide every published small count and the complements that protect every small count."""
        equations, nesting, values = self._programme()
        published = np.array([c.published for c in self._cells], dtype=bool)
        costs = np.array([c.cost for c in self._cells])
        small = (values >= 1) & (values <= self.threshold)
        hidden = published & small
        # Biggest small counts first: they are the hardest to protect and their complements help others.
        protect = sorted(np.flatnonzero(small), key=lambda i: (-values[i], i))
        solver = _Solver(equations, nesting, values, published & ~hidden)
        for cell in protect:
            lo_req, hi_req = protection_interval(int(values[cell]))
            for _ in range(len(self._cells)):
                low, reduced = solver.bound(int(cell), minimise=True)
                if low <= lo_req + _EPS:
                    high, reduced = solver.bound(int(cell), minimise=False)
                    if high >= hi_req - _EPS:
                        break
                    side, current, wanted = False, high, float(hi_req)
                else:
                    side, current, wanted = True, low, float(lo_req)
                extra = _complement(solver, int(cell), side, current, wanted, reduced, costs)
                if extra is None:
                    break  # nothing left to hide
                hidden[extra] = True
                solver.hide(extra)
        self._hidden = frozenset(int(i) for i in np.flatnonzero(hidden))
        return self.hidden

    def audit(self, hidden_keys: Iterable[Key] | None = None) -> AuditResult:
        """For every small count (published or derivable), the range a reader can narrow it to from
        everything published, each bound solved from scratch by ``scipy.optimize.linprog``.
        ``hidden_keys`` audits another choice of hidden counts than ``suppress``'s."""
        equations, nesting, values = self._programme()
        if hidden_keys is not None:
            hidden = frozenset(self._by_key[k] for k in hidden_keys)
        else:
            hidden = self._hidden if self._hidden is not None else frozenset()
        known = [i for i, c in enumerate(self._cells) if c.published and i not in hidden]
        cells = []
        for i, c in enumerate(self._cells):
            if not 1 <= c.value <= self.threshold:
                continue
            low = _linprog_bound(equations, nesting, values, known, i, minimise=True)
            high = _linprog_bound(equations, nesting, values, known, i, minimise=False)
            lo_req, hi_req = protection_interval(c.value)
            cells.append(
                AuditCell(
                    key=" = ".join(repr(k) for k in c.keys),
                    value=c.value,
                    published=c.published and i not in hidden,
                    low=round(low, 6),
                    high=round(high, 6),
                    protected=low <= lo_req + _EPS and high >= hi_req - _EPS,
                )
            )
        narrowest = min(cells, key=lambda a: (a.high - a.low, a.key)) if cells else None
        return AuditResult(
            cells=cells,
            narrowest=narrowest,
            unknowns=len(self._cells),
            equations=equations.shape[0],
            inequalities=nesting.shape[0],
            published=len(known),
        )


def _direct_subsets(members: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (a, b) where a's set is a proper, non-empty subset of b's with nothing registered strictly
    between them (the rest of the nesting follows from these)."""
    # Float matrix products (BLAS) are exact for counts this size and far faster than integer ones.
    m = members.astype(np.float32)
    sizes = m.sum(axis=1)
    # inside[a, b]: every member of a is in b (a has no member outside b).
    inside = (m @ (1.0 - m).T) < 0.5
    np.fill_diagonal(inside, False)
    inside &= (sizes[:, None] > 0) & (sizes[:, None] < sizes[None, :])
    # a -> c -> b makes a -> b redundant.
    step = inside.astype(np.float32)
    via = (step @ step) > 0.5
    direct = inside & ~via
    return [(int(a), int(b)) for a, b in zip(*np.nonzero(direct), strict=True)]


def _complement(
    solver: _Solver,
    cell: int,
    minimise: bool,
    current: float,
    wanted: float,
    reduced: np.ndarray,
    costs: np.ndarray,
) -> int | None:
    """The published count to hide next. Candidates are the fixed counts that bind the bound (non-zero
    reduced cost), cheapest first; each is tried, and the one that moves the bound furthest towards
    the protection interval per unit of cost wins."""
    shown = np.flatnonzero(solver.fixed)
    binding = [int(i) for i in shown if abs(reduced[i]) > 1e-9] or [int(i) for i in shown]
    if not binding:
        return None
    binding.sort(key=lambda i: (costs[i], -abs(reduced[i]), solver.values[i], i))
    needed = abs(wanted - current)
    best: tuple[float, int] | None = None
    for i in binding[:_CANDIDATES]:
        solver.hide(i)
        moved, _ = solver.bound(cell, minimise=minimise)
        solver.show(i)
        gain = min(abs(moved - current), needed) / needed
        score = gain / costs[i]
        if best is None or score > best[0] + 1e-12:
            best = (score, i)
        if gain >= 1.0 - 1e-9:
            break  # candidates come cheapest first: none later can do better
    return None if best is None else best[1]


class _Solver:
    """min / max of one count over the programme, as counts are hidden one by one.

    One HiGHS model for the whole suppression: hiding a count frees its variable's bounds and each
    bound only changes the objective, so HiGHS re-solves from the previous basis. ``Ledger.audit``
    uses ``scipy.optimize.linprog`` from scratch instead, so the check does not share this code.
    """

    def __init__(
        self, equations: sparse.csr_matrix, nesting: sparse.csr_matrix, values: np.ndarray, fixed: np.ndarray
    ) -> None:
        import importlib

        import highspy

        self._hs = highspy
        # The pybind class itself where it is exposed: the Python subclass prints a banner to the
        # process's stdout (which is the service's log stream).
        core = getattr(importlib.import_module("highspy._core"), "_Highs", None)
        self.highs: Any = core() if core is not None else highspy.Highs()  # type: ignore[no-untyped-call]
        self.highs.setOptionValue("output_flag", False)
        self.values = values
        self.fixed = fixed.copy()
        n = len(values)
        matrix = sparse.vstack([equations, nesting]).tocsr()
        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, matrix.shape[0]
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_ = np.where(self.fixed, values, 0.0)
        lp.col_upper_ = np.where(self.fixed, values, inf)
        lp.row_lower_ = np.concatenate([np.zeros(equations.shape[0]), np.full(nesting.shape[0], -inf)])
        lp.row_upper_ = np.zeros(matrix.shape[0])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = matrix.data.astype(float)
        self.highs.passModel(lp)
        self._equations, self._nesting = equations, nesting
        self._cols = np.arange(n, dtype=np.int32)

    def hide(self, cell: int) -> None:
        self.fixed[cell] = False
        self.highs.changeColBounds(int(cell), 0.0, self._hs.kHighsInf)

    def show(self, cell: int) -> None:
        self.fixed[cell] = True
        self.highs.changeColBounds(int(cell), float(self.values[cell]), float(self.values[cell]))

    def bound(self, cell: int, *, minimise: bool) -> tuple[float, np.ndarray]:
        hs = self._hs
        cost = np.zeros(len(self.values))
        cost[cell] = 1.0
        self.highs.changeColsCost(len(self._cols), self._cols, cost)
        self.highs.changeObjectiveSense(hs.ObjSense.kMinimize if minimise else hs.ObjSense.kMaximize)
        self.highs.run()
        status = self.highs.getModelStatus()
        if status in (hs.HighsModelStatus.kUnbounded, hs.HighsModelStatus.kUnboundedOrInfeasible):
            return float("inf"), np.zeros(len(self.values))
        if status != hs.HighsModelStatus.kOptimal:
            # Numerical trouble: solve this one from scratch instead.
            known = [int(i) for i in np.flatnonzero(self.fixed)]
            value = _linprog_bound(
                self._equations, self._nesting, self.values, known, cell, minimise=minimise
            )
            return value, np.ones(len(self.values))
        value = float(self.highs.getInfo().objective_function_value)
        return value, np.asarray(self.highs.getSolution().col_dual)


def _linprog_bound(
    equations: sparse.csr_matrix,
    nesting: sparse.csr_matrix,
    values: np.ndarray,
    known: list[int],
    cell: int,
    *,
    minimise: bool,
) -> float:
    """One bound by ``scipy.optimize.linprog``, from scratch."""
    n = len(values)
    objective = np.zeros(n)
    objective[cell] = 1.0 if minimise else -1.0
    bounds: list[tuple[float, float | None]] = [(0.0, None)] * n
    for i in known:
        bounds[i] = (float(values[i]), float(values[i]))
    res = linprog(
        objective,
        A_ub=nesting if nesting.shape[0] else None,
        b_ub=np.zeros(nesting.shape[0]) if nesting.shape[0] else None,
        A_eq=equations if equations.shape[0] else None,
        b_eq=np.zeros(equations.shape[0]) if equations.shape[0] else None,
        bounds=bounds,
        method="highs",
    )
    if res.status == 3:  # unbounded: the count can be arbitrarily large
        return float("inf")
    if res.status != 0:
        raise RuntimeError(f"suppression audit LP failed: {res.message}")
    return float(res.fun) if minimise else -float(res.fun)


class Grid(msgspec.Struct, frozen=True):
    """A published two-way table with its margins; hidden counts read "suppressed"."""

    rows: list[str]
    columns: list[str]
    cells: list[list[Shown]]
    row_totals: list[Shown]
    column_totals: list[Shown]
    total: Shown
