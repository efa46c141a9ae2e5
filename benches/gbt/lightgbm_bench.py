"""LightGBM on the same rows as gbt-bench (the same splitmix64 streams in numpy).
Usage: python lightgbm_bench.py [train_rows] [threads] [score_rows]
With onnxruntime and onnxmltools installed, the trained booster is also converted to ONNX and
scored by ONNX Runtime on the same rows."""
import sys, time
import numpy as np
import lightgbm as lgb
from sklearn.metrics import roc_auc_score

FEATURES = 28
M = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(z):
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(i, k):
    with np.errstate(over="ignore"):
        h = splitmix64(i * np.uint64(64) + np.uint64(k))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))


def data(start, n):
    i = np.arange(start, start + n, dtype=np.uint64)
    x = np.stack([uniform(i, k) * 2.0 - 1.0 for k in range(FEATURES)], axis=1)
    missing = uniform(i, 40) < 0.1
    x5 = np.where(missing, 0.7, x[:, 5])
    z = (1.5 * x[:, 0] - 2.0 * x[:, 1] * x[:, 2] + np.where(x[:, 3] > 0.2, 1.0, -0.5)
         + x[:, 4] * x[:, 4] * 2.0
         - 1.0 * x5
         + 0.8 * x[:, 6] * x[:, 7]
         + 0.5 * x[:, 8]
         - 0.5 * x[:, 9]
         + 0.3 * x[:, 10] * x[:, 11] * x[:, 12]
         - 0.6)
    noise = (uniform(i, 41) + uniform(i, 42) + uniform(i, 43) + uniform(i, 44) - 2.0) * 1.5
    y = (z + noise > 0.0).astype(np.float64)
    x[missing, 5] = np.nan
    return x, y


n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
x, y = data(0, n)
scored = int(sys.argv[3]) if len(sys.argv) > 3 else n // 4
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
print(f"lightgbm {lgb.__version__} rows={n} threads={threads} train_s={seconds:.2f} "
      f"auc={roc_auc_score(yt, p):.5f} predict_rows_per_s={len(yt) / predict_seconds:.0f} base_rate={y.mean():.4f}")
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
print(f"onnxruntime {ort.__version__} rows={len(yt)} threads={threads} "
      f"auc={roc_auc_score(yt, q):.5f} predict_rows_per_s={len(yt) / ort_seconds:.0f}")
