"""APGD and APGD-T with the reference (AutoAttack) loop, as torchattacks attacks.

Why not ``torchattacks.APGD`` / ``APGDT`` as they are:

- their defaults run 10 iterations (AutoAttack: 100) and ``APGDT`` picks ``n_classes - 1`` targets
  (AutoAttack: the top 9); both are just parameters, but
- ``APGDT`` with the L2 norm moves every point with the step size of the *first* point
  (``step_size[0]``), the DLR-targeted denominator is written in a different floating-point order,
  and both copy the loss history to the host and run the step-size checks in NumPy on every
  iteration (a GPU→CPU sync per step);
- to attack many points at once and still draw exactly the random starts that the reference
  implementation draws batch by batch, the random start must come from one stream per *chunk*
  (the reference's batch), not from the global generator.

So the classes below keep torchattacks' interface (``atk(x, y)``, model-mode handling, ``seed``)
and re-implement ``perturb`` / the single run after ``pyautoattack`` (Croce & Hein,
``autopgd_base.py``) line for line, with the step-size control kept on the device (masks instead
of ``nonzero`` indexing: no host sync inside the 100 iterations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchattacks


def _flat_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "Linf":
        return x.abs().view(x.shape[0], -1).max(1)[0]
    return (x**2).view(x.shape[0], -1).sum(-1).sqrt()


def _normalize(x: torch.Tensor, norm: str) -> torch.Tensor:
    t = _flat_norm(x, norm)
    return x / (t.view(-1, *([1] * (x.dim() - 1))) + 1e-12)


def _l2_norm_keepdim(x: torch.Tensor) -> torch.Tensor:
    return (x**2).view(x.shape[0], -1).sum(-1).sqrt().view(-1, *([1] * (x.dim() - 1)))


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_sorted, ind_sorted = logits.sort(dim=1)
    ind = (ind_sorted[:, -1] == y).float()
    u = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[u, y] - x_sorted[:, -2] * ind - x_sorted[:, -1] * (1.0 - ind)) / (
        x_sorted[:, -1] - x_sorted[:, -3] + 1e-12
    )


def dlr_loss_targeted(logits: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    x_sorted, _ = logits.sort(dim=1)
    u = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[u, y] - logits[u, y_target]) / (x_sorted[:, -1] - 0.5 * (x_sorted[:, -3] + x_sorted[:, -4]) + 1e-12)


def _check_oscillation(loss_steps: torch.Tensor, j: int, k: int, k3: float) -> torch.Tensor:
    t = torch.zeros(loss_steps.shape[1], device=loss_steps.device)
    for counter5 in range(k):
        t += (loss_steps[j - counter5] > loss_steps[j - counter5 - 1]).float()
    return (t <= k * k3 * torch.ones_like(t)).float()


def apgd_single_run(
    get_logits,
    x: torch.Tensor,
    y: torch.Tensor,
    noise: torch.Tensor,
    *,
    eps: float,
    norm: str,
    n_iter: int,
    rho: float = 0.75,
    eot_iter: int = 1,
    loss: str = "ce",
    y_target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run from the random start ``noise`` (uniform for Linf, Gaussian for L2).

    Returns ``(x_best, acc, loss_best, x_best_adv, zero_grad)`` like the reference, plus a bool per
    point: its first gradient is exactly zero (checked for the DLR losses only, as in the
    reference's ``check_zero_gradients``).
    """
    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)
    ndims = x.dim() - 1
    dev = x.device

    t = noise.to(dev)
    if norm == "Linf":
        t = 2 * t - 1
    x_adv = x + eps * torch.ones_like(x).detach() * _normalize(t, norm)
    x_adv = x_adv.clamp(0.0, 1.0)
    x_best = x_adv.clone()
    x_best_adv = x_adv.clone()
    loss_steps = torch.zeros([n_iter, x.shape[0]], device=dev)

    if loss == "ce":
        def criterion(logits):
            return F.cross_entropy(logits, y, reduction="none")
    elif loss == "dlr":
        def criterion(logits):
            return dlr_loss(logits, y)
    elif loss == "dlr-targeted":
        def criterion(logits):
            return dlr_loss_targeted(logits, y, y_target)
    else:
        raise ValueError(f"unknown APGD loss {loss!r}")

    def loss_and_grad(xa: torch.Tensor):
        xa.requires_grad_()
        grad = torch.zeros_like(x)
        for _ in range(eot_iter):
            with torch.enable_grad():
                logits = get_logits(xa)
                loss_indiv = criterion(logits)
                total = loss_indiv.sum()
            grad += torch.autograd.grad(total, [xa])[0].detach()
        grad /= float(eot_iter)
        return logits.detach(), loss_indiv.detach(), grad

    logits, loss_indiv, grad = loss_and_grad(x_adv)
    grad_best = grad.clone()
    zero_grad = torch.zeros(x.shape[0], dtype=torch.bool, device=dev)
    if loss != "ce":
        zero_grad = grad.view(grad.shape[0], -1).abs().sum(-1) == 0

    acc = logits.max(1)[1] == y
    loss_best = loss_indiv.clone()

    step_size = 2.0 * eps * torch.ones([x.shape[0], *([1] * ndims)], device=dev)
    x_adv_old = x_adv.clone()
    k = n_iter_2 + 0
    counter3 = 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones_like(loss_best)
    col = (-1,) + (1,) * ndims

    for i in range(n_iter):
        with torch.no_grad():
            x_adv = x_adv.detach()
            grad2 = x_adv - x_adv_old
            x_adv_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            if norm == "Linf":
                x_adv_1 = x_adv + step_size * torch.sign(grad)
                x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
                x_adv_1 = torch.clamp(
                    torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps), 0.0, 1.0
                )
            else:
                x_adv_1 = x_adv + step_size * _normalize(grad, norm)
                x_adv_1 = torch.clamp(
                    x + _normalize(x_adv_1 - x, norm) * torch.min(eps * torch.ones_like(x).detach(), _l2_norm_keepdim(x_adv_1 - x)),
                    0.0, 1.0,
                )
                x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
                x_adv_1 = torch.clamp(
                    x + _normalize(x_adv_1 - x, norm) * torch.min(eps * torch.ones_like(x).detach(), _l2_norm_keepdim(x_adv_1 - x)),
                    0.0, 1.0,
                )
            x_adv = x_adv_1 + 0.0

        logits, loss_indiv, grad = loss_and_grad(x_adv)
        with torch.no_grad():
            x_adv = x_adv.detach()
            pred = logits.max(1)[1] == y
            acc = torch.min(acc, pred)
            x_best_adv = torch.where(pred.view(col), x_best_adv, x_adv)

            y1 = loss_indiv
            loss_steps[i] = y1 + 0
            improved = y1 > loss_best
            x_best = torch.where(improved.view(col), x_adv, x_best)
            grad_best = torch.where(improved.view(col), grad, grad_best)
            loss_best = torch.where(improved, y1, loss_best)

            counter3 += 1
            if counter3 == k:
                fl_oscillation = _check_oscillation(loss_steps, i, k, rho)
                fl_reduce_no_impr = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best).float()
                fl_oscillation = torch.max(fl_oscillation, fl_reduce_no_impr)
                reduced_last_check = fl_oscillation.clone()
                loss_best_last_check = loss_best.clone()
                m = (fl_oscillation > 0).view(col)
                step_size = torch.where(m, step_size / 2.0, step_size)
                x_adv = torch.where(m, x_best, x_adv)
                grad = torch.where(m, grad_best, grad)
                counter3 = 0
                k = max(k - size_decr, n_iter_min)

    return x_best, acc, loss_best, x_best_adv, zero_grad


