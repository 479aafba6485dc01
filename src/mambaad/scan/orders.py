"""Hybrid-scan orders: space-filling curves x direction transforms, as index permutations.

MambaAD reads every (H, W) feature map as K 1-D sequences. Direction k is a 2-D symmetry of the map
(identity, transpose, rot90, mirror, ...) followed by a space-filling curve and, for the second half of
the directions, a reversal. All of that is a fixed permutation of the H*W pixels, so we precompute it
once per grid size and the model only gathers / scatters with it:

    seq_k[t] = flat[orders[k, t]]        # encode, flat = row-major (H, W) map
    out_flat[orders[k, t]] += y_k[t]     # decode (or gather with inverse_orders)

Default mode reproduces the official orders exactly (MAMBAAD_SPEC.md §5.3-5.4, fixture
``scan_orders.npz``), including its duplicates: with ``hilbert`` only 6 of the 8 orders differ, with
``scan`` (snake) also only 6. Unlike the official code, every curve works on any grid, square or not,
power of two or not (the official Hilbert/Z-order silently corrupt e.g. 14x14 maps).

``distinct=True`` picks 4 base symmetries (from the 8 of the dihedral group, in the preference order of
``_SYMMETRIES``) so that the 8 orders (4 + their reversals) are pairwise distinct: the first 4-subset in
lexicographic order that achieves it. When the official set is already distinct (sweep, zorder, zigzag
on power-of-two squares) this is the official set; for the classic Hilbert curve it is identity,
transpose, rot90 and the vertical flip (the "figure-faithful" variant of the paper's Fig. 3). If no
subset gives 8 distinct orders (grids with a side of 1; ``hilbert`` on 2 x odd grids, whose only
corner-to-corner path is a mirror-symmetric U), the first subset with the most distinct orders is used;
the result is still K valid permutations, never an error.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import torch

from mambaad.errors import ConfigError

CURVES: tuple[str, ...] = ("sweep", "scan", "zorder", "zigzag", "hilbert")
DIRECTIONS: tuple[int, ...] = (2, 4, 8)

# The 8 symmetries of a rectangle acting on an (H, W) array; the transposing ones give (W, H).
# The first four are the official base transforms of K=8 (k=0..3), in that order.
_SYMMETRIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "transpose": lambda a: a.T,
    "rot90": lambda a: np.rot90(a),  # counter-clockwise: out[i, j] = a[j, W-1-i]
    "fliplr": lambda a: a[:, ::-1],  # = transpose of rot90 (official k=3)
    "flipud": lambda a: a[::-1, :],
    "rot180": lambda a: a[::-1, ::-1],
    "rot270": lambda a: np.rot90(a, -1),
    "antitranspose": lambda a: a[::-1, ::-1].T,
}
_OFFICIAL = ("identity", "transpose", "rot90", "fliplr")


# ---------------------------------------------------------------- curves on an (H, W) grid
# Each returns (H*W,) int64: sequence position t -> raster pixel row*W + col.


def _sweep(height: int, width: int) -> np.ndarray:
    """Raster order (VMamba's plain flattening)."""
    return np.arange(height * width, dtype=np.int64)


def _snake(height: int, width: int) -> np.ndarray:
    """Boustrophedon: odd rows right-to-left, so consecutive pixels stay neighbours."""
    grid = np.arange(height * width, dtype=np.int64).reshape(height, width)
    grid[1::2] = grid[1::2, ::-1]
    return grid.ravel()


def _zorder(height: int, width: int) -> np.ndarray:
    """Morton order of (row, col) restricted to the grid; column bit lowest (2x2 blocks row-first)."""
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int64), width)
    code = np.zeros_like(rows)
    for bit in range(max(height, width).bit_length()):
        code |= ((cols >> bit) & 1) << (2 * bit)
        code |= ((rows >> bit) & 1) << (2 * bit + 1)
    return np.argsort(code, kind="stable")


def _zigzag(height: int, width: int) -> np.ndarray:
    """JPEG anti-diagonals: diagonal s = row+col; even s runs up-right, odd s down-left."""
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int64), width)
    diag = rows + cols
    along = np.where(diag % 2 == 0, -rows, rows)
    return np.lexsort((along, diag))  # last key is primary


