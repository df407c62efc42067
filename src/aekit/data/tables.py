"""Tables as data: .csv/.tsv and .parquet files, and 2-D arrays (N rows, F numeric columns).

A table becomes LoadedData of shape (N, F, 1, 1): each column is a channel of a 1x1 image, so the
per-channel normaliser standardises each column (mean and std of the training rows) and the rest
of aekit (split, PCA, training, encode, evaluate) works unchanged. Tables train the `mlp` model.

Policy:
- Features: the columns named by `columns`, in that order; by default every numeric column
  except the identifier. A CSV column is numeric when every non-empty cell parses as a number
  (empty, NA, N/A, NaN, null and None cells count as missing); a Parquet column when its type is
  integer, floating, decimal or boolean. Non-numeric columns not selected are skipped with a note.
- Identifier: `id_column`; else a column named `id` or `*_id` (any case), or an unnamed first
  column (a pandas index); else the first non-numeric column whose values are all different;
  else the row number (0, 1, ...). The identifier column is never a feature unless selected.
- Missing, NaN and Inf values in a feature column are an error naming the file, the column and
  the number of rows: drop or fill them first (aekit never guesses values).
- CSV: UTF-8 text, the first row is the header; the delimiter is the one of comma, semicolon,
  tab and pipe that the header holds most often (tab for .tsv). The file is read into memory
  (use Parquet for very large tables). Values are stored as float32.
- Readers: pyarrow.csv when pyarrow is installed (about 10x faster and 37% of the peak memory
  on 300k x 20, BENCHMARKS.md), else the stdlib csv module. Both give the same columns, values,
  identifiers and errors: pyarrow's typed columns are taken only when its types are exactly what
  the policy above says (integer or float; any other type is read again as text and judged by
  the stdlib rule), and a file pyarrow refuses or reads differently (ragged rows, bad UTF-8,
  duplicate names, no rows) goes to the stdlib reader, which says what is wrong.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aekit.core.errors import AekitError
from aekit.data.base import LoadedData, check_magnitude

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
MISSING = ("", "na", "n/a", "nan", "null", "none", "-nan")
DELIMITERS = ",;\t|"


@dataclass
class Column:
    """One column as read: float64 values when numeric (None otherwise) and its cells as text."""

    name: str
    values: np.ndarray | None
    cells: Callable[[], Sequence[str]]
    example: str = ""  # a cell that is not a number (non-numeric columns)


def read_table_file(
    path: Path, *, columns: Sequence[str] | None = None, id_column: str | None = None, prefer_id: str | None = None
) -> LoadedData:
    """A .csv/.tsv/.parquet table as LoadedData (N, F, 1, 1); see the module's policy."""
    if not path.is_file():
        raise AekitError(f"data file not found: {path}; pass an existing .csv, .tsv or .parquet file")
    read = read_parquet if path.suffix.lower() == ".parquet" else read_csv
    cols = read(path)
    return table_data(
        cols, source=str(path.resolve()), columns=columns, id_column=id_column, prefer_id=prefer_id, name=path.name
    )


def read_csv(path: Path) -> list[Column]:
    """The CSV's columns: through pyarrow.csv when it is installed and takes the file, else the stdlib."""
    cols = _read_csv_arrow(path)
    return cols if cols is not None else read_csv_stdlib(path)


def read_csv_stdlib(path: Path) -> list[Column]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first_line = f.readline()
            f.seek(0)
            delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(first_line)
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            rows = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(header):
                    raise AekitError(
                        f"{path.name}: line {reader.line_num} has {len(row)} field(s), the header has "
                        f"{len(header)}; fix the file (quote fields that contain '{delimiter}')"
                    )
                rows.append(row)
    except UnicodeDecodeError:
        raise AekitError(f"{path} is not UTF-8 text; save the table as UTF-8 CSV or as Parquet") from None
    except csv.Error as e:
        raise AekitError(f"{path} is not a readable CSV file ({e}); fix the file or save it as Parquet") from None
    except OSError as e:
        raise AekitError(f"cannot read {path}: {e.strerror}") from None
    if header is None:
        raise AekitError(f"{path} is empty; pass a table with a header row and one row per item")
    by_column = list(zip(*rows)) if rows else [()] * len(header)
    del rows
    return [_text_column(name.strip(), np.char.strip(np.array(col, dtype=str))) for name, col in zip(header, by_column)]


def _missing_spellings() -> list[str]:
    """Every upper/lower-case spelling of the MISSING cells (pyarrow matches null values exactly)."""
    out = set()
    for word in MISSING:
        for cases in itertools.product(*[(c.lower(), c.upper()) for c in word]):
            out.add("".join(cases))
    return sorted(out)


