"""FAB-T (multi-targeted FAB, one restart) without host syncs, as a torchattacks attack.

``torchattacks.FAB`` reproduces the reference's FAB-T exactly, but every one of its 100
iterations per target class synchronises the GPU several times (``is_adv.sum() > 0``,
``nonzero``, the boolean-mask indexing inside the hyperplane projections, whose result sizes
must reach the host). This subclass runs the same arithmetic on full-size tensors with masks
(``torch.where``), so a FAB-T iteration is a straight queue of kernels. It also takes the input
gradient with ``torch.autograd.grad`` instead of ``backward()``, so model parameters' ``.grad``
are not touched. Anything other than multi-targeted FAB with one restart (the AutoAttack
setting) falls back to torchattacks' implementation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchattacks


def projection_linf(points_to_project: torch.Tensor, w_hyperplane: torch.Tensor, b_hyperplane: torch.Tensor) -> torch.Tensor:
    """``torchattacks.attacks.fab.projection_linf`` (= the reference's) with masks instead of subsets."""
    t, w, b = points_to_project, w_hyperplane.clone(), b_hyperplane.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).float()
    d = (a - t) * (w != 0).float()
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(w.shape[0], device=w.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        indcurr = indp.gather(1, indp.size(1) - 1 - counter2)
        b2 = (sb.gather(1, counter2) - s.gather(1, counter2) * p.gather(1, indcurr)).squeeze(1)
        c = b - b2 > 0
        lb = torch.where(c, counter4, lb)
        ub = torch.where(c, ub, counter4)
    lb = lb.long().unsqueeze(1)
    lmbd_l = torch.clamp_min((b - sb[:, -1]) / (-s[:, -1]), min=0).unsqueeze(-1)
    d = torch.where(c_l.unsqueeze(1), (2 * a - 1) * lmbd_l, d)
    lmbd_opt = torch.clamp_min((b - sb.gather(1, lb).squeeze(1)) / (-s.gather(1, lb).squeeze(1)), min=0).unsqueeze(-1)
    d = torch.where(c2.unsqueeze(1), torch.min(lmbd_opt, d) * a + torch.max(-lmbd_opt, d) * (1 - a), d)
    return d * (w != 0).float()


def projection_l2(points_to_project: torch.Tensor, w_hyperplane: torch.Tensor, b_hyperplane: torch.Tensor) -> torch.Tensor:
    """``torchattacks.attacks.fab.projection_l2`` (= the reference's) with masks instead of subsets."""
    t, w, b = points_to_project, w_hyperplane.clone(), b_hyperplane
    c = (w * t).sum(1) - b
    ind2 = 2 * (c >= 0) - 1
    w.mul_(ind2.unsqueeze(1))
    c.mul_(ind2)
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = F.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w**2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).float())
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(w.shape[0], device=w.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        c3_ = s.gather(1, counter2).squeeze(1) + c > 0
        lb = torch.where(c3_, counter4, lb)
        ub = torch.where(c3_, ub, counter4)
    lb = lb.long().unsqueeze(1)
    alpha4 = c / w5.squeeze(-1)
    d = torch.where(c4.unsqueeze(1), -alpha4.unsqueeze(-1) * w, d)
    ws_lb = ws.gather(1, lb).squeeze(1)
    alpha = (s.gather(1, lb).squeeze(1) + c) / ws_lb + rs.gather(1, lb).squeeze(1)
    alpha = torch.where(ws_lb == 0, torch.zeros_like(alpha), alpha)
    c5 = (alpha.unsqueeze(-1) > r).float()
    d = torch.where(c2.unsqueeze(1), d * c5 - alpha.unsqueeze(-1) * w * (1 - c5), d)
    return d * (w.abs() > 1e-8).float()


class FABT(torchattacks.FAB):
    """FAB-T over the top ``n_target_classes`` classes (AutoAttack: 9), 100 iterations each."""

    def __init__(self, model, norm="Linf", eps=8 / 255, steps=100, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
                 seed=0, n_target_classes=9):
        super().__init__(model, norm=norm, eps=eps, steps=steps, n_restarts=n_restarts, alpha_max=alpha_max, eta=eta,
                         beta=beta, seed=seed, multi_targeted=True, n_classes=n_target_classes + 1)

    def _flat(self, v: torch.Tensor) -> torch.Tensor:
        v = v.reshape(v.shape[0], -1)
        return v.abs().max(dim=1)[0] if self.norm == "Linf" else (v**2).sum(dim=-1).sqrt()

    def perturb(self, x, y):
        if self.n_restarts != 1 or self.norm not in ("Linf", "L2"):
            return super().perturb(x, y)
        adv = x.clone()
        with torch.no_grad():
            logits = self.get_logits(x)
            acc = logits.max(1)[1] == y
            n_targets = min(self.n_target_classes, logits.shape[1] - 1)
            for target_class in range(2, n_targets + 2):
                ind = acc.nonzero().flatten()
                if ind.numel() == 0:
                    break
                x_to_fool, y_to_fool = x[ind], y[ind]
                adv_curr = self._single_run(x_to_fool, y_to_fool, target_class)
                acc_curr = self.get_logits(adv_curr).max(1)[1] == y_to_fool
                acc_curr = torch.max(acc_curr, self._flat(x_to_fool - adv_curr) > self.eps)
                fooled = ~acc_curr
                acc[ind[fooled]] = False
                adv[ind[fooled]] = adv_curr[fooled]
        return adv

    def _diff_logits_grads_targeted(self, imgs, la, la_target):
        u = torch.arange(imgs.shape[0], device=imgs.device)
        im = imgs.clone().requires_grad_()
        with torch.enable_grad():
            out = self.get_logits(im)
            diffy = -(out[u, la] - out[u, la_target])
            (grad,) = torch.autograd.grad(diffy.sum(), [im])
        return diffy.detach().unsqueeze(1), grad.unsqueeze(1)

    def _single_run(self, x, y, target_class):
        """``attack_single_run_targeted`` without a random start (restart 0)."""
        ndims = x.dim() - 1
        col = (-1,) + (1,) * ndims
        logits = self.get_logits(x)
        pred = logits.max(1)[1] == y
        la_target = logits.sort(dim=-1)[1][:, -target_class]
        im2, la2, la_target2 = x, y, la_target
        bs = im2.shape[0]
        u1 = torch.arange(bs, device=x.device)
        adv = im2.clone()
        res2 = 1e10 * torch.ones([bs], device=x.device)
        x1 = im2.clone()
        x0 = im2.clone().reshape([bs, -1])
        project = projection_linf if self.norm == "Linf" else projection_l2
        for _ in range(self.steps):
            df, dg = self._diff_logits_grads_targeted(x1, la2, la_target2)
            if self.norm == "Linf":
                dist1 = df.abs() / (1e-12 + dg.abs().reshape(dg.shape[0], dg.shape[1], -1).sum(dim=-1))
            else:
                dist1 = df.abs() / (1e-12 + (dg**2).reshape(dg.shape[0], dg.shape[1], -1).sum(dim=-1).sqrt())
            ind = dist1.min(dim=1)[1]
            dg2 = dg[u1, ind]
            b = -df[u1, ind] + (dg2 * x1).reshape(x1.shape[0], -1).sum(dim=-1)
            w = dg2.reshape([bs, -1])
            d3 = project(torch.cat((x1.reshape([bs, -1]), x0), 0), torch.cat((w, w), 0), torch.cat((b, b), 0))
            d1 = torch.reshape(d3[:bs], x1.shape)
            d2 = torch.reshape(d3[-bs:], x1.shape)
            if self.norm == "Linf":
                a0 = d3.abs().max(dim=1, keepdim=True)[0].view(-1, *[1] * ndims)
            else:
                a0 = (d3**2).sum(dim=1, keepdim=True).sqrt().view(-1, *[1] * ndims)
            a0 = torch.max(a0, 1e-8 * torch.ones(a0.shape, device=x.device))
            a1 = a0[:bs]
            a2 = a0[-bs:]
            alpha = torch.min(torch.max(a1 / (a1 + a2), torch.zeros(a1.shape, device=x.device)),
                              self.alpha_max * torch.ones(a1.shape, device=x.device))
            x1 = ((x1 + self.eta * d1) * (1 - alpha) + (im2 + d2 * self.eta) * alpha).clamp(0.0, 1.0)
            is_adv = self.get_logits(x1).max(1)[1] != la2
            t = self._flat(x1 - im2)
            better = is_adv & (t < res2)
            adv = torch.where(better.view(col), x1, adv)
            res2 = torch.where(better, t, res2)
            x1 = torch.where(is_adv.view(col), im2 + (x1 - im2) * self.beta, x1)
        succ = (res2 < 1e10) & pred
        return torch.where(succ.view(col), adv, x)