def chunk_ids(sizes: list[int] | None, n: int) -> torch.Tensor:
    """Chunk index of every row (CPU), for rows laid out chunk after chunk."""
    sizes = [n] if not sizes else list(sizes)
    if sum(sizes) != n:
        raise ValueError(f"chunk sizes {sizes} do not add up to {n} points")
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def draw_per_chunk(rows_chunk: torch.Tensor, gens: list[torch.Generator], shape: tuple[int, ...], gaussian: bool) -> torch.Tensor:
    """Concatenate, chunk by chunk, ``torch.rand/randn((count,) + shape)`` from each chunk's stream.

    This is exactly what the reference draws when it runs chunk by chunk with the global
    generator re-seeded at the start of every chunk.
    """
    counts = torch.bincount(rows_chunk, minlength=len(gens)).tolist()
    draw = torch.randn if gaussian else torch.rand
    parts = [draw((c, *shape), generator=gens[k]) for k, c in enumerate(counts) if c]
    return torch.cat(parts) if parts else torch.empty((0, *shape))


class _ChunkedMixin:
    """Per-chunk random streams seeded like the reference re-seeds its global generator.

    ``last_zero_grad`` marks, per row of the last call, the points whose first DLR gradient was
    exactly zero in any restart or target; ``zero_grad_points`` sums those marks over calls, so a
    point counts once per call (calls on disjoint batches add up to at most N).
    """

    seed: int
    # Set by the AutoAttack engine: called with a short note at each milestone of a stage
    # (an APGD-T target, a block of Square queries), so logs show progress within a stage.
    on_progress = None

    def _note(self, text: str) -> None:
        if self.on_progress is not None:
            self.on_progress(text)

    last_zero_grad: torch.Tensor | None = None
    zero_grad_points: int = 0

    def _note_zero_grad(self, mask: torch.Tensor) -> None:
        self.last_zero_grad = mask
        self.zero_grad_points += int(mask.sum())

    def _generators(self, n_chunks: int) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(int(self.seed)) for _ in range(n_chunks)]


