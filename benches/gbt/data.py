"""The GBT benchmark's rows in numpy: the same splitmix64 streams as data.rs, bit for bit, so
every library trains on identical data without a 450 MB file."""
import sys

import numpy as np

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


def args():
    """The scripts' arguments: train_rows threads score_rows run (defaults 2M, 2, rows / 4, 1)."""
    a = sys.argv[1:]
    n = int(a[0]) if len(a) > 0 else 2_000_000
    threads = int(a[1]) if len(a) > 1 else 2
    scored = int(a[2]) if len(a) > 2 else n // 4
    run = int(a[3]) if len(a) > 3 else 1
    return n, threads, scored, run
