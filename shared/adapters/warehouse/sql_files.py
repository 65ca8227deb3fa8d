"""Loading SQL files from ``sql/`` and splitting them into statements.

``sql/`` holds T-SQL only. A file is referenced by its path without extension, e.g.
``"analytics/company_daily_activity__build"``. Parameters are written ``@name`` (T-SQL
variable syntax, so ``sqlfluff --dialect tsql`` parses the files); files never DECLARE
variables, so every ``@name`` is a bound parameter.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import ErrorLevel, exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.tokens import TokenType

SQL_ROOT = Path(__file__).resolve().parents[3] / "sql"
_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")


@dataclass(frozen=True)
class Statement:
    """One T-SQL statement of a file, as written, with the parameters it references in order."""

    sql_file: str
    index: int
    text: str
    parameters: tuple[str, ...]  # in order of appearance, repeats kept (for positional binding)

    @property
    def parameter_names(self) -> frozenset[str]:
        return frozenset(self.parameters)


def sql_path(name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"not a SQL file name: {name!r}")
    path = SQL_ROOT / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {name}.sql under {SQL_ROOT}")
    return path


@functools.cache
def load_statements(name: str) -> tuple[Statement, ...]:
    """The statements of ``sql/<name>.sql`` (cached: files do not change while a process runs)."""
    return split_statements(sql_path(name).read_text(encoding="utf-8"), name)


def split_statements(script: str, sql_file: str = "<inline>") -> tuple[Statement, ...]:
    """Split a T-SQL script at top-level semicolons, keeping each statement's original text.

    The tokenizer (not a regex) finds the semicolons, so those inside strings and comments
    do not split. A statement with no tokens (only comments) is dropped.
    """
    tokens = TSQL().tokenize(script)
    statements: list[Statement] = []
    start_token = 0
    for i, token in enumerate([*tokens, None]):
        if token is not None and token.token_type != TokenType.SEMICOLON:
            continue
        chunk = tokens[start_token:i]
        start_token = i + 1
        if not chunk:
            continue
        text = script[chunk[0].start : chunk[-1].end + 1]
        params = tuple(
            chunk[j + 1].text
            for j, tok in enumerate(chunk[:-1])
            if tok.token_type == TokenType.PARAMETER and chunk[j + 1].start == tok.end + 1
        )
        statements.append(Statement(sql_file, len(statements) + 1, text, params))
    return tuple(statements)


@functools.lru_cache(maxsize=256)
def merge_as_insert(statement: Statement) -> Statement:
    """A MERGE as the INSERT of its ``WHEN NOT MATCHED`` branch, for a caller that knows the
    target holds none of the source's keys: then the MERGE would only insert, and the INSERT
    does the same without joining the target or evaluating a WHEN MATCHED branch (DuckDB: a
    one-day build's SQL ~25 % faster). The MERGE's CTEs are kept as written (the text before
    MERGE); only the INSERT of the branch's columns and values from the MERGE's source is
    generated. Any other statement is returned as it is."""
    tree = sqlglot.parse_one(statement.text, read="tsql", error_level=ErrorLevel.RAISE)
    if not isinstance(tree, exp.Merge):
        return statement
    whens = tree.args["whens"].expressions
    inserts = [when.args["then"] for when in whens if not when.args.get("matched") and not when.args.get("source")]
    if len(inserts) != 1 or not isinstance(inserts[0], exp.Insert):
        raise ValueError(f"{statement.sql_file}: statement {statement.index}: no single WHEN NOT MATCHED INSERT")
    if any(when.args.get("source") for when in whens):  # it acts on target rows the source lacks
        raise ValueError(f"{statement.sql_file}: statement {statement.index}: has WHEN NOT MATCHED BY SOURCE")
    target = tree.this.copy()
    target.set("alias", None)
    select = exp.select(*inserts[0].expression.expressions).from_(tree.args["using"].copy())
    insert = exp.insert(select, target, columns=[column.name for column in inserts[0].this.expressions])
    merge_start = next(t.start for t in TSQL().tokenize(statement.text) if t.token_type == TokenType.MERGE)
    text = statement.text[:merge_start] + insert.sql(dialect="tsql", pretty=True)
    (derived,) = split_statements(text, statement.sql_file)
    return Statement(statement.sql_file, statement.index, derived.text, derived.parameters)


def list_sql_files() -> list[str]:
    """Every SQL file name under sql/ (for tests that parse and translate them all)."""
    return sorted(str(p.relative_to(SQL_ROOT).with_suffix("")) for p in SQL_ROOT.rglob("*.sql"))


def migrations(root: Path = SQL_ROOT) -> list[tuple[int, str]]:
    """Ordered (version, file name) pairs of ``sql/schema/NNNN_name.sql``."""
    found = []
    for path in sorted((root / "schema").glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        found.append((version, f"schema/{path.stem}"))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number under sql/schema")
    return found


@functools.lru_cache(maxsize=4096)
def to_positional(statement: Statement) -> tuple[str, tuple[str, ...]]:
    """The statement's original T-SQL with each ``@name`` replaced by ``?``, and the names in marker order.

    For drivers that bind positionally (ODBC). Token positions, not a regex, find the markers,
    so ``@x`` inside strings, comments and [bracketed] identifiers stays as written; ``@@NAME``
    system functions are not parameters and stay too. A name used twice gives two markers.
    """
    text = statement.text
    tokens = TSQL().tokenize(text)
    pieces: list[str] = []
    names: list[str] = []
    copied_up_to = 0
    for j, token in enumerate(tokens[:-1]):
        name_token = tokens[j + 1]
        is_marker = token.token_type == TokenType.PARAMETER and name_token.start == token.end + 1
        is_system = name_token.token_type == TokenType.PARAMETER or (
            j > 0 and tokens[j - 1].token_type == TokenType.PARAMETER and tokens[j - 1].end + 1 == token.start
        )
        if not is_marker or is_system:
            continue
        pieces.append(text[copied_up_to : token.start])
        pieces.append("?")
        names.append(name_token.text)
        copied_up_to = name_token.end + 1
    pieces.append(text[copied_up_to:])
    return "".join(pieces), tuple(names)
