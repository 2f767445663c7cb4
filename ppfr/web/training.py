"""`train-mpc` from the web page: one training run at a time, in a thread, with progress to poll."""
from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

from .client import WebClient, WebError


class TrainingJob:
    """Trains a model on shares from the people enrolled in this run or from an embeddings file, and
    writes it to the client's weights folder (where the Live page's recognize mode loads it from)."""

    def __init__(self, client: WebClient):
        self.client = client
        self._lock = threading.Lock()
        self._state = {"state": "idle"}
        self._thread: threading.Thread | None = None

    def status(self) -> dict:
        with self._lock:
            return dict(self._state)

    def start(self, source: str, path: str = "", epochs: int | None = None, plaintext: bool = True) -> dict:
        from ppfr.config import section
        from ppfr.models.data import load_dataset, split_dataset
        from ppfr.models.defaults import TRAIN_DEFAULTS
        from ppfr.models.reference import TrainConfig

        with self._lock:
            if self._state["state"] == "running":
                raise WebError("a training run is already going on", 409)
        if source == "enrolled":
            data = self.client.training_data()
        elif source == "file":
            if not path.strip():
                raise WebError("give the path of an embeddings file (written by ppfr embed)")
            data = load_dataset([Path(path.strip()).expanduser()])
        else:
            raise WebError("train from 'enrolled' people or from a 'file'")
        if epochs is not None and not 1 <= epochs <= 200:
            raise WebError("epochs between 1 and 200, please")
        config = TrainConfig.from_config(epochs=epochs)
        split = split_dataset(data, float(section("train").get("test_split", TRAIN_DEFAULTS["test_split"])),
                              config.seed)
        with self._lock:
            self._state = {"state": "running", "stage": "sharing", "done": 0, "total": 0, "started": time.time(),
                           "classes": len(data.class_names), "samples": len(data)}
        self._thread = threading.Thread(target=self._run, args=(split, config, plaintext), daemon=True,
                                        name="ppfr-train")
        self._thread.start()
        return self.status()

    def _progress(self, desc, epoch, batch, batches):
        with self._lock:
            self._state.update(stage=f"{desc}, epoch {epoch + 1}", done=batch + 1, total=batches)

    def _run(self, split, config, plaintext):
        from ppfr.models.data import Preprocessing
        from ppfr.models.train import run_training

        try:
            summary = run_training(split, config, Preprocessing(), self.client.weights_dir, plaintext=plaintext,
                                   progress=False, on_batch=self._progress)
            summary.get("mpc", {}).pop("losses", None)
            with self._lock:
                self._state = {"state": "done", "summary": summary, "seconds": time.time() - self._state["started"]}
        except Exception as e:  # noqa: BLE001 - the page shows the message; the traceback goes to the log
            traceback.print_exc()
            with self._lock:
                self._state = {"state": "failed", "error": f"training failed: {e}"}
