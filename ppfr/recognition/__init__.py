"""Recognition on shares: the client detects and embeds faces, the servers classify the shared embeddings
with the shared softmax model, the client alone reconstructs the probabilities.

    recognizer.py  Recognizer: detect, embed, share, classify on shares, reconstruct; decide (name or unknown)
    media.py       image files and folders, video files and webcams in; annotated images and videos out
    cli.py         `ppfr recognize`
"""
