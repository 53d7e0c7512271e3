"""Suppression across a whole release: every count of every table, checked together by linear programming.

A release (the report's JSON, its HTML and its CSV tables, which all show the same numbers) publishes
many counts of the same youth: by region, by status, by variable, at risk over time. Each count is the
size of a set of records, so a reader who combines the published counts knows linear equations over
the numbers of records in every combination of cells ("atoms"). For a hidden count, the smallest and
largest values those equations allow (with every atom non-negative) are what the reader can narrow it
to: ``scipy.optimize.linprog`` computes both. Suppression hides every count from 1 to the threshold,
then hides further published counts (complements) until no small count, hidden or never published but
derivable (e.g. "not re-arrested" = followed up - re-arrested), can be narrowed below its protection
interval. The audit (``audit``) repeats the computation independently of how the hiding was chosen.

Hiding a published count only removes an equation, so a protected cell stays protected: one pass over
the small cells suffices.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import msgspec
import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import linprog  # type: ignore[import-untyped]

from services.intake.evaluation.suppression import SUPPRESSED, THRESHOLD, Shown

__all__ = ["PROTECTION", "AuditCell", "AuditResult", "Ledger", "protection_interval"]

Key = Hashable

# The protection interval: whatever a reader combines from the release, a count from 1 to 10 must stay
# possible anywhere from 1 to 10 — the release says no more about it than that it is small.
PROTECTION = (1, THRESHOLD)
# Complement candidates tried per step.
_CANDIDATES = 8


def protection_interval(value: int) -> tuple[int, int]:
    """The range a reader must not be able to narrow a small count below."""
    import os
    if os.environ.get("PROT") == "5":
        return max(0, value - 5), value + 5
    del value  # the same for every small count: the whole band
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
    variables: int
    equations: int


@dataclass
class _Cell:
    key: Key
    members: np.ndarray
    published: bool


class Ledger:
    """Every count of one release: its members (record indices) and whether it is published."""

    def __init__(self, records: int, *, threshold: int = THRESHOLD) -> None:
        self.records = records
        self.threshold = threshold
        self._cells: dict[Key, _Cell] = {}
        self._hidden: frozenset[Key] | None = None

    def add(self, key: Key, members: Iterable[int] | np.ndarray, *, published: bool = True) -> Key:
        """Register a count (the number of ``members``). ``published=False`` marks a count the release
        does not show but a reader could derive (it is protected, never used as known)."""
        if self._hidden is not None:
            raise RuntimeError("the release is already suppressed")
        if isinstance(members, np.ndarray) and members.dtype == bool:
            mask = members
        else:
            mask = np.zeros(self.records, dtype=bool)
            idx = np.fromiter(members, dtype=np.int64)
            mask[idx] = True
        if key in self._cells:
            if not np.array_equal(self._cells[key].members, mask):
                raise ValueError(f"{key!r} registered twice with different members")
            self._cells[key].published |= published
            return key
        self._cells[key] = _Cell(key, mask, published)
        return key

    def value(self, key: Key) -> int:
        return int(self._cells[key].members.sum())

    def is_small(self, key: Key) -> bool:
        return 1 <= self.value(key) <= self.threshold

    def shown(self, key: Key) -> Shown:
        if self._hidden is None:
            raise RuntimeError("suppress() first")
        return SUPPRESSED if key in self._hidden else self.value(key)

    def visible(self, key: Key) -> bool:
        return self.shown(key) != SUPPRESSED

    @property
    def hidden(self) -> frozenset[Key]:
        if self._hidden is None:
            raise RuntimeError("suppress() first")
        return self._hidden

    # ----------------------------------------------------------------- the linear programme

    def _system(self) -> tuple[list[Key], np.ndarray, np.ndarray]:
        """Cells as rows over atoms (records with the same membership everywhere), and atom sizes."""
        keys = list(self._cells)
        if not keys or self.records == 0:
            return keys, np.zeros((len(keys), 0), dtype=bool), np.zeros(0)
        matrix = np.vstack([self._cells[k].members for k in keys])
        atoms, counts = np.unique(matrix.T, axis=0, return_counts=True)
        return keys, atoms.T, counts.astype(float)

    def suppress(self) -> frozenset[Key]:
        """Hide every published small count and the complements that protect every small count."""
        keys, rows, sizes = self._system()
        values = rows.astype(float) @ sizes if rows.size else np.zeros(len(keys))
        published = np.array([self._cells[k].published for k in keys], dtype=bool)
        small = (values >= 1) & (values <= self.threshold)
        hidden = published & small
        # Biggest small counts first: they are the hardest to protect and their complements help others.
        protect = sorted(np.flatnonzero(small), key=lambda i: -values[i])
        solver = _Solver(rows, sizes, list(np.flatnonzero(published & ~hidden)))
        for cell in protect:
            lo_req, hi_req = protection_interval(int(values[cell]))
            for _ in range(len(keys)):
                low, duals = solver.bound(cell, minimise=True)
                if low <= lo_req + 1e-7:
                    high, duals = solver.bound(cell, minimise=False)
                    if high >= hi_req - 1e-7:
                        break
                    side, current, wanted = False, high, float(hi_req)
                else:
                    side, current, wanted = True, low, float(lo_req)
                extra = self._complement(solver, cell, side, current, wanted, duals, values, published & ~hidden)
                if extra is None:
                    break  # nothing left to hide
                hidden[extra] = True
                solver.hide(extra)
        self._hidden = frozenset(k for k, h in zip(keys, hidden, strict=True) if h)
        return self._hidden

    def _complement(
        self,
        solver: _Solver,
        cell: int,
        minimise: bool,
        current: float,
        wanted: float,
        duals: np.ndarray,
        values: np.ndarray,
        shown: np.ndarray,
    ) -> int | None:
        """The published count to hide next. Candidates are the counts whose equation binds the bound
        (non-zero dual); each is tried, and the one that moves the bound furthest towards the
        protection interval wins, per unit of cost (one more hidden count, a little more for a big
        one, which more readers would miss); ties go to the smaller count."""
        binding = [i for i in np.flatnonzero(shown) if abs(duals[i]) > 1e-9]
        if not binding:
            binding = list(np.flatnonzero(shown))
        if not binding:
            return None
        # Try the strongest constraints first; a handful is enough to find a good one.
        binding.sort(key=lambda i: (-abs(duals[i]), values[i]))
        needed = abs(wanted - current)
        total = max(1.0, float(values.max()))
        best: tuple[float, float, int] | None = None
        for i in binding[:_CANDIDATES]:
            solver.hide(i)
            moved, _ = solver.bound(cell, minimise=minimise)
            solver.show(i)
            gain = min(abs(moved - current), needed) / needed
            score = gain / (1.0 + values[i] / total)
            if best is None or (score, -values[i]) > (best[0], -best[1]):
                best = (score, values[i], i)
            if gain >= 1.0 and values[i] <= self.threshold * 3:
                break
        return None if best is None else best[2]

    def audit(self) -> AuditResult:
        """For every small count (published or derivable), the range a reader can narrow it to from
        everything published, by linear programming; independent of how suppression chose its cells."""
        keys, rows, sizes = self._system()
        values = rows.astype(float) @ sizes if rows.size else np.zeros(len(keys))
        hidden = self.hidden
        known = [i for i, k in enumerate(keys) if self._cells[k].published and k not in hidden]
        matrix = sparse.csr_matrix(rows.astype(float))
        cells = []
        for i, key in enumerate(keys):
            v = int(values[i])
            if not 1 <= v <= self.threshold:
                continue
            low = _linprog_bound(matrix, values, i, known, minimise=True)
            high = _linprog_bound(matrix, values, i, known, minimise=False)
            lo_req, hi_req = protection_interval(v)
            cells.append(
                AuditCell(
                    key=repr(key),
                    value=v,
                    published=self._cells[key].published,
                    low=round(low, 6),
                    high=round(high, 6),
                    protected=low <= lo_req + 1e-7 and high >= hi_req - 1e-7,
                )
            )
        narrowest = min(cells, key=lambda c: (c.high - c.low, c.key)) if cells else None
        return AuditResult(cells=cells, narrowest=narrowest, variables=len(sizes), equations=len(known))


class _Solver:
    """min / max of one cell's count subject to the published counts, atoms >= 0.

    One HiGHS model for the whole suppression: every cell is a row, a published row is fixed to its
    value and an unpublished one is free, and each bound only changes the objective (or frees a row),
    so HiGHS re-solves from the previous basis. ``audit`` uses ``scipy.optimize.linprog`` instead, from
    scratch, so the check does not share this code.
    """

    def __init__(self, rows: np.ndarray, sizes: np.ndarray, known: list[int]) -> None:
        import highspy  # type: ignore[import-untyped]

        self._hs = highspy
        # The pybind class itself: the Python subclass prints a banner to the process's stdout.
        self.highs = highspy._Highs()
        self.highs.setOptionValue("output_flag", False)
        # Presolve would rebuild the problem on every solve and lose the warm start.
        self.highs.setOptionValue("presolve", "off")
        matrix = sparse.csr_matrix(rows.astype(float))
        self.rows = matrix
        self.values = matrix @ sizes
        n_rows, n_cols = matrix.shape
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n_cols, n_rows
        lp.col_cost_ = np.zeros(n_cols)
        lp.col_lower_ = np.zeros(n_cols)
        lp.col_upper_ = np.full(n_cols, highspy.kHighsInf)
        known_set = set(known)
        lp.row_lower_ = np.array(
            [self.values[i] if i in known_set else -highspy.kHighsInf for i in range(n_rows)]
        )
        lp.row_upper_ = np.array(
            [self.values[i] if i in known_set else highspy.kHighsInf for i in range(n_rows)]
        )
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = matrix.data
        self.highs.passModel(lp)
        self.cols = np.arange(n_cols, dtype=np.int32)

    def hide(self, row: int) -> None:
        self.highs.changeRowBounds(int(row), -self._hs.kHighsInf, self._hs.kHighsInf)

    def show(self, row: int) -> None:
        self.highs.changeRowBounds(int(row), float(self.values[row]), float(self.values[row]))

    def bound(self, cell: int, *, minimise: bool) -> tuple[float, np.ndarray]:
        hs = self._hs
        cost = self.rows[cell].toarray().ravel()
        self.highs.changeColsCost(len(self.cols), self.cols, cost)
        self.highs.changeObjectiveSense(hs.ObjSense.kMinimize if minimise else hs.ObjSense.kMaximize)
        self.highs.run()
        status = self.highs.getModelStatus()
        if status in (hs.HighsModelStatus.kUnbounded, hs.HighsModelStatus.kUnboundedOrInfeasible):
            return float("inf"), np.zeros(self.rows.shape[0])
        if status != hs.HighsModelStatus.kOptimal:
            raise RuntimeError(f"suppression LP failed: {status}")
        value = float(self.highs.getInfo().objective_function_value)
        return value, np.asarray(self.highs.getSolution().row_dual)


def _linprog_bound(
    rows: sparse.csr_matrix, values: np.ndarray, cell: int, known: list[int], *, minimise: bool
) -> float:
    """The same bound by scipy.optimize.linprog, from scratch (for the audit)."""
    objective = rows[cell].toarray().ravel()
    if not minimise:
        objective = -objective
    if not known:
        return 0.0 if minimise else float("inf")
    res = linprog(objective, A_eq=rows[known], b_eq=values[known], bounds=(0, None), method="highs")
    if res.status == 3:
        return float("inf")
    if res.status != 0:
        raise RuntimeError(f"audit LP failed: {res.message}")
    return float(res.fun) if minimise else -float(res.fun)