def _hilbert_classic(n: int) -> np.ndarray:
    """Classic Hilbert curve on an n x n grid, n a power of two (= numpy-hilbert-curve's decode).

    Starts at (0, 0) and ends at (0, n-1); built bottom-up, two index bits per level.
    """
    t = np.arange(n * n, dtype=np.int64)
    x = np.zeros_like(t)  # column
    y = np.zeros_like(t)  # row
    s = 1
    while s < n:
        rx = (t >> 1) & 1
        ry = (t ^ rx) & 1
        flip = (ry == 0) & (rx == 1)  # this quadrant is mirrored ...
        x, y = np.where(flip, s - 1 - x, x), np.where(flip, s - 1 - y, y)
        swap = ry == 0  # ... and these are transposed
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x, y = x + s * rx, y + s * ry
        t >>= 2
        s *= 2
    return y * n + x


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def _half(v: int) -> int:
    return v // 2 if v >= 0 else -((-v) // 2)


def _hilbert_general(height: int, width: int) -> np.ndarray:
    """Generalized ("gilbert"-style) Hilbert curve for any rectangle; every step is a 4-neighbour move.

    A block is the rectangle spanned by a main axis vector ``a`` and a side vector ``b`` from a corner; its
    path starts at the corner and ends at the far end of ``a``. Long blocks are cut across ``a`` into two
    such blocks; otherwise the block is cut into the Hilbert "U" of three blocks. Halves are made even so
    every sub-path can end on the required corner (checkerboard parity of a Hamiltonian path).

    On grids with one odd and one even side the path must run along the even side, and the even split
    would make it mirror-symmetric (reversal = mirror), leaving only 4 distinct orders among the 8
    symmetries. There the top-level cut is moved by one cell (``skew``; the odd side makes any cut
    parity-safe), so ``distinct=True`` can find 8. Not possible when the even side is 2.
    """
    cells: list[tuple[int, int]] = []

    def block(r: int, c: int, ar: int, ac: int, br: int, bc: int, skew: int = 0) -> None:
        w, h = abs(ar + ac), abs(br + bc)
        dar, dac, dbr, dbc = _sign(ar), _sign(ac), _sign(br), _sign(bc)
        if h == 1:
            cells.extend((r + i * dar, c + i * dac) for i in range(w))
            return
        if w == 1:
            cells.extend((r + i * dbr, c + i * dbc) for i in range(h))
            return
        ar2, ac2, br2, bc2 = _half(ar), _half(ac), _half(br), _half(bc)
        if 2 * w > 3 * h:  # long block: two halves side by side along a
            if abs(ar2 + ac2) % 2 and w > 2:
                ar2, ac2 = ar2 + dar, ac2 + dac
            ar2, ac2 = ar2 + skew * dar, ac2 + skew * dac
            block(r, c, ar2, ac2, br, bc)
            block(r + ar2, c + ac2, ar - ar2, ac - ac2, br, bc)
            return
        if abs(br2 + bc2) % 2 and h > 2:
            br2, bc2 = br2 + dbr, bc2 + dbc
        ar2, ac2 = ar2 + skew * dar, ac2 + skew * dac
        block(r, c, br2, bc2, ar2, ac2)  # up the near side
        block(r + br2, c + bc2, ar, ac, br - br2, bc - bc2)  # across the far half
        block(  # back down the other side
            r + (ar - dar) + (br2 - dbr),
            c + (ac - dac) + (bc2 - dbc),
            -br2,
            -bc2,
            -(ar - ar2),
            -(ac - ac2),
        )

    along_cols = not (width % 2 and not height % 2)  # odd main axis + even side: no corner-to-corner path
    main = width if along_cols else height
    skew = int(height % 2 != width % 2 and main >= 4)
    if along_cols:
        block(0, 0, 0, width, height, 0, skew)
    else:
        block(0, 0, height, 0, 0, width, skew)
    rc = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    return rc[:, 0] * width + rc[:, 1]


def _hilbert(height: int, width: int) -> np.ndarray:
    """Classic Hilbert curve on power-of-two squares (official), generalized curve elsewhere."""
    if height == width and height & (height - 1) == 0:
        return _hilbert_classic(height)
    return _hilbert_general(height, width)


_CURVE_FNS: dict[str, Callable[[int, int], np.ndarray]] = {
    "sweep": _sweep,
    "scan": _snake,
    "zorder": _zorder,
    "zigzag": _zigzag,
    "hilbert": _hilbert,
}


# ---------------------------------------------------------------- validation


