"""Square Attack with AutoAttack's settings, as a torchattacks attack that batches across chunks.

``torchattacks.Square`` follows the reference closely, but AutoAttack needs
``resc_schedule=False`` (torchattacks' default is True), its Linf branch lacks the reference's
``s = min(s, min(h, w))`` guard, and — the real reason for this subclass — the random square
position and colour of every query are *shared by all points of a batch*. To attack many of the
reference's batches ("chunks") in one forward pass and still reproduce its numbers, each chunk
gets its own random stream and its own square per query.

Linf (the common case) is fully vectorised: the per-query draws of a chunk have a fixed size, so
they are drawn up front, and the loop only re-selects the still-unbroken points every few
queries (a host sync), masking updates in between. L2 draws depend on how many points of a chunk
are left, so it re-selects every query. Both reproduce the reference (``pyautoattack``,
``square.py``) point for point.
"""

from __future__ import annotations

import math

import torch
import torchattacks

from unlearnbench.robust.aa.apgd import _ChunkedMixin, chunk_ids


class Square(_ChunkedMixin, torchattacks.Square):
    def __init__(self, model, norm="Linf", eps=8 / 255, n_queries=5000, n_restarts=1, p_init=0.8, seed=0,
                 resc_schedule=False, compact_every: int | None = None):
        super().__init__(model, norm=norm, eps=eps, n_queries=n_queries, n_restarts=n_restarts, p_init=p_init,
                         loss="margin", resc_schedule=resc_schedule, seed=seed)
        self.compact_every = compact_every

    def forward(self, images, labels):
        adv, _ = self.perturb_chunks(images.clone().detach().to(self.device), labels.clone().detach().to(self.device))
        return adv

    # -- pieces shared with the reference --------------------------------------------------------

    def margin_and_loss(self, x, y):
        logits = self.get_logits(x)
        u = torch.arange(x.shape[0], device=x.device)
        y_corr = logits[u, y].clone()
        logits[u, y] = -float("inf")
        margin = y_corr - logits.max(dim=-1)[0]
        return margin, margin

    def _eta(self, s: int, gen: torch.Generator) -> torch.Tensor:
        delta = torch.zeros([s, s], device=self.device)
        delta[: s // 2] = self.eta_rectangles(s // 2, s)
        delta[s // 2 :] = -1.0 * self.eta_rectangles(s - s // 2, s)
        delta /= (delta**2).sum(dim=(0, 1), keepdim=True).sqrt()
        if torch.rand([1], generator=gen) > 0.5:
            delta = delta.permute([1, 0])
        return delta

    def _choice(self, shape, gen: torch.Generator) -> torch.Tensor:
        return torch.sign(2 * torch.rand(shape, generator=gen).to(self.device) - 1)

    @staticmethod
    def _int(high: int, gen: torch.Generator) -> int:
        return int((high * torch.rand([1], generator=gen)).long())

    # -- driver ----------------------------------------------------------------------------------

    def perturb_chunks(self, x: torch.Tensor, y: torch.Tensor, sizes: list[int] | None = None):
        """Returns ``(adv, acc)``; ``acc`` marks points the attack did not break."""
        self.init_hyperparam(x)
        x = x.detach().clone().float()
        y = y.detach().clone().long()
        rows_chunk = chunk_ids(sizes, len(x))
        gens = self._generators(int(rows_chunk.max()) + 1 if len(x) else 1)
        with torch.no_grad():
            acc = self.get_logits(x).max(1)[1] == y
            adv = x.clone()
            for _ in range(self.n_restarts):
                ind = acc.nonzero().flatten()
                if ind.numel() == 0:
                    continue
                chunks = rows_chunk[ind.cpu()]
                if self.norm == "Linf":
                    adv_curr = self._linf(x[ind], y[ind], chunks, gens, predraw=self.n_restarts == 1)
                else:
                    adv_curr = self._l2(x[ind], y[ind], chunks, gens)
                acc_curr = self.get_logits(adv_curr).max(1)[1] == y[ind]
                fooled = ~acc_curr
                acc[ind[fooled]] = False
                adv[ind[fooled]] = adv_curr[fooled]
        return adv, acc

    def _update(self, state, idx, x_new, y_curr, act):
        """The reference's acceptance rule, applied to rows ``idx`` where ``act`` is set."""
        x_best, margin_min, loss_min = state
        x_best_curr, margin_min_curr, loss_min_curr = x_best[idx], margin_min[idx], loss_min[idx]
        margin, loss = self.margin_and_loss(x_new, y_curr)
        idx_improved = (loss < loss_min_curr).float()
        new_loss = idx_improved * loss + (1.0 - idx_improved) * loss_min_curr
        idx_miscl = (margin <= 0.0).float()
        idx_improved = torch.max(idx_improved, idx_miscl)
        new_margin = idx_improved * margin + (1.0 - idx_improved) * margin_min_curr
        idx_improved = idx_improved.reshape([-1, 1, 1, 1])
        new_x = idx_improved * x_new + (1.0 - idx_improved) * x_best_curr
        if act is None:
            loss_min[idx], margin_min[idx], x_best[idx] = new_loss, new_margin, new_x
        else:
            loss_min[idx] = torch.where(act, new_loss, loss_min_curr)
            margin_min[idx] = torch.where(act, new_margin, margin_min_curr)
            x_best[idx] = torch.where(act.view(-1, 1, 1, 1), new_x, x_best_curr)

    def _linf(self, x, y, chunks, gens, predraw: bool):
        c, h, w = x.shape[1:]
        n_features = c * h * w
        dev = x.device
        counts = torch.bincount(chunks, minlength=len(gens)).tolist()
        init = torch.cat([torch.rand([n, c, 1, w], generator=gens[k]) for k, n in enumerate(counts) if n]).to(dev)
        x_best = torch.clamp(x + self.eps * torch.sign(2 * init - 1), 0.0, 1.0)
        margin_min, loss_min = self.margin_and_loss(x_best, y)
        state = (x_best, margin_min, loss_min)
        if bool((margin_min < 0.0).all()):
            return x_best
        per_query = 2 + c  # row offset, column offset, one sign per channel
        table = None
        if predraw:
            # One chunk consumes exactly `per_query` uniforms per query, so all of them can be drawn
            # now: torch.rand is sequential on the CPU generator (n draws == one draw of n).
            table = torch.zeros(len(gens), self.n_queries, per_query)
            for k, n in enumerate(counts):
                if n:
                    table[k] = torch.rand(self.n_queries * per_query, generator=gens[k]).view(self.n_queries, per_query)
            table = table.to(dev)
        every = self.compact_every or (8 if dev.type == "cuda" else 1)
        if not predraw:
            every = 1
        rows_chunk = chunks.to(dev)
        ar_h = torch.arange(h, device=dev)
        ar_w = torch.arange(w, device=dev)
        idx = None
        for i_iter in range(self.n_queries):
            if i_iter % 500 == 0:
                self._note(f"query {i_iter}/{self.n_queries}")
            if i_iter % every == 0:
                idx = (margin_min > 0.0).nonzero().flatten()
                if idx.numel() == 0:
                    break
                x_curr, y_curr, rc = x[idx], y[idx], rows_chunk[idx]
                act = None if every == 1 else torch.ones(len(idx), dtype=torch.bool, device=dev)
            elif act is not None:
                act = margin_min[idx] > 0.0
            p = self.p_selection(i_iter)
            s = max(int(round(math.sqrt(p * n_features / c))), 1)
            s = min(s, min(h, w))
            if predraw:
                u = table[:, i_iter][rc]
            else:
                live = torch.unique(chunks[idx.cpu()]).tolist()
                step = torch.zeros(len(gens), per_query)
                for k in live:
                    step[k, 0] = torch.rand([1], generator=gens[k])
                    step[k, 1] = torch.rand([1], generator=gens[k])
                    step[k, 2:] = torch.rand([c, 1, 1], generator=gens[k]).flatten()
                u = step.to(dev)[rc]
            vh = ((h - s) * u[:, 0]).long().view(-1, 1)
            vw = ((w - s) * u[:, 1]).long().view(-1, 1)
            sign = torch.sign(2 * u[:, 2:] - 1)
            in_h = (ar_h >= vh) & (ar_h < vh + s)
            in_w = (ar_w >= vw) & (ar_w < vw + s)
            square = (in_h[:, None, :, None] & in_w[:, None, None, :]).float()
            new_deltas = (2.0 * self.eps) * sign[:, :, None, None] * square
            x_new = torch.min(torch.max(x_best[idx] + new_deltas, x_curr - self.eps), x_curr + self.eps)
            x_new = torch.clamp(x_new, 0.0, 1.0)
            self._update(state, idx, x_new, y_curr, act)
        return x_best

    def _l2(self, x, y, chunks, gens):
        c, h, w = x.shape[1:]
        n_features = c * h * w
        dev = x.device
        eps = self.eps

        def ranges(rc: torch.Tensor) -> list[tuple[int, int, int]]:
            """(chunk, start, end) of the consecutive rows of each chunk present in ``rc``."""
            out, start = [], 0
            counts = torch.bincount(rc, minlength=len(gens)).tolist()
            for k, n in enumerate(counts):
                if n:
                    out.append((k, start, start + n))
                    start += n
            return out

        delta_init = torch.zeros_like(x)
        s = h // 5
        sp_init = (h - s * 5) // 2
        spans = ranges(chunks)
        vh = sp_init + 0
        for _ in range(h // s):
            vw = sp_init + 0
            for _ in range(w // s):
                for k, a, b in spans:
                    e = self._eta(s, gens[k]).reshape(1, 1, s, s)
                    delta_init[a:b, :, vh : vh + s, vw : vw + s] += e * self._choice([b - a, c, 1, 1], gens[k])
                vw += s
            vh += s
        x_best = torch.clamp(x + self.normalize_delta(delta_init) * eps, 0.0, 1.0)
        margin_min, loss_min = self.margin_and_loss(x_best, y)
        state = (x_best, margin_min, loss_min)
        if bool((margin_min < 0.0).all()):
            return x_best

        for i_iter in range(self.n_queries):
            if i_iter % 500 == 0:
                self._note(f"query {i_iter}/{self.n_queries}")
            idx = (margin_min > 0.0).nonzero().flatten()
            if idx.numel() == 0:
                break
            x_curr, y_curr = x[idx], y[idx]
            x_best_curr = x_best[idx]
            delta_curr = x_best_curr - x_curr
            p = self.p_selection(i_iter)
            s = max(int(round(math.sqrt(p * n_features / c))), 3)
            if s % 2 == 0:
                s += 1
            s = min(s, min(h, w))
            parts = []
            for k, a, b in ranges(chunks[idx.cpu()]):
                g = gens[k]
                dc, xc = delta_curr[a:b], x_curr[a:b]
                vh, vw = self._int(h - s, g), self._int(w - s, g)
                mask_1 = torch.zeros_like(xc)
                mask_1[:, :, vh : vh + s, vw : vw + s] = 1.0
                norms_window_1 = (dc[:, :, vh : vh + s, vw : vw + s] ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
                vh2, vw2 = self._int(h - s, g), self._int(w - s, g)
                mask_2 = torch.zeros_like(xc)
                mask_2[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 1.0
                norms_image = self.lp_norm(x_best_curr[a:b] - xc)
                mask_image = torch.max(mask_1, mask_2)
                norms_windows = ((dc * mask_image) ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
                new_deltas = torch.ones([b - a, c, s, s], device=dev)
                new_deltas *= self._eta(s, g).reshape(1, 1, s, s) * self._choice([b - a, c, 1, 1], g)
                old_deltas = dc[:, :, vh : vh + s, vw : vw + s] / (1e-12 + norms_window_1)
                new_deltas += old_deltas
                new_deltas = new_deltas / (1e-12 + (new_deltas**2).sum(dim=(-2, -1), keepdim=True).sqrt()) * (
                    torch.max((eps * torch.ones_like(new_deltas)) ** 2 - norms_image**2, torch.zeros_like(new_deltas)) / c
                    + norms_windows**2
                ).sqrt()
                dc[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 0.0
                dc[:, :, vh : vh + s, vw : vw + s] = new_deltas + 0
                parts.append(torch.clamp(xc + self.normalize_delta(dc) * eps, 0.0, 1.0))
            self._update(state, idx, torch.cat(parts), y_curr, None)
        return x_best
