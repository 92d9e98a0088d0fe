"""SANSA: EASE through a sparse approximate inverse (Spišák, Bartyzel & Pejchal, RecSys 2023), the ``sansa``
package behind encore's contract.

EASE's B = I − P / diag(P), P = (XᵀX + λI)⁻¹, is never formed: the package computes a sparse approximate
LDLᵀ factorisation of the Gram matrix (CHOLMOD, through scikit-sparse, on the Gram matrix sparsified to
``density``) and a sparse approximate inverse K ≈ L⁻¹, so that P ≈ Kᵀ D⁻¹ K and the scores of a user are
x (Kᵀ) (D⁻¹ K diag(−1/diag P)): two sparse factors with memory linear in their kept entries. The package
needs the SuiteSparse library (``apt install libsuitesparse-dev``; ``pip install 'encore[sansa]'``), so it
is imported inside ``fit`` only. ``benchmarks/quality.py`` compares it with encore's ``SparseEASE``.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items, padded
from encore.core.ease import masked_top_n

SCORES_PER_BLOCK = 1 << 22  # dense users × items scores per block: 32 MB of float64
FACTORS = ("encoder", "decoder")


def _package() -> tuple[type, tuple[type, type, type]]:
    """The package's model class and config classes, imported without its logging set-up: it calls
    ``logging.basicConfig(level=INFO)`` on import, which would print its progress through encore's log."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from sansa import SANSA as Package
        from sansa import CHOLMODGramianFactorizerConfig, SANSAConfig, UMRUnitLowerTriangleInverterConfig
    except ImportError as exc:
        raise ImportError("model kind sansa needs the sansa package and SuiteSparse: apt install "
                          "libsuitesparse-dev, then pip install 'encore[sansa]'") from exc
    finally:
        for handler in root.handlers[len(handlers):]:
            root.removeHandler(handler)
        root.setLevel(level)
    logging.getLogger("sansa").setLevel(logging.WARNING)
    return Package, (SANSAConfig, CHOLMODGramianFactorizerConfig, UMRUnitLowerTriangleInverterConfig)


def _parts(name: str, M: csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as three named arrays (saved without pickles)."""
    return {f"{name}_indptr_": np.asarray(M.indptr, np.int64), f"{name}_indices_": np.asarray(M.indices, np.int32),
            f"{name}_data_": np.asarray(M.data, np.float32)}


class SANSA(Recommender):
    """Sparse approximate EASE; score(u, j) = (x_u W₁ W₂)_j, positive scores only.

    Parameters
    ----------
    lam : L2 regularisation λ on the Gram matrix's diagonal.
    density : share of the items × items entries kept in each sparse factor (the package's
        ``weight_matrix_density``).
    scans, finetune_steps : the package's approximate-inverse refinement (UMR) settings.

    Fitted attributes: the two factors W₁ (items × items) and W₂ as CSR arrays ``encoder_*_`` and
    ``decoder_*_``. ``because`` is the history item i with the largest x_ui · (W₁ W₂)_ij.
    """

    fitted_arrays = tuple(f"{name}_{part}_" for name in FACTORS for part in ("indptr", "indices", "data"))

    def __init__(self, lam: float = 10.0, density: float = 0.01, scans: int = 1, finetune_steps: int = 5):
        self.lam = lam
        self.density = density
        self.scans = scans
        self.finetune_steps = finetune_steps

    @property
    def n_items(self) -> int:
        """Items the model was fitted on (rows of W₁)."""
        if getattr(self, "encoder_indptr_", None) is None:
            return super().n_items  # raises NotFittedError
        return int(self.encoder_indptr_.shape[0] - 1)

    def factor(self, name: str) -> csr_matrix:
        """W₁ (``encoder``) or W₂ (``decoder``) as a square CSR matrix."""
        indptr = getattr(self, f"{name}_indptr_")
        n = indptr.shape[0] - 1
        return csr_matrix((getattr(self, f"{name}_data_"), getattr(self, f"{name}_indices_"), indptr), shape=(n, n))

    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> SANSA:
        """Factorise with the ``sansa`` package (CHOLMOD LDLᵀ, UMR inverse); no progress bar."""
        Package, configs = _package()
        X = check_user_items(user_items)
        config_cls, factorizer_cls, inverter_cls = configs
        config = config_cls(l2=float(self.lam), weight_matrix_density=float(self.density),
                            gramian_factorizer_config=factorizer_cls(),
                            lower_triangle_inverter_config=inverter_cls(scans=int(self.scans),
                                                                        finetune_steps=int(self.finetune_steps)))
        package = Package(config).fit(X.copy())
        for name, M in zip(FACTORS, package.weights, strict=True):
            for attr, value in _parts(name, csr_matrix(M)).items():
                setattr(self, attr, value)
        return self

    def _recommend(self, user_items, N, mask, exclude_seen, because):
        """Dense scores of each block of users (at most ``SCORES_PER_BLOCK`` scores) through the two sparse factors."""
        encoder, decoder = self.factor("encoder"), self.factor("decoder")
        items, scores, why = padded(user_items.shape[0], N)
        step = max(1, SCORES_PER_BLOCK // max(1, self.n_items))
        for a in range(0, user_items.shape[0], step):
            block = user_items[a : a + step]
            rows = slice(a, a + block.shape[0])
            dense = ((block @ encoder) @ decoder).toarray().astype(np.float64)
            dense[dense <= 0] = -np.inf
            top_items, top_scores = masked_top_n(dense, block, N, mask, exclude_seen)
            items[rows, : top_items.shape[1]], scores[rows, : top_items.shape[1]] = top_items, top_scores
            if because:
                why[rows] = self._because(block, items[rows], encoder, decoder)
        return items, scores, why if because else None

    @staticmethod
    def _because(history: csr_matrix, items: np.ndarray, encoder: csr_matrix, decoder: csr_matrix) -> np.ndarray:
        """For each recommended j, the history item i with the largest x_ui · (W₁ W₂)_ij (ties: smaller i)."""
        why = np.full(items.shape, -1, np.int32)
        for row in range(history.shape[0]):
            lo, hi = history.indptr[row], history.indptr[row + 1]
            picked = items[row] >= 0
            if hi > lo and picked.any():
                seen = history.indices[lo:hi]
                weights = (encoder[seen] @ decoder[:, items[row, picked]]).toarray()
                contribution = history.data[lo:hi, None].astype(np.float64) * weights
                why[row, picked] = seen[np.argmax(contribution, axis=0)]
        return why
