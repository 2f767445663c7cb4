"""Training defaults, used where the config's `train:` section does not set a key. Kept in this small
module so that `ppfr --help` need not import the MPC engine to show them.

On LFW people with >= 10 images (dlib embeddings, unit norm x 4), 10 epochs at these settings reach
about 99.3 % test accuracy in plaintext and under MPC, and keep every logit row's span near 30, well
inside the 64 that the engine's softmax is exact for (lr 1.0 or momentum 0.95 overshoot past 64).
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
