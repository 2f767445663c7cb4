"""The softmax classifier trained and run on secret shares, and its plaintext reference.

    data.py      embeddings files in: checks, per-row preprocessing (unit norm x scale), stratified split
    softmax.py   TrainConfig, train_mpc / predict_mpc (on shares), train_plaintext (float64 reference)
    store.py     save_model / load_model: each server's half, the client's record, refusals
    train.py     run_training: one end-to-end run (what `ppfr train-mpc` prints)
    cli.py       `ppfr train-mpc`
"""
