"""LightGBM on nightjar's demo churn training set, with the churn model's parameters and its
time split; prints both holdout AUCs. Usage: lightgbm_churn.py TRAINING.parquet METADATA.json"""
import json
import sys

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

table = pq.read_table(sys.argv[1]).to_pandas()
meta = json.load(open(sys.argv[2]))
p = meta["params"]
features = [f["name"] for f in meta["features"]]
ts = meta["timestamp"]
holdout_from = np.datetime64(meta["training"]["holdout_from"] // 1000, "ms")
times = table[ts].dt.tz_localize(None) if table[ts].dt.tz is not None else table[ts]
holdout = (times.values >= holdout_from)
train, test = table[~holdout], table[holdout]
assert len(test) == meta["training"]["holdout_rows"], (len(test), meta["training"]["holdout_rows"])
assert len(train) == meta["training"]["train_rows"], (len(train), meta["training"]["train_rows"])
x, y = train[features].astype(float).values, train[meta["target"]].values
# The same 10% of training rows held back for early stopping as a share (not the same rows:
# the draw is each library's own).
rng = np.random.default_rng(7)
valid = rng.random(len(train)) < p["validation_fraction"]
params = dict(objective="binary", num_leaves=p["num_leaves"], learning_rate=p["learning_rate"],
              min_data_in_leaf=p["min_data_in_leaf"], lambda_l2=p["l2"],
              min_sum_hessian_in_leaf=p["min_sum_hessian_in_leaf"], max_bin=p["max_bins"],
              bagging_fraction=p["row_subsample"], bagging_freq=1,
              feature_fraction=p["feature_subsample"], num_threads=2, verbose=-1, seed=7)
booster = lgb.train(params, lgb.Dataset(x[~valid], y[~valid]), num_boost_round=p["n_trees"],
                    valid_sets=[lgb.Dataset(x[valid], y[valid])],
                    callbacks=[lgb.early_stopping(p["early_stopping_rounds"], verbose=False)])
auc = roc_auc_score(test[meta["target"]].values, booster.predict(test[features].astype(float).values))
ours = meta["metrics"]["auc"]
print(f"BENCH name=churn_auc rows={len(table)} train={len(train)} holdout={len(test)} "
      f"nightjar_auc={ours:.5f} lightgbm_auc={auc:.5f} diff={ours - auc:+.5f} "
      f"lightgbm_trees={booster.best_iteration} "
      f"lightgbm={lgb.__version__}")
