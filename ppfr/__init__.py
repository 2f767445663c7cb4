"""ppfr: privacy-preserving face recognition over two-server additive secret sharing."""
import os

# numpy's BLAS (OpenBLAS) in one thread, unless the user says otherwise, and only if numpy has not been
# loaded yet (OpenBLAS reads this when it loads). The engine's float products are small (ring_matmul's
# limbs: 64 x 128 x 158 in training), and the parties of a session call them from several threads at
# once: with BLAS threads of their own on top, the two cores were oversubscribed and one product took
# 45-55 ms instead of 0.5 ms (training 4.0-13.7 s an epoch instead of 1.7-2.0, measured alternately).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
