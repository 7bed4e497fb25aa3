"""Matrix decompositions and solvers with exact JVP rules (one primitive per file).

Primal outputs are those of SciPy / the array API for the same call; every function accepts
leading batch dimensions and runs on plain arrays as a direct backend call.
"""
from __future__ import annotations

from ._nested_guard import DegenerateNestedWarning
from ._results import EighResult, QRResult, SlogdetResult, SplitResult, SVDResult
from .cholesky import cholesky
from .cross import cross
from .det import det, slogdet
from .eigh import eigh, eigvalsh
from .lu import lu, lu_factor
from .matrix_functions import matrix_power, matrix_rank, pinv
from .norms import matrix_norm, vector_norm
from .qr import qr
from .solve import inv, solve
from .svd import svd, svdvals
from .svd_split import svd_split
from .triangular import solve_triangular
from .triangular_product import triangular_product
from ._matrix import route_rules_through_backend
from .cholesky import cholesky_p
from .det import det_p, slogdet_p
from .eigh import eigh_p, eigvalsh_p
from .lu import lu_factor_p
from .qr import qr_p, qr_r_p
from .svd import svd_p, svdvals_p

route_rules_through_backend(cholesky_p, det_p, eigh_p, eigvalsh_p, lu_factor_p, qr_p, qr_r_p, slogdet_p, svd_p,
                            svdvals_p)

__all__ = ["DegenerateNestedWarning", "EighResult", "QRResult", "SVDResult", "SlogdetResult", "SplitResult",
           "cholesky", "cross", "det", "eigh", "eigvalsh", "inv", "lu", "lu_factor", "matrix_norm", "matrix_power",
           "matrix_rank", "pinv", "qr", "slogdet", "solve", "solve_triangular", "svd", "svd_split", "svdvals",
           "triangular_product", "vector_norm"]
