"""Training defaults, used where the config's `train:` section does not set a key. Kept in this small
module so that `ppfr --help` need not import the MPC engine to show them.

Tuned on LFW people with >= 10 images (dlib embeddings, unit norm x 4); the accuracy they reach is in
the README's figures table (benchmarks/train_mpc.py). A run that diverges stops with an error
(models.service.range_limits).
"""
TRAIN_DEFAULTS = {
    "epochs": 10,
    "lr": 0.5,
    "momentum": 0.9,
    "batch_size": 64,
    "l2": 1e-4,
    "seed": 0,
    "init_std": 0.01,
    "test_split": 0.2,
    "scale": 4.0,
    "l2_normalize": True,
}
