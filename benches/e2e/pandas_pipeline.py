"""The demo nightly pipeline (pipelines/marketing_nightly.yaml, everything downstream of the
raw data) written the way a data scientist would with pandas, scikit-learn and LightGBM, for
benches/e2e: the peer nightjar is timed against.

From the raw tables nightjar's `synthetic` task generated (exported to Parquet by run.sh) it
computes, with the same definitions as the project's SQL and YAML:
  staging      orders net of returns; one row per session (pipelines/sql/staging_sessions.sql)
  export       the per-customer activity summary (the `customer_activity` task)
  features     customer_rfm, customer_engagement, campaign_exposure (features/*.sql) at every
               as-of snapshot of their grid (every 7 days aligned to 1970-01-01, 84 days back,
               plus the run's own as-of instant, the end of ds)
  training     churn / propensity / LTV labels at the snapshots with a full horizon after
               them, joined point-in-time (newest view row at or before the label time,
               within the views' 8-day ttl; session_trend defaults to 0.0)
  models       churn: LightGBM with the churn_model task's hyperparameters; churn baseline
               and propensity: L2 logistic regression on standardized, mean-imputed features
               (C = 1/alpha, the logistic tasks' alpha 1.0); LTV: LightGBM regressor with the
               ltv_model task's hyperparameters; all on the same time split (the latest label
               timestamps, >= the 80% quantile, are the holdout)
  scores       churn, propensity and LTV of every customer, features joined point-in-time at
               the end of ds

Every output is written under OUT (Parquet, LightGBM model files, joblib), as nightjar
writes its tables and registry; OUT/metrics.json holds the counts and holdout metrics
run.sh reports, and compare.py checks against nightjar's outputs.

Usage: pandas_pipeline.py RAW_DIR OUT_DIR --ds YYYY-MM-DD
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DAY = pd.Timedelta(days=1)
# features/*.yaml: snapshots {every: 7d, history: 84d}, ttl 8d (the same for all three views).
SNAPSHOT_EVERY_DAYS = 7
SNAPSHOT_HISTORY_DAYS = 84
TTL = pd.Timedelta(days=8)
# The training_set tasks' `defaults:`.
DEFAULTS = {"session_trend": 0.0}
HOLDOUT = 0.2  # split: {by: time, holdout: 0.2}
SEED = 7  # the train tasks' seed

RFM = ["tenure_days", "recency_days", "orders_30d", "orders_90d", "orders_365d",
       "revenue_30d", "revenue_90d", "revenue_365d"]
ENGAGEMENT = ["sessions_7d", "sessions_28d", "page_views_7d", "page_views_28d",
              "add_to_cart_7d", "add_to_cart_28d", "session_trend"]
EXPOSURE = ["exposures_30d", "email_exposures_30d", "campaigns_30d", "days_since_exposure"]
# The train tasks' default feature list: every numeric column of the training set but the
# entity, timestamp and target, in table order.
FEATURES = RFM + ENGAGEMENT + EXPOSURE

# The churn_model / ltv_model params in LightGBM's names. nightjar's defaults for the knobs
# the tasks leave out (min_sum_hessian_in_leaf 1e-3, 255 bins, no depth limit) are
# LightGBM's too; `feature_subsample` draws features per tree (feature_fraction) and
# `row_subsample` rows per tree (bagging every iteration).
GBT_COMMON = dict(num_leaves=15, learning_rate=0.05, min_data_in_leaf=40, lambda_l2=1.0,
                  min_sum_hessian_in_leaf=1e-3, max_bin=255, max_depth=-1, seed=SEED,
                  verbose=-1)
CHURN_GBT = dict(GBT_COMMON, objective="binary", bagging_fraction=0.8, bagging_freq=1,
                 feature_fraction=0.8)
LTV_GBT = dict(GBT_COMMON, objective="regression")
N_TREES = 300
EARLY_STOPPING_ROUNDS = 30
VALIDATION_FRACTION = 0.1  # nightjar's default share held back for early stopping
LOGISTIC_ALPHA = 1.0
EVENT_CHUNK_ROWS = 1 << 22  # ~170 MB of events per chunk


class Phases:
    """Wall time per phase to metrics.json, with the peak memory so far to stderr (where the
    time and memory go)."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.seconds = {}

    def done(self, name):
        now = time.perf_counter()
        self.seconds[name] = round(now - self.last, 3)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  {name:<22} {now - self.last:7.2f} s  peak RSS so far {peak:5.2f} GiB",
              file=sys.stderr)
        self.last = now


