"""Training defaults, used where the config's `train:` section does not set a key. Kept in this small
module so that `ppfr --help` need not import the MPC engine to show them.

On LFW people with >= 10 images (dlib embeddings, unit norm x 4) these settings keep every logit row's
span well inside the 64 that the engine's softmax without clamping is exact for (lr 1.0 or momentum 0.95
overshoot past 64); the accuracy they reach is in the README's figures table (benchmarks/train_mpc.py).
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
