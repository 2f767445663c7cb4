"""Recognition on shares: the client detects and embeds faces, the servers classify the shared embeddings
with the shared softmax model, the client alone reconstructs the probabilities (see recognizer.py).
`ppfr recognize` (ppfr/recognize.py) and `ppfr demo` (ppfr/demo.py) are built from these modules."""
