"""Matrix decompositions and solvers with exact JVP rules (one primitive per file).

Primal outputs are those of SciPy / the array API for the same call; every function accepts
leading batch dimensions and runs on plain arrays as a direct backend call.
"""
from __future__ import annotations

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

__all__ = ["EighResult", "QRResult", "SVDResult", "SlogdetResult", "SplitResult", "cholesky", "cross", "det", "eigh",
           "eigvalsh", "inv", "lu", "lu_factor", "matrix_norm", "matrix_power", "matrix_rank", "pinv", "qr", "slogdet",
           "solve", "solve_triangular", "svd", "svd_split", "svdvals", "triangular_product", "vector_norm"]
