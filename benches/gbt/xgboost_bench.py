"""XGBoost (`hist`) on the same rows as gbt-bench, with the parameters matched to ours and
LightGBM's: 200 rounds, leaf-wise growth to at most 255 leaves (lossguide, no depth limit),
255 bins, learning rate 0.1, no L2. XGBoost has no minimum row count per leaf; its
min_child_weight (a hessian sum) takes LightGBM's min_sum_hessian_in_leaf, 1e-3.
Usage: python xgboost_bench.py [train_rows] [threads] [score_rows] [run]"""
import time
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from data import args, data

n, threads, scored, run = args()
x, y = data(0, n)
xt, yt = data(1 << 40, scored)
params = dict(objective="binary:logistic", tree_method="hist", grow_policy="lossguide",
              max_leaves=255, max_depth=0, max_bin=255, eta=0.1, reg_lambda=0.0,
              min_child_weight=1e-3, subsample=1.0, colsample_bytree=1.0, nthread=threads, seed=1)
start = time.perf_counter()
# QuantileDMatrix bins once, as LightGBM's Dataset does; both are inside the timing.
dtrain = xgb.QuantileDMatrix(x, y, max_bin=255, nthread=threads)
booster = xgb.train(params, dtrain, num_boost_round=200)
seconds = time.perf_counter() - start
start = time.perf_counter()
p = booster.inplace_predict(xt)
predict_seconds = time.perf_counter() - start
print(f"BENCH name=gbt_xgboost run={run} version={xgb.__version__} rows={n} threads={threads} train_s={seconds:.2f} "
      f"auc={roc_auc_score(yt, p):.5f} scored={len(yt)} predict_s={predict_seconds:.3f} "
      f"predict_rows_per_s={len(yt) / predict_seconds:.0f} base_rate={y.mean():.4f}", flush=True)
