"""Runs analytics/engagement.sql in DuckDB over a `kith events export --format parquet` directory
and prints the figures as one JSON object (the report's JSON names), or as aligned lines.

    python3 analytics/engagement.py export/ --community <id> --from 2026-12-07T00:00:00Z \
        --to 2026-12-14T00:00:00Z [--cohort <id>] [--silent-days 14] [--json]

Needs the duckdb package (pip install duckdb).
"""

import argparse
import datetime
import json
import pathlib
import sys

import duckdb

SQL = pathlib.Path(__file__).with_name("engagement.sql")


def instant(text):
    """An RFC 3339 time, as the report's --from and --to take it."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}")


def quote(text):
    """A SQL string literal (these statements take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=pathlib.Path, help="the Parquet export's directory")
    parser.add_argument("--community", required=True)
    parser.add_argument("--cohort")
    parser.add_argument("--from", dest="start", required=True, type=instant)
    parser.add_argument("--to", dest="end", required=True, type=instant)
    parser.add_argument("--silent-days", type=int, default=14)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    if args.start >= args.end:
        parser.error("--from must be before --to")
    files = sorted(args.export.glob("*/*.parquet"))
    if not files:
        parser.error(f"{args.export}: no day=*/events.parquet files (kith events export --format parquet -o DIR)")

    con = duckdb.connect()
    paths = ", ".join(quote(str(f)) for f in files)
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet([{paths}], hive_partitioning = true)")
    con.execute(f"SET VARIABLE community = {quote(args.community)}")
    con.execute(f"SET VARIABLE period_from = CAST({quote(args.start.isoformat())} AS TIMESTAMPTZ)")
    con.execute(f"SET VARIABLE period_to = CAST({quote(args.end.isoformat())} AS TIMESTAMPTZ)")
    con.execute(f"SET VARIABLE silent_days = {int(args.silent_days)}")
    if args.cohort:
        con.execute(f"SET VARIABLE cohort = {quote(args.cohort)}")
    cursor = con.execute(SQL.read_text())
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone()))
    if args.json:
        print(json.dumps(row, default=str))
    else:
        width = max(map(len, names))
        for name, value in row.items():
            print(f"{name:<{width}}  {json.dumps(value, default=str, ensure_ascii=False)}")


if __name__ == "__main__":
    sys.exit(main())