def _read_csv_arrow(path: Path) -> list[Column] | None:
    """The columns as the stdlib reader gives them, read by pyarrow.csv; None when pyarrow is not
    installed or the file needs the stdlib reader (which then reads it, or says what is wrong)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first_line = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _delimiter(first_line)
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)  # as csv.reader: quoted newlines

    def read(**convert) -> pa.Table:
        options = pcsv.ConvertOptions(null_values=_missing_spellings(), strings_can_be_null=False, **convert)
        return pcsv.read_csv(path, parse_options=parse, convert_options=options)

    try:
        table = read()
        names = table.column_names
        if table.num_rows == 0 or len(set(names)) != len(names) or len(names) == 1:
            return None  # the stdlib reader's errors; one column: it skips lines of spaces, pyarrow reads them
        numeric = {n for n, t in zip(names, table.schema.types) if pa.types.is_integer(t) or pa.types.is_floating(t)}
        other = [n for n, t in zip(names, table.schema.types) if n not in numeric and not pa.types.is_string(t)]
        if any(pa.types.is_binary(t) for t in table.schema.types):
            return None  # not UTF-8
        if other:  # bool, dates, all-missing, ...: their text, judged as the stdlib reader judges it
            again = read(column_types={n: pa.string() for n in other}, include_columns=other)
            table = pa.table({n: again.column(n) if n in other else table.column(n) for n in names})
    except (pa.ArrowException, OSError):
        return None

    def text_of(name: str) -> Callable[[], list[str]]:  # a numeric column's cells as written (ids)
        def cells() -> list[str]:
            col = read(column_types={name: pa.string()}, include_columns=[name]).column(name)
            return np.char.strip(np.array(col.to_pylist(), dtype=str)).tolist()

        return cells

    cols = []
    for name in names:
        col = table.column(name)
        if name in numeric:
            values = col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)  # nulls: NaN; ints round
            cols.append(Column(name.strip(), np.asarray(values, np.float64), text_of(name)))
        else:
            cols.append(_text_column(name.strip(), np.char.strip(np.array(col.to_pylist(), dtype=str))))
        del col
    return cols


def _delimiter(header_line: str) -> str:
    """The one of , ; tab | that the header line holds most often (comma when none)."""
    best = max(DELIMITERS, key=header_line.count)
    return best if header_line.count(best) else ","


def _text_column(name: str, cells: np.ndarray) -> Column:
    """Numeric when every non-missing cell is a number (and at least one is)."""
    missing = np.isin(np.char.lower(cells), MISSING)
    try:
        if missing.all():
            raise ValueError
        values = np.where(missing, "nan", cells).astype(np.float64)
        return Column(name, values, lambda: cells.tolist())
    except ValueError:
        bad = next((c for c in cells.tolist() if c.lower() not in MISSING and not _is_number(c)), "")
        return Column(name, None, lambda: cells.tolist(), example=bad)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_parquet(path: Path) -> list[Column]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise AekitError(
            "reading .parquet needs pyarrow: pip install 'aekit[parquet]', or save the table as CSV"
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise AekitError(f"cannot read {path} as Parquet: {_first_line(e)}") from None
    out = []
    for name, col in zip(table.column_names, table.columns):
        t = col.type

        def cells(col=col) -> list[str]:
            return ["" if v is None else str(v) for v in col.to_pylist()]

        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t):
            values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
            out.append(Column(str(name), np.asarray(values, np.float64), cells))
        else:
            first = next((v for v in col.to_pylist() if v is not None), "")
            out.append(Column(str(name), None, cells, example=f"{first} ({t})"))
    return out


def _first_line(error: Exception) -> str:
    """An exception's message on one line (pyarrow's run over several)."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def from_table_array(
    arr: np.ndarray, *, source: str, columns: Sequence[str] | None = None, id_column: str | None = None
) -> LoadedData:
    """A 2-D array (N rows, F columns) as a table; columns are named by their index "0", "1", ...
    When `columns` names F columns that are not indices (a model trained on a CSV file, encoding
    an array), the array's columns are taken in that order."""
    if id_column is not None:
        raise AekitError(f"{source} is an array: it has no id column; rows are identified by their number")
    if arr.shape[1] == 0:
        raise AekitError(f"{source} has no columns; pass an array of shape (rows, columns)")
    if arr.dtype.kind not in "biuf":
        raise AekitError(f"{source}: a table needs numbers, got {arr.dtype}; convert it to float32")
    names = [str(j) for j in range(arr.shape[1])]
    if columns is not None and len(columns) == len(names) and not set(columns) <= set(names):
        names = list(columns)  # positional: the array has no names of its own
    cols = [Column(n, arr[:, j].astype(np.float64), lambda: []) for j, n in enumerate(names)]
    return table_data(cols, source=source, columns=columns, id_column=None, prefer_id=None, name=source, by_index=True)


