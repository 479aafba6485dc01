"""The Mamba decoder: stages of Locality-enhanced State Space (LSS) modules (MambaAD §3, Fig. 2).

    SS2D        one state-space mixing layer: 1x1 in-projection, depthwise 3x3 conv, the map read as
                K sequences along a space-filling curve (hybrid scan), one selective scan over all
                K*D channels, the K outputs written back to the grid and summed, norm, SiLU gate.
    HSSBlock    Hybrid State Space block: X + DropPath(SS2D(LayerNorm(X))).
    LSSModule   cascaded HSS blocks (global) in parallel with 5x5 and 7x7 depthwise branches
                (local), fused by a 1x1 conv, plus the input (residual). For the paper's ablation either
                part can be left out (``use_hss=False``: convolutions only; ``kernels=()``: HSS only).
    PatchExpand 2x upsampling: a linear map to 4 x C_out channels moved into 2 x 2 pixels.
    MambaDecoder four stages, deep to shallow; returns the last three stage outputs shallow-first.

Inside the decoder tensors are channels-last, (B, H, W, C), as in VMamba.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from mambaad.scan.orders import inverse_orders, scan_orders
from mambaad.scan.selective_scan import default_backend, selective_scan


class HybridScan(nn.Module):
    """Reads a (B, D, H, W) map as K sequences along a space-filling curve and writes them back.

    The orders depend on the grid, so they are built on first use for each (H, W) and cached; any
    grid works. ``encode`` gathers, ``decode`` gathers with the inverse order and sums the K maps.

    The orders are a pure function of the grid size, so under the TorchScript tracer (ONNX export) the
    traced sizes are read as Python ints and the index tensors land in the graph as constants for the
    traced grid; an exported graph has a fixed spatial size anyway.
    """

    def __init__(self, curve: str = "hilbert", directions: int = 8, distinct: bool = False) -> None:
        super().__init__()
        self.curve, self.directions, self.distinct = curve, directions, distinct
        self._cache: dict[tuple[int, int, torch.device], tuple[Tensor, Tensor]] = {}

    @torch.compiler.disable  # built with numpy, once per grid: torch.compile calls it as is
    def _indices(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        h, w = int(h), int(w)  # the tracer passes sizes as 0-d tensors: freeze them (see class doc)
        key = (h, w, device)
        if key not in self._cache:
            orders = scan_orders(self.curve, h, w, self.directions, self.distinct)  # (K, L)
            k, length = orders.shape
            offsets = torch.arange(k)[:, None] * length
            # flat indices into a (..., K*L) tensor: encode reads pixel orders[k, t] of the raster;
            # decode reads, for pixel p of direction k, sequence position inverse[k, p].
            encode = orders.flatten()
            decode = (inverse_orders(orders) + offsets).flatten()
            # orders in the fused kernels' int32 (a cast per call was a copy kernel per SS2D layer)
            self._cache[key] = (orders.to(device, torch.int32), encode.to(device), decode.to(device))
        return self._cache[key]

    def orders(self, h: int, w: int, device: torch.device) -> Tensor:
        """(K, L) int32 scan orders of an h x w grid (sequence position t of direction k reads pixel
        [k, t])."""
        return self._indices(h, w, device)[0]

    def encode(self, x: Tensor) -> Tensor:  # (B, D, H, W) -> (B, K, D, L)
        b, d, h, w = x.shape
        _, index, _ = self._indices(h, w, x.device)
        xs = x.flatten(2).index_select(2, index)  # (B, D, K*L)
        return xs.view(b, d, self.directions, h * w).transpose(1, 2)

    def decode(self, ys: Tensor, h: int, w: int) -> Tensor:  # (B, K, D, L) -> (B, D, L), summed over K
        b, k, d, length = ys.shape
        _, _, index = self._indices(h, w, ys.device)
        ys = ys.transpose(1, 2).reshape(b, d, k * length).index_select(2, index)
        return ys.view(b, d, k, length).sum(2)


class SS2D(nn.Module):
    """2-D selective scan with hybrid scanning; parameters per direction, as in MambaAD/VMamba."""

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: int = 2,
        scan: str = "hilbert",
        directions: int = 8,
        distinct: bool = False,
        backend: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        d_inner = expand * dim  # D
        rank = math.ceil(dim / 16)  # R
        k = directions
        self.d_inner, self.d_state, self.dt_rank, self.backend = d_inner, d_state, rank, backend
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=True)
        self.scans = HybridScan(scan, directions, distinct)
        # per direction k: x -> (dt, B, C); dt -> delta (D channels); A, D skip per channel
        self.x_proj_weight = nn.Parameter(torch.empty(k, rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        self._init_ssm(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_floor: float) -> None:
        """Mamba's initialisation: S4D-real A, unit skip, dt log-uniform in [dt_min, dt_max]."""
        bound = self.d_inner**-0.5  # nn.Linear's default (kaiming-uniform, a=sqrt(5))
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_projs_weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand_like(self.dt_projs_bias) * math.log(dt_max / dt_min) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_logs.copy_(
            torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_logs)
        )
        self.Ds.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        b, h, w, _ = x.shape
        x, z = self._in_proj(x)  # 2 x (B, H, W, D)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))  # (B, D, H, W)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.A_logs.requires_grad)
        backend = resolve_backend(self.backend, x.device, needs_grad)
        if backend in FUSED_SCAN_BACKENDS:
            y = self._scan_fused(x, self._scan_u(x, needs_grad), backend)  # (B, D, L)
        else:
            y = self._scan_gathered(x, backend)
        y = self.out_norm(y.transpose(1, 2).reshape(b, h, w, -1).to(z.dtype))
        return self.out_proj(y * F.silu(z))

    def _in_proj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """in_proj's two halves. Without autograd as two products, so x comes out dense: a chunk of one
        product is a strided view the depthwise conv copies first (compiled inference: -0.16 ms of 12.2 per
        batch of 16 on an H200, session 12). With autograd one product: under dynamic shapes inductor
        (torch 2.14, CPU) fails on the depthwise conv's backward for the dense input."""
        if torch.is_grad_enabled():
            return self.in_proj(x).chunk(2, dim=-1)
        d = self.d_inner
        return F.linear(x, self.in_proj.weight[:d]), F.linear(x, self.in_proj.weight[d:])

    def _projections(self, xs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per direction: x -> x_dbl = (dt, B, C); dt -> delta. xs (B, K, D, L) -> delta (B, K, D, L),
        B and C (B, K, N, L)."""
        n, r = self.d_state, self.dt_rank
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)  # (B, K, R+2N, L)
        dts, Bs, Cs = x_dbl.split([r, n, n], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)  # (B, K, D, L)
        return dts, Bs, Cs

    def _scan_gathered(self, x: Tensor, backend: str) -> Tensor:
        """Gather K permuted copies, scan them, scatter back and sum (the official data flow)."""
        b, _, h, w = x.shape
        xs = self.scans.encode(x)  # (B, K, D, L)
        dts, Bs, Cs = self._projections(xs)
        ys = selective_scan(
            xs.reshape(b, -1, h * w).float(),
            dts.reshape(b, -1, h * w).float(),
            -torch.exp(self.A_logs.float()),
            Bs.float(),
            Cs.float(),
            self.Ds.float(),
            self.dt_projs_bias.flatten().float(),
            delta_softplus=True,
            backend=backend,
        )  # (B, K*D, L)
        return self.scans.decode(ys.view(b, self.scans.directions, -1, h * w), h, w)

    @staticmethod
    def _scan_u(x: Tensor, needs_grad: bool) -> Tensor:
        """The scan's u: under autocast without autograd x in fp32, cast here where torch.compile fuses the
        cast into the SiLU's kernel (the scan casts it itself otherwise, one more pass over u; training
        keeps x, whose bf16 copy autograd saves)."""
        return x if needs_grad else x.float()

    @torch.compiler.disable  # torch.compile leaves the fused scan kernels as they are (a graph break)
    def _scan_fused(self, x: Tensor, u: Tensor, backend: str) -> Tensor:
        """Triton / numba: x_proj on the raster map x, channels-last, the scan on u (x or its fp32 copy);
        the kernel reads and writes through the scan orders. dt_proj's low-rank input goes in with its
        weight: the numba kernel and Triton's unsplit step forward apply it per step (delta, K x D values
        per position, never stored), Triton's others compute delta first."""
        from mambaad.scan.triton_scan import direction_projection, hybrid_selective_scan

        b, d, h, w = x.shape
        x_cl = x.permute(0, 2, 3, 1).reshape(b, h * w, d)  # (B, L, D): one pixel's channels contiguous
        # (B, K, L, R+2N) in fp32 also under autocast: the Triton kernels read bf16 dt / B / C slower (H200,
        # session 5: bf16 training 186 -> 231 img/s with fp32 scan inputs); a bf16 u is cast in the scan.
        # Stored direction by direction: in (B, L, K, R+2N) memory, as a plain product writes it, the rows a
        # program gathers at neighbouring pixels lie K rows apart; adjacent, the 16 scan calls of a batch of
        # 16 took 7.47 -> 6.66 ms (H200, session 11). Under autocast at inference one Triton kernel writes
        # them so in fp32 (compiled bf16 inference 1,594.8 -> 1,629.4 img/s, session 16), else the product
        # is copied.
        A, x_proj_weight = self._scan_constants(x.dtype)
        x_dbl = direction_projection(x_cl, x_proj_weight)  # (B, K, L, R+2N) fp32
        parts = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=3)
        dts, Bs, Cs = (t.transpose(2, 3) for t in parts)  # (B, K, R, L), (B, K, N, L) x 2: views
        return hybrid_selective_scan(
            u.permute(0, 2, 3, 1).reshape(b, h * w, d).transpose(1, 2),  # (B, D, L) view of (B, L, D)
            dts,
            A,
            Bs,
            Cs,
            self.Ds.float(),
            self.dt_projs_bias.flatten().float(),
            self.scans.orders(h, w, x.device),
            backend=backend,
            dt_weight=self.dt_projs_weight,
        )

    def _scan_constants(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """A = -exp(A_logs) (K*D, N) fp32 and x_proj's weight in ``dtype``, x's (bf16 under autocast).

        In eval mode without autograd both are constants, kept instead of an exponential and a weight cast
        per layer and call (compiled bf16 inference on an H200: 1,584.4 -> 1,594.8 img/s, session 16). Kept
        until the next ``train()``/``eval()`` call or a new version of the parameters (a load, a move, an
        optimizer step; the fused AdamW steps in place without bumping the version, so the mode switch is
        what the trainer's evaluations rely on). In training, computed each call, the weight as it is (the
        projection's backward computes in the widest dtype of its inputs).
        """
        if torch.is_grad_enabled() or self.training:
            return -torch.exp(self.A_logs.float()), self.x_proj_weight
        params = (self.A_logs, self.x_proj_weight)
        stamp = (dtype, *((p.data_ptr(), p._version) for p in params))
        kept = _SCAN_CONSTANTS.get(self)
        if kept is None or kept[0] != stamp:
            kept = (stamp, (-torch.exp(self.A_logs.float()), self.x_proj_weight.to(dtype)))
            _SCAN_CONSTANTS[self] = kept
        return kept[1]

    def train(self, mode: bool = True) -> SS2D:
        _SCAN_CONSTANTS.pop(self, None)  # weights may change from here on (see _scan_constants)
        return super().train(mode)


# SS2D layer -> (stamp of its parameters' versions, its scan constants): outside the module, so that a
# pickled or copied model carries none
_SCAN_CONSTANTS: weakref.WeakKeyDictionary[SS2D, tuple[tuple, tuple[Tensor, Tensor]]] = (
    weakref.WeakKeyDictionary()
)

# backends that take the raster map and walk the scan orders inside the kernel (mambaad.scan.triton_scan)
FUSED_SCAN_BACKENDS = ("triton", "numba")


def resolve_backend(name: str, device: torch.device | str, needs_grad: bool = True) -> str:
    """The scan backend an SS2D layer runs; ``auto`` picks the fastest one that can run here.

    CUDA: the fused Triton scan when Triton imports. CPU: the numba scan when numba imports and no
    gradient is needed (it has no backward); otherwise the selective-scan default (``sequential``).
    """
    if name != "auto":
        return name
    device = torch.device(device)
    if device.type == "cuda":
        from mambaad.scan.triton_scan import triton_available

        if triton_available():
            return "triton"
    if device.type == "cpu" and not needs_grad:
        from mambaad.scan.numba_scan import numba_available

        if numba_available():
            return "numba"
    return default_backend(device)


class HSSBlock(nn.Module):
    """Hybrid State Space block: X + DropPath(SS2D(LayerNorm(X))); no MLP."""

    def __init__(self, dim: int, drop_path: float = 0.0, **ss2d_kwargs: object) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, **ss2d_kwargs)  # type: ignore[arg-type]
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C)
        return x + self.drop_path(self.ss2d(self.norm(x)))