def _check(name: str, height: int, width: int, directions: int = 8) -> None:
    if name not in CURVES:
        raise ConfigError(f"unknown scan curve {name!r}; valid choices: {', '.join(CURVES)}")
    for label, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, int | np.integer) or side < 1:
            raise ConfigError(f"scan grid {label} must be a positive integer, got {side!r}")
    if directions not in DIRECTIONS:
        raise ConfigError(
            f"unsupported number of scan directions {directions!r}; valid choices: "
            f"{', '.join(map(str, DIRECTIONS))}"
        )


# ---------------------------------------------------------------- directions


@functools.lru_cache(maxsize=256)
def _curve_cached(name: str, height: int, width: int) -> np.ndarray:
    out = _CURVE_FNS[name](height, width).astype(np.int64, copy=False)
    out.flags.writeable = False
    return out


def _transformed(name: str, height: int, width: int, symmetry: str) -> np.ndarray:
    """Curve run on the transformed map, expressed in raster indices of the ORIGINAL (H, W) map."""
    grid = _SYMMETRIES[symmetry](np.arange(height * width, dtype=np.int64).reshape(height, width))
    return grid.ravel()[_curve_cached(name, *grid.shape)]  # (H*W,)


@functools.lru_cache(maxsize=256)
def _base_symmetries(name: str, height: int, width: int, distinct: bool) -> tuple[str, ...]:
    """The 4 base transforms: official ones, or the first subset giving 8 pairwise distinct orders."""
    if not distinct:
        return _OFFICIAL
    names = list(_SYMMETRIES)
    keys = {}
    for sym in names:
        seq = _transformed(name, height, width, sym)
        keys[sym] = (seq.tobytes(), seq[::-1].tobytes())
    best, best_count = _OFFICIAL, -1
    for subset in itertools.combinations(names, 4):
        count = len({k for sym in subset for k in keys[sym]})
        if count > best_count:
            best, best_count = subset, count
        if count == 8:
            break
    return best


@functools.lru_cache(maxsize=256)
def _orders_cached(name: str, height: int, width: int, directions: int, distinct: bool) -> np.ndarray:
    bases = _base_symmetries(name, height, width, distinct)[: directions // 2]
    forward = [_transformed(name, height, width, sym) for sym in bases]
    out = np.stack(forward + [seq[::-1] for seq in forward])  # (K, H*W)
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------- public API


def curve(name: str, height: int, width: int) -> np.ndarray:
    """One space-filling curve on an (H, W) grid.

    Args:
        name: one of :data:`CURVES`.
        height: grid rows H.
        width: grid columns W.

    Returns:
        (H*W,) int64: sequence position t -> raster pixel index row*W + col.

    Example:
        >>> curve("zigzag", 3, 3).tolist()
        [0, 1, 3, 6, 4, 2, 5, 7, 8]
    """
    _check(name, height, width)
    return _curve_cached(name, int(height), int(width)).copy()


def scan_orders(
    name: str, height: int, width: int, directions: int = 8, distinct: bool = False
) -> torch.Tensor:
    """The K scan orders of MambaAD's hybrid scan for an (H, W) map.

    Row k < K/2 applies base transform k then the curve; row k + K/2 is row k reversed. K=8 uses the
    official transforms (identity, transpose, rot90 CCW, left-right mirror), K=4 the first two, K=2 the
    identity only, so K=4 rows are the official directions [0, 1, 4, 5] and K=2 rows [0, 4].

    Args:
        name: curve, one of :data:`CURVES`.
        height: map rows H.
        width: map columns W.
        directions: K, one of 2, 4, 8.
        distinct: pick base transforms so all K orders differ (see the module docstring).

    Returns:
        (K, H*W) int64; ``seq_k[t] = flat[orders[k, t]]`` with ``flat`` the row-major (H, W) map.

    Example:
        >>> scan_orders("sweep", 2, 2, directions=4).tolist()
        [[0, 1, 2, 3], [0, 2, 1, 3], [3, 2, 1, 0], [3, 1, 2, 0]]
    """
    _check(name, height, width, directions)
    return torch.from_numpy(_orders_cached(name, int(height), int(width), directions, bool(distinct)).copy())


def inverse_orders(orders: torch.Tensor) -> torch.Tensor:
    """Inverse permutation of every row: ``inv[k, orders[k, t]] = t`` (decode by gathering).

    Args:
        orders: (K, L) int64, each row a permutation of range(L).

    Returns:
        (K, L) int64.
    """
    positions = torch.arange(orders.shape[-1], dtype=orders.dtype, device=orders.device)
    return torch.empty_like(orders).scatter_(-1, orders, positions.expand_as(orders))