def is_id_name(name: str) -> bool:
    low = name.strip().lower()
    return low in ("id", "") or low.endswith("_id") or low.endswith(" id")


def table_data(
    cols: list[Column],
    *,
    source: str,
    columns: Sequence[str] | None,
    id_column: str | None,
    prefer_id: str | None,
    name: str,
    by_index: bool = False,
) -> LoadedData:
    """Choose the identifier and the feature columns, check the values, and build LoadedData."""
    names = [c.name for c in cols]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AekitError(f"{name}: column name(s) {', '.join(map(repr, dupes))} appear more than once; rename them")
    by_name = {c.name: c for c in cols}
    n_rows = len(cols[0].values) if cols and cols[0].values is not None else len(cols[0].cells()) if cols else 0
    if n_rows == 0:
        raise AekitError(f"{name} holds no rows; pass a table with a header row and one row per item")
    chosen = list(columns) if columns else None
    for c in chosen or []:
        if c not in by_name:
            listing = f"numbered 0 to {len(cols) - 1}" if by_index else _short(names, 30)
            raise AekitError(f"{name} has no column {c!r} (asked for {_short(chosen)}); its columns: {listing}")
    if id_column is not None and id_column not in by_name:
        raise AekitError(f"{name} has no column {id_column!r} for --id-column; columns: {', '.join(names[:30])}")

    ident = id_column or (prefer_id if prefer_id in by_name else None) or _auto_id(cols, chosen)
    if chosen is None:
        chosen = [c.name for c in cols if c.values is not None and c.name != ident]
    for c in chosen:
        col = by_name[c]
        if col.values is None:
            raise AekitError(
                f"{name}: column {c!r} is not numeric (e.g. {col.example!r}); convert it to numbers "
                "(e.g. one 0/1 column per category) or leave it out of --columns"
            )
    if not chosen:
        raise AekitError(f"{name} has no numeric column to train on; columns: {', '.join(names[:30])}")

    x = np.stack([by_name[c].values for c in chosen], axis=1)  # (N, F) float64
    bad = ~np.isfinite(x)
    if bad.any():
        counts = [(c, int(k)) for c, k in zip(chosen, bad.sum(0)) if k]
        where = ", ".join(f"{c!r} ({k} row{'s' * (k > 1)})" for c, k in counts[:5])
        more = f" and {len(counts) - 5} more column(s)" if len(counts) > 5 else ""
        raise AekitError(
            f"{name}: missing, NaN or Inf values in column {where}{more}, {int(bad.any(1).sum())} of {n_rows} "
            "rows in all; drop or fill them, or leave those columns out with --columns"
        )
    check_magnitude(x, name, limit=float(np.finfo(np.float32).max))  # values are used as float32
    notes = [f"table: {n_rows} rows, {len(chosen)} numeric column(s) used: {_short(chosen)}"]

    skipped = [c.name for c in cols if c.name not in chosen and c.name != ident]
    if skipped:
        kinds = ["non-numeric" if by_name[c].values is None else "numeric, not selected" for c in skipped]
        notes.append("skipped column(s): " + _short([f"{c} ({k})" for c, k in zip(skipped, kinds)]))
    if ident is not None:
        ids = list(by_name[ident].cells())
        notes.append(f"rows identified by column {ident!r}" + ("" if len(set(ids)) == len(ids) else " (not unique)"))
    else:
        ids = [str(i) for i in range(n_rows)]
        notes.append("rows identified by their number (0, 1, ...); pass --id-column to name a column")
    array = np.ascontiguousarray(x.astype(np.float32)[:, :, None, None])  # (N, F, 1, 1)
    return LoadedData(
        array=array,
        ids=ids,
        scale=1.0,
        source=source,
        n_found=n_rows,
        notes=notes,
        columns=chosen,
        id_name=ident,
    )


def _auto_id(cols: list[Column], chosen: list[str] | None) -> str | None:
    free = [c for c in cols if chosen is None or c.name not in chosen]
    named = next((c.name for c in free if is_id_name(c.name)), None)
    if named is not None:
        return named
    for c in free:
        if c.values is None:
            cells = c.cells()
            if len(set(cells)) == len(cells):
                return c.name
    return None


def _short(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")
