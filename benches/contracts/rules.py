"""The 20 rules of events.odcs.yaml, restated once for the Python tools, and their common output.

Each checker (ge_check.py, pandera_check.py, duckdb_check.py) implements every id in RULES
with the meaning nightjar gives it (src/contracts/mod.rs), prints one line

    BENCH name=contracts_<tool> seconds=<read + check> rows=<n> ...

and writes `{"tool", "seconds", "rows", "rules": {id: {"passed", "observed"}}}` as JSON to the
path given with --out (or to stdout after the BENCH line without it). `observed` is what that
tool itself reports (e.g. Great Expectations counts every row of a duplicated value, nightjar
and DuckDB only the rows beyond the first); the verdicts must agree, compare.py checks that.
"""
import datetime as dt
import json
import sys

# In the contract's order (nightjar's own `events.schema` drift check comes first in its report
# and is not one of the 20).
RULES = [
    "events.event_id.required",
    "events.event_id.unique",
    "events.customer_id.required",
    "events.customer_id.range",
    "events.session_id.required",
    "events.event_ts.required",
    "events.event_ts.range",
    "events.event_type.required",
    "events_type_known",
    "events.page.required",
    "events.page.length",
    "events.page.pattern",
    "events_page_missing",
    "events.device.required",
    "events_device_known",
    "events_device_missing",
    "events_no_double_action",
    "events_row_count",
    "events_checkout_on_checkout_page",
    "events.event_ts.freshness",
]
assert len(RULES) == 20

REQUIRED = ["event_id", "customer_id", "session_id", "event_ts", "event_type", "page", "device"]
CUSTOMER_ID_MIN, CUSTOMER_ID_MAX = 1, 10_000_000
EVENT_TS_MIN = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
EVENT_TYPES = ["session_start", "page_view", "add_to_cart", "checkout"]
DEVICES = ["mobile", "desktop", "tablet"]
PAGE_PATTERN = "^/"
PAGE_MAX_LENGTH = 64
PAGE_MISSING_MAX_PERCENT = 0.01
DEVICE_INVALID_MAX_PERCENT = 0.1
DOUBLE_ACTION_KEY = ["session_id", "event_ts", "event_type"]
DOUBLE_ACTION_MAX_PERCENT = 0.5
ROW_COUNT_MIN = 1000
# Freshness: the newest event_ts at most 2 days before the end of ds (00:00 UTC of ds + 1).
DS = dt.date(2025, 5, 1)
FRESHNESS_REFERENCE = dt.datetime(DS.year, DS.month, DS.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
FRESHNESS_MAX_DAYS = 2.0


def age_days(newest: dt.datetime | None) -> float | None:
    if newest is None:
        return None
    return (FRESHNESS_REFERENCE - newest).total_seconds() / 86_400


def out_path() -> str | None:
    if "--out" in sys.argv:
        return sys.argv[sys.argv.index("--out") + 1]
    return None


def report(tool: str, seconds: float, rows: int, rules: dict, **extra) -> None:
    missing = [r for r in RULES if r not in rules]
    unknown = [r for r in rules if r not in RULES]
    if missing or unknown:
        raise SystemExit(f"{tool}: rules missing {missing}, unknown {unknown}")
    failed = sum(not rules[r]["passed"] for r in RULES)
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    print(
        f"BENCH name=contracts_{tool} seconds={seconds:.3f} rows={rows} "
        f"rules={len(RULES)} failed={failed} {fields}".rstrip(),
        flush=True,
    )
    payload = {
        "tool": tool,
        "seconds": seconds,
        "rows": rows,
        "rules": {r: rules[r] for r in RULES},
        **extra,
    }
    path = out_path()
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=1, default=str)
    else:
        print(json.dumps(payload, default=str))


def verdict(passed, observed=None) -> dict:
    if observed is not None:
        observed = float(observed)
    return {"passed": bool(passed), "observed": observed}
