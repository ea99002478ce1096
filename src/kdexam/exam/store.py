"""``results.sqlite``: one row per exam cell, written as each cell starts and finishes.

A row's ``status`` is ``running`` from the moment its cell starts, then ``done`` (with the
cell's result as JSON) or ``failed`` (with the error). Rows are committed one at a time, so
an exam killed at any point keeps every finished cell; a ``running`` row left by a killed
exam is redone on the next run. Standard-library :mod:`sqlite3`, no pickle: results are JSON.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from kdexam.errors import KdexamError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,          -- teacher | student | control
    dataset TEXT, teacher TEXT, student TEXT, kind TEXT, recipe TEXT, transfer TEXT, seed INTEGER,
    run_dir TEXT,
    status TEXT NOT NULL,        -- running | done | failed
    result TEXT,                 -- JSON: the cell's row (see kdexam.exam.runner.cell_row)
    error TEXT,
    seconds REAL,
    started TEXT, finished TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
COLUMNS = ("id", "role", "dataset", "teacher", "student", "kind", "recipe", "transfer", "seed", "run_dir", "status",
           "result", "error", "seconds", "started", "finished")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """The exam's results database (``DIR/results.sqlite``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        try:
            self.db.executescript(SCHEMA)
            self.db.commit()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise KdexamError(f"'{self.path}' is not a readable exam database ({e}); restore it, or run the exam into "
                              "another folder.") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # --- cells ---------------------------------------------------------------------------------

    def status(self, cell_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM cells WHERE id = ?", (cell_id,)).fetchone()
        return row[0] if row else None

    def start(self, cell_id: str, role: str, run_dir: str, **keys: Any) -> None:
        """Mark a cell ``running`` (replacing a failed or interrupted attempt)."""
        fields = {"dataset": None, "teacher": None, "student": None, "kind": None, "recipe": None, "transfer": None,
                  "seed": None, **keys}
        self.db.execute(
            "INSERT OR REPLACE INTO cells (id, role, dataset, teacher, student, kind, recipe, transfer, seed, run_dir, "
            "status, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
            (cell_id, role, fields["dataset"], fields["teacher"], fields["student"], fields["kind"], fields["recipe"],
             fields["transfer"], fields["seed"], run_dir, _now()))
        self.db.commit()

    def finish(self, cell_id: str, result: dict, seconds: float) -> None:
        self.db.execute("UPDATE cells SET status = 'done', result = ?, error = NULL, seconds = ?, finished = ? WHERE id = ?",
                        (json.dumps(result, sort_keys=True), seconds, _now(), cell_id))
        self.db.commit()

    def fail(self, cell_id: str, error: str, seconds: float) -> None:
        self.db.execute("UPDATE cells SET status = 'failed', error = ?, seconds = ?, finished = ? WHERE id = ?",
                        (error, seconds, _now(), cell_id))
        self.db.commit()

    def rows(self, ids: list[str] | None = None) -> list[dict]:
        """Every cell's row (``result`` parsed), in insertion order; only ``ids`` when given."""
        out = []
        for values in self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM cells ORDER BY rowid"):
            row = dict(zip(COLUMNS, values))
            if ids is not None and row["id"] not in ids:
                continue
            row["result"] = json.loads(row["result"]) if row["result"] else None
            out.append(row)
        return out

    # --- exam-level facts (config, environment) -----------------------------------------------

    def put(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))
        self.db.commit()

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default