class APGD(_ChunkedMixin, torchattacks.APGD):
    """Untargeted APGD (CE or DLR loss) with AutoAttack's defaults (100 iterations)."""

    def __init__(self, model, norm="Linf", eps=8 / 255, steps=100, n_restarts=1, seed=0, loss="ce", eot_iter=1, rho=0.75):
        super().__init__(model, norm=norm, eps=eps, steps=steps, n_restarts=n_restarts, seed=seed, loss=loss,
                         eot_iter=eot_iter, rho=rho)

    def forward(self, images, labels):
        adv, _ = self.perturb_chunks(images.clone().detach().to(self.device), labels.clone().detach().to(self.device))
        return adv

    def perturb_chunks(self, x: torch.Tensor, y: torch.Tensor, sizes: list[int] | None = None):
        """Attack ``x``; rows are grouped in consecutive chunks of ``sizes`` that each own a random
        stream. Returns ``(adv, acc)`` where ``acc`` marks points that stay correctly classified."""
        x = x.detach().clone().float()
        y = y.detach().clone().long()
        rows_chunk = chunk_ids(sizes, len(x))
        gens = self._generators(int(rows_chunk.max()) + 1 if len(x) else 1)
        with torch.no_grad():
            acc = self.get_logits(x).max(1)[1] == y
        adv = x.clone()
        zero = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.n_restarts):
            ind = acc.nonzero().flatten()
            if ind.numel() == 0:
                continue
            noise = draw_per_chunk(rows_chunk[ind.cpu()], gens, tuple(x.shape[1:]), gaussian=self.norm == "L2")
            _, acc_curr, _, adv_curr, zero_curr = apgd_single_run(
                self.get_logits, x[ind], y[ind], noise, eps=self.eps, norm=self.norm, n_iter=self.steps,
                rho=self.thr_decr, eot_iter=self.eot_iter, loss=self.loss,
            )
            zero[ind[zero_curr]] = True
            fooled = ~acc_curr
            acc[ind[fooled]] = False
            adv[ind[fooled]] = adv_curr[fooled]
        self._note_zero_grad(zero)
        return adv, acc


class APGDT(_ChunkedMixin, torchattacks.APGDT):
    """APGD on the targeted DLR loss against each of the top ``n_target_classes`` other classes."""

    def __init__(self, model, norm="Linf", eps=8 / 255, steps=100, n_restarts=1, seed=0, eot_iter=1, rho=0.75,
                 n_target_classes=9):
        super().__init__(model, norm=norm, eps=eps, steps=steps, n_restarts=n_restarts, seed=seed, eot_iter=eot_iter,
                         rho=rho, n_classes=n_target_classes + 1)

    def forward(self, images, labels):
        adv, _ = self.perturb_chunks(images.clone().detach().to(self.device), labels.clone().detach().to(self.device))
        return adv

    def perturb_chunks(self, x: torch.Tensor, y: torch.Tensor, sizes: list[int] | None = None):
        x = x.detach().clone().float()
        y = y.detach().clone().long()
        rows_chunk = chunk_ids(sizes, len(x))
        gens = self._generators(int(rows_chunk.max()) + 1 if len(x) else 1)
        with torch.no_grad():
            logits = self.get_logits(x)
            acc = logits.max(1)[1] == y
        n_targets = min(self.n_target_classes, logits.shape[1] - 1)
        adv = x.clone()
        zero = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for target_class in range(2, n_targets + 2):
            self._note(f"target {target_class - 1}/{n_targets}")
            for _ in range(self.n_restarts):
                ind = acc.nonzero().flatten()
                if ind.numel() == 0:
                    continue
                x_to_fool, y_to_fool = x[ind], y[ind]
                with torch.no_grad():
                    y_target = self.get_logits(x_to_fool).sort(dim=1)[1][:, -target_class]
                noise = draw_per_chunk(rows_chunk[ind.cpu()], gens, tuple(x.shape[1:]), gaussian=self.norm == "L2")
                _, acc_curr, _, adv_curr, zero_curr = apgd_single_run(
                    self.get_logits, x_to_fool, y_to_fool, noise, eps=self.eps, norm=self.norm, n_iter=self.steps,
                    rho=self.thr_decr, eot_iter=self.eot_iter, loss="dlr-targeted", y_target=y_target,
                )
                zero[ind[zero_curr]] = True
                fooled = ~acc_curr
                acc[ind[fooled]] = False
                adv[ind[fooled]] = adv_curr[fooled]
        self._note_zero_grad(zero)
        return adv, acc