def conv_in_silu(c: int, kernel: int, depthwise: bool) -> nn.Sequential:
    """Conv -> InstanceNorm (no affine) -> SiLU; depthwise convs have no bias."""
    conv = nn.Conv2d(c, c, kernel, padding=kernel // 2, groups=c if depthwise else 1, bias=not depthwise)
    return nn.Sequential(conv, nn.InstanceNorm2d(c), nn.SiLU())


class LocalBranch(nn.Module):
    """1x1 -> depthwise kxk -> 1x1, each followed by InstanceNorm and SiLU (the LSS local path)."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.pw_in = conv_in_silu(dim, 1, depthwise=False)
        self.dw = conv_in_silu(dim, kernel, depthwise=True)
        self.pw_out = conv_in_silu(dim, 1, depthwise=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        x = self.pw_in(x)
        # On CUDA the depthwise conv reads channels-last, so cuDNN runs it instead of PyTorch's NCHW kernel:
        # compiled inference -0.16 ms of 11.6 per batch of 16 (H200, session 14). oneDNN (CPU) was slower
        # channels-last at five of the six branch shapes.
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.pw_out(self.dw(x))


class LSSModule(nn.Module):
    """X + Conv1x1([HSS chain(X); Local5(X); Local7(X)]): global scans plus local convolutions.

    ``use_hss=False`` drops the HSS chain (convolutions only) and ``kernels=()`` the local branches (HSS
    only), the LSS ablation of the paper; the default builds both with the official parameter names.
    """

    def __init__(
        self,
        dim: int,
        num_hss: int,
        drop_path: float = 0.0,
        kernels: tuple[int, ...] = (5, 7),
        use_hss: bool = True,
        **ss2d_kwargs: object,
    ) -> None:
        super().__init__()
        if not use_hss and not kernels:
            raise ValueError("LSSModule needs the HSS chain or at least one local kernel")
        self.use_hss = use_hss
        blocks = num_hss if use_hss else 0
        self.hss = nn.Sequential(*[HSSBlock(dim, drop_path, **ss2d_kwargs) for _ in range(blocks)])
        self.local = nn.ModuleList([LocalBranch(dim, k) for k in kernels])
        self.fuse = nn.Conv2d(dim * (int(use_hss) + len(kernels)), dim, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        x_cf = x.permute(0, 3, 1, 2)  # (B, C, H, W)
        branches = [self.hss(x).permute(0, 3, 1, 2)] if self.use_hss else []
        branches += [branch(x_cf) for branch in self.local]
        return x + self.fuse(torch.cat(branches, dim=1)).permute(0, 2, 3, 1)


class PatchExpand(nn.Module):
    """2x upsampling: Linear(C_in -> 4*C_out), depth-to-space into 2x2 pixels, LayerNorm."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.expand = nn.Linear(c_in, 4 * c_out, bias=False)
        self.norm = nn.LayerNorm(c_out)

    def forward(self, x: Tensor) -> Tensor:  # (B, H, W, C_in) -> (B, 2H, 2W, C_out)
        b, h, w, _ = x.shape
        x = self.expand(x).view(b, h, w, 2, 2, -1)  # channel = (p1 * 2 + p2) * C_out + c
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, -1)
        return self.norm(x)


