"""Implicit-feedback matrix factorisation: implicit's ``AlternatingLeastSquares`` behind encore's contract.

The factors are fitted by implicit (Hu, Koren & Volinsky, ICDM 2008, with implicit's conjugate-gradient
solver; CPU, or GPU where a user has one and ``use_gpu`` is set). implicit is imported inside ``fit`` only,
so the core imports without it.

encore models keep no per-user state and score from the rows they are given, so ``recommend`` solves each
user's factor from their row, as implicit's ``recalculate_user=True`` does: x_u = A_u⁻¹ Yᵀ C_u p_u with
A_u = YᵀY + λI + Yᵀ(C_u − I)Y. A score is then Σ_i c_ui · y_jᵀ A_u⁻¹ y_i, a sum over the history items i,
and ``because`` is the i with the largest term, implicit's ``explain``.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items, padded
from encore.core.ease import masked_top_n

SCORES_PER_BLOCK = 1 << 22  # dense users × items scores per block: 32 MB of float64


class ALS(Recommender):
    """Alternating least squares on implicit feedback (implicit's model; encore's recommend rules).

    Parameters
    ----------
    factors, regularization, alpha, iterations, random_state : implicit's ``AlternatingLeastSquares``
        parameters, same meaning (confidence C = alpha · user_items).
    num_threads : implicit's fit threads (0: all cores); scoring runs in numpy.
    use_gpu : fit on implicit's GPU model (needs a CUDA build of implicit); the factors come back to the CPU.

    Fitted attribute: ``item_factors_`` (float32 items × factors). Only positive scores are recommended;
    a user with an empty row gets none (the daily job's backoff fills the list).
    """

    fitted_arrays = ("item_factors_",)

    def __init__(self, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0, iterations: int = 15,
                 random_state: int = 42, num_threads: int = 0, use_gpu: bool = False):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.use_gpu = use_gpu

    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> ALS:
        """Fit implicit's ALS on the user × item confidences (no progress bar)."""
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits  # a dependency of implicit
        model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                        iterations=self.iterations, random_state=self.random_state,
                                        num_threads=self.num_threads, use_gpu=self.use_gpu,
                                        calculate_training_loss=False)
        with threadpool_limits(1, "blas"):  # implicit's own threads; a BLAS pool inside them slows it down
            model.fit(check_user_items(user_items), show_progress=False)
        if self.use_gpu:
            model = model.to_cpu()
        self.item_factors_ = np.ascontiguousarray(model.item_factors, np.float32)
        return self

    def user_systems(self, history: csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(A_u, b_u) of every row: A_u = YᵀY + λI + Σ_i (c_ui − 1) y_i y_iᵀ, b_u = Σ_i c_ui y_i (implicit's
        ``user_linear_equation``, confidences c = alpha · row)."""
        Y = self.item_factors_.astype(np.float64)
        f = Y.shape[1]
        base = Y.T @ Y + self.regularization * np.eye(f)
        A = np.repeat(base[None], history.shape[0], axis=0)
        b = np.asarray(history @ Y) * self.alpha
        for row in range(history.shape[0]):
            lo, hi = history.indptr[row], history.indptr[row + 1]
            if hi > lo:
                Yh = Y[history.indices[lo:hi]]
                A[row] += (Yh * (self.alpha * history.data[lo:hi] - 1.0)[:, None]).T @ Yh
        return A, b

    def _recommend(self, user_items, N, mask, exclude_seen, because):
        """Scores x_u · y_j of every row, in blocks of users holding at most ``SCORES_PER_BLOCK`` scores."""
        items, scores, why = padded(user_items.shape[0], N)
        step = max(1, SCORES_PER_BLOCK // max(1, self.n_items))
        for a in range(0, user_items.shape[0], step):
            block = user_items[a : a + step]
            rows = slice(a, a + block.shape[0])
            A, b = self.user_systems(block)
            x = np.linalg.solve(A, b[:, :, None])[:, :, 0]
            dense = x @ self.item_factors_.T.astype(np.float64)
            dense[dense <= 0] = -np.inf
            top_items, top_scores = masked_top_n(dense, block, N, mask, exclude_seen)
            items[rows, : top_items.shape[1]], scores[rows, : top_items.shape[1]] = top_items, top_scores
            if because:
                why[rows] = self._because(block, items[rows], A)
        return items, scores, why if because else None

    def _because(self, history: csr_matrix, items: np.ndarray, A: np.ndarray) -> np.ndarray:
        """For each recommended j, the history item i with the largest c_ui · y_jᵀ A_u⁻¹ y_i (ties: smaller i)."""
        Y = self.item_factors_.astype(np.float64)
        why = np.full(items.shape, -1, np.int32)
        for row in range(history.shape[0]):
            seen = history.indices[history.indptr[row]:history.indptr[row + 1]]
            picked = items[row] >= 0
            if seen.size and picked.any():
                c = self.alpha * history.data[history.indptr[row]:history.indptr[row + 1]].astype(np.float64)
                weighted = np.linalg.solve(A[row], Y[items[row, picked]].T)  # A_u⁻¹ y_j per column
                contribution = c[:, None] * (Y[seen] @ weighted)
                contribution[c < 0] = -np.inf
                why[row, picked] = seen[np.argmax(contribution, axis=0)]
        return why