# ---------------------------------------------------------------------------------------------
# Raw data and staging
# ---------------------------------------------------------------------------------------------

def read_raw(raw: Path):
    """The raw tables, only the columns the pipeline uses."""
    customers = pd.read_parquet(
        raw / "customers.parquet",
        columns=["customer_id", "signup_date", "country", "acquisition_channel", "age_band"])
    # `CAST(signup_date AS TIMESTAMP)` in the SQL: midnight UTC of the signup day.
    customers["signup_ts"] = pd.to_datetime(customers["signup_date"]).dt.tz_localize("UTC")
    orders = pd.read_parquet(raw / "orders.parquet")
    exposures = pd.read_parquet(raw / "exposures.parquet",
                                columns=["customer_id", "campaign_id", "exposure_ts", "channel"])
    return customers, orders, exposures


def staging_sessions(events_path: Path) -> pd.DataFrame:
    """One row per session: start, end, page views, add-to-cart and checkout events.

    The events are ~145 per customer (145M rows at 1M customers): read whole and grouped in
    one go they peaked at 2.2 GB at 100k customers, so ~20 GB at 1M, most of this machine's
    24 GiB. So they are aggregated a chunk at a time
    and the per-chunk partial aggregates combined (min of minima, sum of sums, ...), which is
    right wherever a chunk boundary cuts a session. Grouping by session_id alone is the SQL's
    GROUP BY session_id, customer_id: session ids are globally unique (src/synth.rs), so
    customer_id is carried along with `first`, and one integer key groups much faster than
    two."""
    events = pq.ParquetFile(events_path, read_dictionary=["event_type"])
    chunks = events.iter_batches(batch_size=EVENT_CHUNK_ROWS,
                                 columns=["session_id", "customer_id", "event_ts", "event_type"])
    partial = pd.concat([session_aggregates(chunk.to_pandas()) for chunk in chunks])
    return (partial.groupby(level="session_id", sort=False)
            .agg(customer_id=("customer_id", "first"), session_start=("session_start", "min"),
                 session_end=("session_end", "max"), page_views=("page_views", "sum"),
                 add_to_cart=("add_to_cart", "sum"), checkouts=("checkouts", "sum"))
            .reset_index())


def session_aggregates(events: pd.DataFrame) -> pd.DataFrame:
    kind = events["event_type"]
    flagged = events.assign(page_views=kind.eq("page_view"), add_to_cart=kind.eq("add_to_cart"),
                            checkouts=kind.eq("checkout"))
    return (flagged.groupby("session_id", sort=False)
            .agg(customer_id=("customer_id", "first"), session_start=("event_ts", "min"),
                 session_end=("event_ts", "max"), page_views=("page_views", "sum"),
                 add_to_cart=("add_to_cart", "sum"), checkouts=("checkouts", "sum")))