def lss_layout(depth: int) -> tuple[int, int]:
    """How a stage depth splits into (LSS modules, HSS blocks each): 3s first, then 2s (paper code)."""
    if depth % 3 == 0:
        return depth // 3, 3
    if depth % 2 == 0:
        return depth // 2, 2
    return 1, depth


class DecoderStage(nn.Module):
    """Optional PatchExpand followed by LSS modules."""

    def __init__(
        self, c_in: int, dim: int, depth: int, drop_paths: list[float], upsample: bool, **ss2d_kwargs: object
    ) -> None:
        super().__init__()
        self.upsample = PatchExpand(c_in, dim) if upsample else None
        modules, per_module = lss_layout(depth)
        # each LSS module uses the rate of its own index for all of its HSS blocks (paper code)
        self.blocks = nn.ModuleList(
            [LSSModule(dim, per_module, drop_paths[j], **ss2d_kwargs) for j in range(modules)]
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x


class MambaDecoder(nn.Module):
    """Reconstructs the encoder's three maps from the bottleneck; returns them shallow-first."""

    def __init__(
        self,
        dims: list[int],  # stage widths, deep to shallow, e.g. [512, 256, 128, 64]
        depths: tuple[int, ...] = (3, 4, 6, 3),
        drop_path_rate: float = 0.2,
        **ss2d_kwargs: object,
    ) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, sum(depths)).flip(0).tolist()  # largest near bottleneck
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            c_in = dims[i - 1] if i > 0 else dim
            drop_paths = rates[starts[i] : starts[i] + depth]
            self.stages.append(DecoderStage(c_in, dim, depth, drop_paths, upsample=i > 0, **ss2d_kwargs))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, C0, h, w) -> shallow-first list of (B, C_i, H_i, W_i)
        x = x.permute(0, 2, 3, 1)  # channels-last
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x.permute(0, 3, 1, 2))
        return outs[:0:-1]  # stages 3, 2, 1
