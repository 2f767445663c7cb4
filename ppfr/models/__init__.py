"""The softmax classifier trained and run on secret shares, and its plaintext reference.

    data.py      embeddings files in: checks, per-row preprocessing (unit norm x scale), stratified split
    reference.py TrainConfig, the public batch schedule and initial weights, train_plaintext (float64)
    protocols.py the servers' programs: training, prediction (reference.REVEALS), revealing the model
    service.py   train_mpc / predict_mpc / reveal_model: the client's drivers of those programs
    store.py     save_model / load_model: each server's half, the client's record, refusals
    train.py     run_training: one end-to-end run (what `ppfr train-mpc` prints)
    cli.py       `ppfr train-mpc`
"""
