"""The V-JEPA objective and collapse diagnostics."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["jepa_loss", "variance_reg", "token_spread_penalty", "standardize_per_clip", "sigreg", "random_directions",
           "normalize_targets", "feature_stats"]


def normalize_targets(h: torch.Tensor) -> torch.Tensor:
    """Layer norm over the feature dimension without affine parameters (eps 1e-5, as ``F.layer_norm``)."""
    return F.layer_norm(h, (h.size(-1),))


def standardize_per_clip(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each feature over the tokens of its clip: ``(h - mean_tokens) / std_tokens`` for ``[B, N, D]``.

    Applied after :func:`normalize_targets` by ``loss.target_norm: clip`` (experimental, not in the
    reference): what is common to the whole clip is removed from the targets, so the predictor is
    scored only on how hidden tokens differ from the rest of their clip, and its targets cannot
    become clip-global (their within-clip spread is 1 by construction).
    """
    mean = h.mean(dim=1, keepdim=True)
    var = h.var(dim=1, keepdim=True, unbiased=False)
    return (h - mean) * torch.rsqrt(var + eps)


def jepa_loss(pred: torch.Tensor, target: torch.Tensor, loss_exp: float = 1.0) -> torch.Tensor:
    """``mean(|pred - target| ** p) / p`` over batch, tokens and features (p = 1: plain L1)."""
    return (pred - target).abs().pow(loss_exp).mean() / loss_exp


def variance_reg(preds: list[torch.Tensor]) -> torch.Tensor:
    """V-JEPA 1's (unused by default) regulariser: ``mean(relu(1 - std_tokens))`` of the predictions."""
    pstd = sum(torch.sqrt(p.float().var(dim=1) + 1e-4) for p in preds) / len(preds)  # [B, D]
    return F.relu(1.0 - pstd).mean()


def token_spread_penalty(z: torch.Tensor, target: float = 0.5) -> torch.Tensor:
    """Hinge on the spread of the *encoder's* tokens within each clip (experimental, not in the reference).

    ``mean(relu(target - std_tokens(LN(z))))`` for ``z`` ``[B, K, D]``: each feature of the layer-normed
    tokens should vary across the tokens of a clip by at least ``target``, which works against the drift
    to clip-global features seen at small scale (``loss.token_var_coeff``, default 0 = off).
    """
    zn = F.layer_norm(z.float(), (z.size(-1),))
    std = torch.sqrt(zn.var(dim=1) + 1e-4)  # [B, D]
    return F.relu(target - std).mean()


def sigreg(z: torch.Tensor, directions: torch.Tensor, num_points: int = 17, t_max: float = 5.0) -> torch.Tensor:
    """Sketched isotropic-Gaussian regulariser (SIGReg, as LeJEPA describes it; experimental here).

    ``z`` ``[..., D]`` (every row one sample), ``directions`` ``[D, M]`` unit vectors. Each projection
    ``z @ directions[:, m]`` is compared with a standard normal by the Epps-Pulley statistic
    ``integral w(t) |phi_emp(t) - exp(-t^2/2)|^2 dt`` with ``w(t) = exp(-t^2/2)``, evaluated with the
    trapezoid rule on ``[0, t_max]`` (the integrand is even); the mean over directions is returned.
    0 for N(0, I) samples; a collapsed or anisotropic set of samples scores up to ~0.5.
    """
    with torch.autocast(z.device.type, enabled=False):  # cos/sin of bf16 projections would be too coarse
        x = z.reshape(-1, z.shape[-1]).float() @ directions.to(z.device, torch.float32)  # [N, M]
        t = torch.linspace(0.0, t_max, num_points, device=x.device)
        xt = x.unsqueeze(-1) * t  # [N, M, P]
        re, im = torch.cos(xt).mean(0), torch.sin(xt).mean(0)  # [M, P]
        gauss = torch.exp(-0.5 * t * t)
        integrand = ((re - gauss) ** 2 + im ** 2) * gauss
        return 2.0 * torch.trapezoid(integrand, t, dim=-1).mean()


def random_directions(dim: int, num: int, generator: torch.Generator) -> torch.Tensor:
    """``[dim, num]`` directions drawn uniformly on the sphere from ``generator``."""
    d = torch.randn(dim, num, generator=generator)
    return d / d.norm(dim=0, keepdim=True)


@torch.no_grad()
def feature_stats(x: torch.Tensor, max_rows: int = 4096) -> dict[str, float]:
    """Collapse diagnostics of token features ``[B, K, D]``.

    ``std``: per-feature standard deviation over all tokens of the batch, averaged over features
    (0 means every token maps to the same vector). ``token_std``: the same within each clip, averaged
    over clips (low while ``std`` stays high means the features became clip-global).
    ``erank``: effective rank, ``exp(entropy)`` of the normalised singular values of the centred
    ``[B*K, D]`` matrix (1 = collapsed to a line, D = isotropic).
    """
    x = x.detach().float()
    b, k, d = x.shape
    flat = x.reshape(-1, d)
    if flat.shape[0] > max_rows:
        idx = torch.linspace(0, flat.shape[0] - 1, max_rows).long()
        flat = flat[idx]
    std = flat.std(dim=0).mean().item()
    token_std = x.std(dim=1).mean().item() if k > 1 else 0.0
    s = torch.linalg.svdvals(flat - flat.mean(0, keepdim=True))
    p = s / s.sum().clamp_min(1e-12)
    erank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()).item()
    return {"std": std, "token_std": token_std, "erank": erank}
