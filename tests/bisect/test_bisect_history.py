"""The history keeps a bisection's three-valued conclusion, and a history from before it still opens."""

from __future__ import annotations

from pathlib import Path

from fleet.history.store import BisectionRecord, HistoryStore


def record(conclusion: str, bisection_id: str = "bisect-1") -> BisectionRecord:
    return BisectionRecord(bisection_id=bisection_id, cell_id="c", metric="tpot_p50_ms", good_commit="a" * 40,
                           bad_commit="b" * 40, status="unresolved", first_commit=None, last_commit=None,
                           verified=False, reason="no answer within 40 rounds", conclusion=conclusion)


def test_a_bisections_conclusion_is_recorded_and_read_back(tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path / "history.sqlite") as store:
        store.record_bisection(record("undecided within budget"))
        [row] = store.bisections()
    assert row["conclusion"] == "undecided within budget" and row["status"] == "unresolved"


def test_a_history_from_before_conclusions_migrates_and_keeps_its_bisections(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with HistoryStore.open(path, migrate_to=2) as old:
        old._db.execute(
            "INSERT INTO bisections (bisection_id, cell_id, metric, good_commit, bad_commit, status, "
            "verified, reason, recorded_at) VALUES ('old', 'c', 'm', 'a', 'b', 'no-regression', 0, 'r', "
            "'2026-12-01')")
    with HistoryStore.open(path) as store:
        store.record_bisection(record("regression verified", "new"))
        rows = {row["bisection_id"]: row for row in store.bisections()}
    assert rows["old"]["conclusion"] is None and rows["new"]["conclusion"] == "regression verified"