def customer_activity(customers, sessions, orders) -> pd.DataFrame:
    """The `customer_activity` task: per-customer sessions and orders over the whole window."""
    per_session = (sessions.assign(cart=sessions["add_to_cart"].gt(0))
                   .groupby("customer_id")
                   .agg(n_sessions=("session_id", "size"), page_views=("page_views", "sum"),
                        cart_sessions=("cart", "sum")))
    per_order = orders.groupby("customer_id").agg(
        n_orders=("order_id", "size"), revenue=("amount", "sum"),
        last_order_ts=("order_ts", "max"))
    out = (customers[["customer_id", "country", "acquisition_channel", "age_band"]]
           .join(per_session, on="customer_id").join(per_order, on="customer_id"))
    counts = ["n_sessions", "page_views", "cart_sessions", "n_orders"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["revenue"] = out["revenue"].fillna(0.0)
    return out


# ---------------------------------------------------------------------------------------------
# Feature views, one snapshot at a time (each reads only rows before its as-of instant)
# ---------------------------------------------------------------------------------------------

def snapshot_grid(ds: str) -> list:
    """The as-of instants a run for ds materializes (nightjar's `snapshots_for`): its own,
    the end of ds, and every grid day within the history before it."""
    end = pd.Timestamp(ds, tz="UTC") + DAY
    since_epoch = (end - pd.Timestamp("1970-01-01", tz="UTC")).days
    newest = end - (since_epoch % SNAPSHOT_EVERY_DAYS) * DAY
    oldest = end - SNAPSHOT_HISTORY_DAYS * DAY
    grid = pd.date_range(end=newest, periods=(newest - oldest).days // SNAPSHOT_EVERY_DAYS + 1,
                         freq=f"{SNAPSHOT_EVERY_DAYS}D")
    return sorted(set(grid) | {end})


def days_between(as_of: pd.Timestamp, ts: pd.Series) -> pd.Series:
    """`(to_unixtime(as_of) - to_unixtime(ts)) / 86400.0`: to_unixtime counts whole seconds."""
    return (as_of - ts.dt.floor("s")).dt.total_seconds() / 86400.0


def eligible(customers: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Customers who had signed up before the snapshot (every view's WHERE clause)."""
    return customers.loc[customers["signup_ts"] < as_of, ["customer_id", "signup_ts"]]


def fill_counts(frame: pd.DataFrame, columns: list) -> None:
    """COALESCE(count, 0) after the left join, kept integral."""
    frame[columns] = frame[columns].fillna(0).astype("int64")


def rfm_snapshot(customers, orders, as_of) -> pd.DataFrame:
    ts = orders["order_ts"]
    window = orders[(ts < as_of) & (ts >= as_of - 365 * DAY)]
    recent30 = window["order_ts"] >= as_of - 30 * DAY
    recent90 = window["order_ts"] >= as_of - 90 * DAY
    per = (window.assign(orders_30d=recent30, orders_90d=recent90,
                         revenue_30d=window["amount"].where(recent30, 0.0),
                         revenue_90d=window["amount"].where(recent90, 0.0))
           .groupby("customer_id")
           .agg(last_order_ts=("order_ts", "max"), orders_30d=("orders_30d", "sum"),
                orders_90d=("orders_90d", "sum"), orders_365d=("order_ts", "size"),
                revenue_30d=("revenue_30d", "sum"), revenue_90d=("revenue_90d", "sum"),
                revenue_365d=("amount", "sum")))
    out = eligible(customers, as_of).join(per, on="customer_id")
    out["tenure_days"] = ((as_of - out["signup_ts"]) // DAY).astype("float64")
    out["recency_days"] = days_between(as_of, out["last_order_ts"])
    fill_counts(out, ["orders_30d", "orders_90d", "orders_365d"])
    out[["revenue_30d", "revenue_90d", "revenue_365d"]] = \
        out[["revenue_30d", "revenue_90d", "revenue_365d"]].fillna(0.0)
    return out.assign(feature_ts=as_of)[["customer_id", "feature_ts", *RFM]]


def engagement_snapshot(customers, sessions, as_of) -> pd.DataFrame:
    start = sessions["session_start"]
    window = sessions[(start < as_of) & (start >= as_of - 28 * DAY)]
    recent = window["session_start"] >= as_of - 7 * DAY
    per = (window.assign(sessions_7d=recent,
                         page_views_7d=window["page_views"].where(recent, 0),
                         add_to_cart_7d=window["add_to_cart"].where(recent, 0))
           .groupby("customer_id")
           .agg(sessions_7d=("sessions_7d", "sum"), sessions_28d=("session_start", "size"),
                page_views_7d=("page_views_7d", "sum"), page_views_28d=("page_views", "sum"),
                add_to_cart_7d=("add_to_cart_7d", "sum"),
                add_to_cart_28d=("add_to_cart", "sum")))
    # Null for customers without a session in 28 days (no row in `per`), as in the SQL.
    per["session_trend"] = per["sessions_7d"] / (per["sessions_28d"] / 4.0)
    out = eligible(customers, as_of).join(per, on="customer_id")
    fill_counts(out, ENGAGEMENT[:-1])
    return out.assign(feature_ts=as_of)[["customer_id", "feature_ts", *ENGAGEMENT]]


def exposure_snapshot(customers, exposures, as_of) -> pd.DataFrame:
    ts = exposures["exposure_ts"]
    window = exposures[(ts < as_of) & (ts >= as_of - 30 * DAY)]
    per = (window.assign(email=window["channel"].eq("email"))
           .groupby("customer_id")
           .agg(exposures_30d=("campaign_id", "size"), email_exposures_30d=("email", "sum"),
                campaigns_30d=("campaign_id", "nunique"), last_exposure_ts=("exposure_ts", "max")))
    out = eligible(customers, as_of).join(per, on="customer_id")
    fill_counts(out, EXPOSURE[:-1])
    out["days_since_exposure"] = days_between(as_of, out["last_exposure_ts"])
    return out.assign(feature_ts=as_of)[["customer_id", "feature_ts", *EXPOSURE]]


def materialize(snapshot, customers, source, grid) -> pd.DataFrame:
    """A view's rows at every as-of instant of the grid, oldest first (so sorted by time, as
    merge_asof wants)."""
    return pd.concat([snapshot(customers, source, as_of) for as_of in grid], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Labels, point-in-time join, models, scores
# ---------------------------------------------------------------------------------------------

def order_windows(customers, orders, label_times, horizon_days) -> pd.DataFrame:
    """For each label time and customer signed up before it: the number and value of (net)
    orders in the `horizon_days` after it. The churn and LTV labels share the 60-day window,
    so one pass serves both."""
    frames = []
    ts = orders["order_ts"]
    for t in label_times:
        window = orders[(ts >= t) & (ts < t + horizon_days * DAY)]
        per = window.groupby("customer_id")["amount"].agg(n_orders="size", value="sum")
        labels = (customers.loc[customers["signup_ts"] < t, ["customer_id", "country", "age_band"]]
                  .join(per, on="customer_id"))
        frames.append(labels.assign(label_ts=t))
    out = pd.concat(frames, ignore_index=True)
    out["n_orders"] = out["n_orders"].fillna(0).astype("int64")
    out["value"] = out["value"].fillna(0.0)
    return out


def point_in_time(labels, views, time_column="label_ts") -> pd.DataFrame:
    """Each row gets, per view, the newest row of its customer at or before its time and at
    most the ttl older; no match leaves nulls, then the declared defaults."""
    out = labels.sort_values(time_column, kind="stable")
    for view in views:
        out = pd.merge_asof(out, view, left_on=time_column, right_on="feature_ts",
                            by="customer_id", direction="backward", tolerance=TTL)
        out = out.drop(columns="feature_ts")
    return out.fillna(DEFAULTS)


def time_split(ts: pd.Series) -> pd.Series:
    """Holdout: rows at or after the timestamp at the 80% quantile (whole timestamps)."""
    ordered = np.sort(ts.to_numpy())
    cutoff = ordered[min(int(np.floor(len(ordered) * (1 - HOLDOUT))), len(ordered) - 1)]
    return ts >= cutoff


def fit_gbt(train: pd.DataFrame, target: str, params: dict) -> lgb.Booster:
    """LightGBM with early stopping on a random tenth of the training rows (as nightjar
    holds back `validation_fraction` of them); keeps the best iteration."""
    x_fit, x_valid, y_fit, y_valid = train_test_split(
        train[FEATURES], train[target], test_size=VALIDATION_FRACTION, random_state=SEED)
    fit_set = lgb.Dataset(x_fit, y_fit)
    return lgb.train(params, fit_set, num_boost_round=N_TREES,
                     valid_sets=[lgb.Dataset(x_valid, y_valid, reference=fit_set)],
                     callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])


def fit_logistic(train: pd.DataFrame, target: str):
    """nightjar's `logistic`: L2 on standardized coefficients (unpenalized intercept), missing
    values imputed with the training mean."""
    model = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler(),
                          LogisticRegression(C=1.0 / LOGISTIC_ALPHA, max_iter=1000))
    return model.fit(train[FEATURES], train[target])


def predict(model, x: pd.DataFrame) -> np.ndarray:
    if isinstance(model, lgb.Booster):
        return model.predict(x[FEATURES])
    return model.predict_proba(x[FEATURES])[:, 1]


def train_and_evaluate(name, training, target, model_kind, out: Path, metrics: dict):
    """Fits on the rows before the holdout, scores the holdout, saves model and holdout
    predictions; returns the model."""
    holdout = time_split(training["label_ts"])
    train, test = training[~holdout], training[holdout]
    if model_kind == "logistic":
        model = fit_logistic(train, target)
        joblib.dump(model, out / "models" / f"{name}.joblib")
    else:
        model = fit_gbt(train, target, CHURN_GBT if model_kind == "gbt_classifier" else LTV_GBT)
        model.save_model(out / "models" / f"{name}.txt")
    predicted = predict(model, test)
    actual = test[target].to_numpy()
    summary = {"train_rows": len(train), "holdout_rows": len(test)}
    if model_kind == "gbt_regressor":
        summary["r2"] = r2_score(actual, predicted)
    else:
        summary["auc"] = roc_auc_score(actual, predicted)
    if isinstance(model, lgb.Booster):
        summary["trees"] = model.best_iteration
    metrics["models"][name] = summary
    pd.DataFrame({"customer_id": test["customer_id"].to_numpy(),
                  "label_ts": test["label_ts"].to_numpy(),
                  "actual": actual, "predicted": predicted}) \
        .to_parquet(out / "holdout" / f"{name}.parquet", index=False)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--ds", required=True)
    args = parser.parse_args()
    out = args.out
    for sub in ("exports", "features", "training", "models", "holdout", "scores"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    phases = Phases()
    metrics = {"models": {}}

    customers, orders, exposures = read_raw(args.raw)
    phases.done("read raw")

    orders = orders[~orders["returned"]]
    sessions = staging_sessions(args.raw / "events.parquet")
    phases.done("staging")
    customer_activity(customers, sessions, orders).to_parquet(
        out / "exports" / f"customer_activity_{args.ds.replace('-', '')}.parquet", index=False)
    phases.done("customer_activity")

    grid = snapshot_grid(args.ds)
    views = {
        "customer_rfm": materialize(rfm_snapshot, customers, orders, grid),
        "customer_engagement": materialize(engagement_snapshot, customers, sessions, grid),
        "campaign_exposure": materialize(exposure_snapshot, customers, exposures, grid),
    }
    del sessions
    phases.done("features")
    for name, frame in views.items():
        frame.to_parquet(out / "features" / f"{name}.parquet", index=False)
    metrics["feature_rows"] = {name: len(frame) for name, frame in views.items()}
    phases.done("features written")

    # Labels at the snapshots with the whole horizon observed before the end of ds.
    end = pd.Timestamp(args.ds, tz="UTC") + DAY
    snapshots = views["customer_rfm"]["feature_ts"].unique()
    windows60 = order_windows(customers, orders, [t for t in snapshots if t <= end - 60 * DAY], 60)
    windows30 = order_windows(customers, orders, [t for t in snapshots if t <= end - 30 * DAY], 30)
    label_cols = ["customer_id", "label_ts", "country", "age_band"]
    labels = {
        "churn": windows60[label_cols].assign(churned=windows60["n_orders"].eq(0).astype("int32")),
        "propensity": windows30[label_cols].assign(
            purchased=windows30["n_orders"].gt(0).astype("int32")),
        "ltv": windows60[label_cols].assign(revenue_60d=windows60["value"]),
    }
    training = {name: point_in_time(frame, views.values()) for name, frame in labels.items()}
    for name, frame in training.items():
        frame.to_parquet(out / "training" / f"{name}.parquet", index=False)
    metrics["training_rows"] = {name: len(frame) for name, frame in training.items()}
    phases.done("training sets")

    champions = {
        "churn": train_and_evaluate("churn", training["churn"], "churned", "gbt_classifier",
                                    out, metrics),
    }
    phases.done("train churn")
    train_and_evaluate("churn_logistic", training["churn"], "churned", "logistic", out, metrics)
    phases.done("train churn_logistic")
    champions["propensity"] = train_and_evaluate("propensity", training["propensity"],
                                                 "purchased", "logistic", out, metrics)
    phases.done("train propensity")
    champions["ltv"] = train_and_evaluate("ltv", training["ltv"], "revenue_60d", "gbt_regressor",
                                          out, metrics)
    phases.done("train ltv")

    # Every customer, with the features as of the end of ds joined exactly as for training.
    entities = point_in_time(customers[["customer_id"]].assign(label_ts=end), views.values())
    scored_at = pd.Timestamp.now(tz="UTC")
    for name, model in champions.items():
        pd.DataFrame({"customer_id": entities["customer_id"], "score": predict(model, entities),
                      "model": name, "version": 1, "scored_at": scored_at}) \
            .to_parquet(out / "scores" / f"{name}.parquet", index=False)
    metrics["customers"] = len(customers)
    metrics["scored"] = len(entities)
    phases.done("scores")
    metrics["phases"] = phases.seconds
    metrics["seconds"] = round(time.perf_counter() - phases.started, 3)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
