"""A tutorial-style DCGAN to compare against: pytorch/examples' `dcgan/main.py` on a folder of images.

Its 64x64 networks (ngf = ndf = 64, nz = 100, a Sigmoid on D trained with BCELoss), its initialisation, its
loop (D on a real batch labelled 1, then on G(z) labelled 0, then G against label 1; Adam 2e-4, beta1 0.5) and
its data pipeline (`ImageFolder` with Resize / CenterCrop / ToTensor / Normalize to 3 channels, a shuffling
DataLoader with 2 workers, batch 64), at main.py's defaults, with its per-step log line, its sample sheets every
100 steps and its per-epoch `netG_epoch_N.pth`. Two things are added for `benchmarks/quality_vs_time.py`:

- `--time-limit S`: stop after the first step that ends S seconds after `--start-time` (default: when this
  script started), as if stopped by hand then;
- `--snapshot-every S`: after the first step that ends past each multiple of S seconds, and at step 0 and at
  the end, save G's weights to `OUTF/snapshots/netG-step-NNNNNNN.pth` and a line (step, images seen, seconds)
  to `OUTF/snapshots/index.jsonl`.

A folder without class subfolders (UTKFace, the benchmark's PNG folders) is read as one class, since
`ImageFolder` insists on subfolders; the files, loader and transforms are the same.

    python benchmarks/reference_dcgan.py --dataroot FOLDER --outf runs/reference --niter 1
"""

# ruff: noqa: E402  (the clock starts before the imports, which are most of a start-up)
from __future__ import annotations

import time

STARTED = time.time()  # before torch is imported: start-up counts, as it does for a command-line run

import argparse
import json
import os
import random
from pathlib import Path
from typing import Any

import torch
import torch.utils.data
import torchvision.datasets as dset
import torchvision.transforms as transforms
import torchvision.utils as vutils
from torch import nn

NC = 3  # main.py's channel count for a folder of images


