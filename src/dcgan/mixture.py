"""Sampling from a mixture of G's recent snapshots: every sample is drawn by one of the last few generators.

A GAN's G does not settle: it keeps moving the mass of its samples between the modes of the data as D catches
up with it. On the 9,780 UTKFace faces (64x64, 2,400 steps), the share of samples a race classifier read as
Indian was 17.6%, 7.1%, 5.9%, 6.3%, 16.8%, 4.5%, 19.0% and 27.8% at checkpoints 200 steps apart (15.4% of the
training faces): any one checkpoint over- or under-draws some group by chance. Averaging the weights (an EMA)
does not help: the averaged G settled on the majority (men at 0.63x of their share, Indian faces at 0.38x).
Averaging the *distributions* does: a sample drawn by a generator chosen at random among the last four
snapshots comes from the mixture of their distributions, in which the swings cancel. On that run the mixture
of the newest four drew every gender and race group but one within 0.75-1.33x of its share among the training
faces and lowered FID (docs/metrics.md, "A mixture of snapshots"). The ensembles-of-snapshots idea is
Wang, Zhang & van de Weijer (2016), "Ensembles of generative adversarial networks".

Which member draws a sample depends on its z alone (`member_of`), so a z file or a seed's i-th latent keeps
meaning one image of the mixture. Tools that move through z-space (walks, arithmetic, projection, the web
explorer, and the numbered sheets that name their exemplars) use one generator, the checkpoint's own: neighbouring
z's would otherwise hop between members.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dcgan.models import Generator

#: How finely z's first coordinate is cut before the cuts are dealt to the members in turn.
_CUTS = 4096


def member_of(z: torch.Tensor, members: int) -> torch.Tensor:
    """The member (0 ... members - 1) that draws each row of z: z's first coordinate, cut into many thin slices
    dealt to the members in turn, so that any prior spreads its rows evenly over the members and a given z always
    goes to the same one."""
    if members == 1:
        return torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    slice_ = torch.floor(z[:, 0].double() * _CUTS).long()
    return torch.remainder(slice_, members)


class SnapshotMixture(nn.Module):
    """Several generators of one run as one: `forward(z)` draws each row of z with the member `member_of` picks.

    It has a generator's attributes (nz, prior, image size, channels, classes), so sampling, evaluation and
    `dcgan.sample.generate` take it wherever they take a `Generator`. `members[0]` is the newest.
    """

    def __init__(self, members: Sequence[Generator], steps: Sequence[int]) -> None:
        super().__init__()
        if not members or len(members) != len(steps):
            raise ValueError("a mixture needs at least one generator and one step per generator")
        first = members[0]
        self.members = nn.ModuleList(members)
        #: The training step each member was taken at, newest first.
        self.steps = tuple(int(s) for s in steps)
        self.image_size, self.channels, self.nz, self.ngf = first.image_size, first.channels, first.nz, first.ngf
        self.prior, self.num_classes, self.classes = first.prior, first.num_classes, first.classes
        self.conditioning, self.class_shares = first.conditioning, getattr(first, "class_shares", None)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        which = member_of(z, len(self.members))
        out: torch.Tensor | None = None
        for k, member in enumerate(self.members):
            rows = torch.nonzero(which == k).flatten()
            if len(rows) == 0:
                continue
            part = member(z[rows], *(() if labels is None else (labels[rows],)))
            if out is None:
                out = part.new_empty(z.shape[0], *part.shape[1:])
            out[rows] = part
        assert out is not None or z.shape[0] == 0
        return out if out is not None else torch.empty(0, self.channels, self.image_size, self.image_size)


def drawn_by(generator: object) -> str:
    """What the commands print after a checkpoint's name: `, a mixture of G's snapshots at steps 1,900, 1,800,
    1,600` for a mixture, '' for one generator."""
    if not isinstance(generator, SnapshotMixture):
        return ""
    return f", a mixture of G's snapshots at steps {', '.join(f'{s:,}' for s in generator.steps)}"
