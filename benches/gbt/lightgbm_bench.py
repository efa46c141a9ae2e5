"""LightGBM (and ONNX Runtime on the converted booster) on the same rows as gbt-bench.
Usage: python lightgbm_bench.py [train_rows] [threads] [score_rows] [run]
Prints `BENCH name=gbt_lightgbm ...` and `BENCH name=gbt_onnxruntime ...` lines."""
import sys, time
import numpy as np
import lightgbm as lgb
from sklearn.metrics import roc_auc_score

from data import FEATURES, args, data

n, threads, scored, run = args()
x, y = data(0, n)
xt, yt = data(1 << 40, scored)
params = dict(objective="binary", num_leaves=255, learning_rate=0.1, min_data_in_leaf=20,
              min_sum_hessian_in_leaf=1e-3, lambda_l2=0.0, max_bin=255, num_threads=threads,
              bagging_fraction=1.0, feature_fraction=1.0, verbose=-1, seed=1)
start = time.perf_counter()
ds = lgb.Dataset(x, y, params={"max_bin": 255, "verbose": -1})
booster = lgb.train(params, ds, num_boost_round=200)
seconds = time.perf_counter() - start
start = time.perf_counter()
p = booster.predict(xt, num_threads=threads)
predict_seconds = time.perf_counter() - start
print(f"BENCH name=gbt_lightgbm run={run} version={lgb.__version__} rows={n} threads={threads} train_s={seconds:.2f} "
      f"auc={roc_auc_score(yt, p):.5f} scored={len(yt)} predict_s={predict_seconds:.3f} "
      f"predict_rows_per_s={len(yt) / predict_seconds:.0f} base_rate={y.mean():.4f}", flush=True)
try:
    import onnxruntime as ort
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
except ImportError:
    sys.exit(0)
onx = convert_lightgbm(booster, initial_types=[("x", FloatTensorType([None, FEATURES]))],
                       zipmap=False, target_opset=15)
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])
xf = xt.astype(np.float32)
start = time.perf_counter()
out = sess.run(None, {"x": xf})
ort_seconds = time.perf_counter() - start
q = out[1][:, 1] if out[1].ndim == 2 else out[1]
print(f"BENCH name=gbt_onnxruntime run={run} version={ort.__version__} rows={n} threads={threads} "
      f"auc={roc_auc_score(yt, q):.5f} scored={len(yt)} predict_s={ort_seconds:.3f} "
      f"predict_rows_per_s={len(yt) / ort_seconds:.0f} base_rate={y.mean():.4f}")
