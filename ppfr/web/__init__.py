"""`ppfr web`: the client role as a local web app (FastAPI), and the browser view of `ppfr recognize --show`."""