class Generator(nn.Module):
    """main.py's netG: z (nz x 1 x 1) -> 4x4 -> 8x8 -> 16x16 -> 32x32 -> nc x 64 x 64, Tanh."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = NC) -> None:
        super().__init__()

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """main.py's netD: nc x 64 x 64 -> one probability per image (a Sigmoid, for BCELoss)."""

    def __init__(self, ndf: int = 64, nc: int = NC) -> None:
        super().__init__()

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]

        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4), *down(ndf * 4, ndf * 8),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def weights_init(m: nn.Module) -> None:
    """main.py's initialisation: conv weights N(0, 0.02), batchnorm scales N(1, 0.02) and biases 0."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class FlatFolder(torch.utils.data.Dataset):
    """`ImageFolder` for a folder with no class subfolders: every image file under it, sorted, label 0."""

    def __init__(self, root: str, transform: Any) -> None:
        self.files = sorted(
            os.path.join(d, f)
            for d, _, names in os.walk(root, followlinks=True)
            for f in names
            if f.lower().endswith(dset.folder.IMG_EXTENSIONS)
        )
        if not self.files:
            raise SystemExit(f"error: no image files under {root}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(dset.folder.default_loader(self.files[i])), 0


def image_folder(root: str, size: int = 64) -> torch.utils.data.Dataset:
    transform = transforms.Compose([
        transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])  # fmt: skip
    has_classes = any(entry.is_dir() for entry in os.scandir(root))
    return dset.ImageFolder(root=root, transform=transform) if has_classes else FlatFolder(root, transform)


class Snapshots:
    """G's weights at wall-clock points, with the step, images seen and seconds since the start."""

    def __init__(self, outf: Path, every: float | None, start: float) -> None:
        self.folder, self.every, self.start = outf / "snapshots", every, start
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index = self.folder / "index.jsonl"
        self.next = every or float("inf")
        self.last_step = -1

    def due(self) -> bool:
        return time.time() - self.start >= self.next

    def save(self, net_g: nn.Module, step: int, images: int) -> None:
        if step == self.last_step:
            return
        file = self.folder / f"netG-step-{step:07d}.pth"
        torch.save(net_g.state_dict(), file)
        seconds = time.time() - self.start
        with self.index.open("a") as f:
            f.write(
                json.dumps({"step": step, "images": images, "seconds": round(seconds, 3), "file": file.name}) + "\n"
            )
        self.last_step = step
        while self.every and self.next <= seconds:
            self.next += self.every


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataroot", required=True, help="a folder of images")
    p.add_argument("--workers", type=int, default=2, help="data loading workers")
    p.add_argument("--batchSize", type=int, default=64, help="input batch size")
    p.add_argument("--nz", type=int, default=100, help="size of the latent z vector")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--niter", type=int, default=25, help="number of epochs to train for")
    p.add_argument("--lr", type=float, default=0.0002)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--outf", default=".", help="folder for sample sheets, checkpoints and snapshots")
    p.add_argument("--manualSeed", type=int)
    p.add_argument("--time-limit", type=float, help="stop after the first step ending this many seconds in")
    p.add_argument("--snapshot-every", type=float, help="save G every this many seconds (and at the start and end)")
    p.add_argument("--start-time", type=float, help="the clock's zero, as time.time() (default: this script's start)")
    opt = p.parse_args()
    start = opt.start_time or STARTED
    outf = Path(opt.outf)
    outf.mkdir(parents=True, exist_ok=True)
    if opt.manualSeed is None:
        opt.manualSeed = random.randint(1, 10000)
    print(opt)
    random.seed(opt.manualSeed)
    torch.manual_seed(opt.manualSeed)

    dataset = image_folder(opt.dataroot)
    loader = torch.utils.data.DataLoader(dataset, batch_size=opt.batchSize, shuffle=True, num_workers=opt.workers)
    net_g, net_d = Generator(opt.nz, opt.ngf), Discriminator(opt.ndf)
    net_g.apply(weights_init)
    net_d.apply(weights_init)
    criterion = nn.BCELoss()
    fixed_noise = torch.randn(opt.batchSize, opt.nz, 1, 1)
    real_label, fake_label = 1.0, 0.0
    opt_d = torch.optim.Adam(net_d.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))

    snapshots = Snapshots(outf, opt.snapshot_every, start)
    step = images = 0
    snapshots.save(net_g, step, images)
    out_of_time = False
    for epoch in range(opt.niter):
        for i, (real, _) in enumerate(loader):
            # D: a real batch labelled 1, then a fake batch labelled 0, one optimiser step for both.
            net_d.zero_grad()
            batch = real.size(0)
            label = torch.full((batch,), real_label)
            output = net_d(real)
            err_d_real = criterion(output, label)
            err_d_real.backward()
            d_x = output.mean().item()
            fake = net_g(torch.randn(batch, opt.nz, 1, 1))
            label.fill_(fake_label)
            output = net_d(fake.detach())
            err_d_fake = criterion(output, label)
            err_d_fake.backward()
            d_g_z1 = output.mean().item()
            opt_d.step()
            # G: the same fake batch, labelled real (the non-saturating loss).
            net_g.zero_grad()
            label.fill_(real_label)
            output = net_d(fake)
            err_g = criterion(output, label)
            err_g.backward()
            d_g_z2 = output.mean().item()
            opt_g.step()
            step, images = step + 1, images + batch

            print(f"[{epoch}/{opt.niter}][{i}/{len(loader)}] Loss_D: {(err_d_real + err_d_fake).item():.4f} "
                  f"Loss_G: {err_g.item():.4f} D(x): {d_x:.4f} D(G(z)): {d_g_z1:.4f} / {d_g_z2:.4f}", flush=True)  # fmt: skip
            if i % 100 == 0:
                vutils.save_image(real, outf / "real_samples.png", normalize=True)
                vutils.save_image(
                    net_g(fixed_noise).detach(), outf / f"fake_samples_epoch_{epoch:03d}.png", normalize=True
                )
            out_of_time = opt.time_limit is not None and time.time() - start >= opt.time_limit
            if snapshots.due() or out_of_time:
                snapshots.save(net_g, step, images)
            if out_of_time:
                break
        torch.save(net_g.state_dict(), outf / f"netG_epoch_{epoch}.pth")
        torch.save(net_d.state_dict(), outf / f"netD_epoch_{epoch}.pth")
        if out_of_time:
            break
    snapshots.save(net_g, step, images)
    print(f"Done: {step} steps, {images} images, {time.time() - start:.1f} s.")


if __name__ == "__main__":
    main()
