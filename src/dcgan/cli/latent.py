"""`dcgan interpolate`, `dcgan project`, `dcgan arithmetic`, `dcgan direction`: walks and sums in z.

Every command takes a run folder or checkpoint first and `--out DIR`, and writes its pictures beside a
`record.json` holding the checkpoint, its step, the seed and every option, so the result can be made again.

A class-conditional generator needs `--class NAME|ID` (everything drawn, and images projected, in that class)
or, for interpolate, arithmetic and direction, `--every-class`: the same z drawn in every class, one panel per
class, so what z carries (style) and what the label carries (the class) can be told apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dcgan.cli.common import non_negative_int, positive_float, positive_int

if TYPE_CHECKING:
    from PIL import Image

    from dcgan.models import Generator
    from dcgan.run import Run


def add_common(
    p: argparse.ArgumentParser, seed_help: str = "seed of the sample sheet that numbers name", every_class: bool = True
) -> None:
    p.add_argument("run", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--out", type=Path, required=True, help="folder for the pictures and record.json")
    p.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA copy exists")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--class", dest="class_", metavar="NAME|ID",
                   help="a class-conditional generator: draw (and project images) in this class")  # fmt: skip
    if every_class:
        p.add_argument("--every-class", action="store_true",
                       help="a class-conditional generator: draw the same z in every class, one panel per class")  # fmt: skip


def add_projection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("projection (for image files given as exemplars)")
    g.add_argument("--project-steps", type=positive_int, default=200, help="Adam steps on z (default 200)")
    g.add_argument("--restarts", type=positive_int, default=4, help="random starts per image, best kept (default 4)")
    g.add_argument("--project-lr", type=positive_float, default=0.05, help="Adam learning rate on z (default 0.05)")
    g.add_argument("--feature-weight", type=float, default=0.0, help="weight of a loss on D's features (default 0)")
    g.add_argument("--encoder-steps", type=non_negative_int, default=0, help="fit an encoder on G's samples for this many steps to make the first start (default 0: none)")  # fmt: skip


def open_run(args: argparse.Namespace) -> tuple[Run, dict[str, Any], Generator]:
    """(the opened run, facts for the record, generator in eval mode) of the command's RUN argument.

    The generator draws what `--class` names (a `ClassGenerator` of a conditional G); with `--every-class` it is
    the conditional G itself, and `drawn_classes` gives one generator per class. The classes go into the facts.
    """
    from dcgan.conditional import ClassGenerator, class_list, in_class
    from dcgan.run import Run

    run = Run.open(args.run, device=args.device)
    facts = {"checkpoint": str(run.path), "step": run.step, "prior": run.prior, "nz": run.config.nz}
    generator = run.generator(ema=not args.no_ema)
    every = getattr(args, "every_class", False)
    if every and args.class_ is not None:
        raise _config_error("Give --class or --every-class, not both.")
    if every and not generator.num_classes:
        raise _config_error("--every-class needs a class-conditional generator, and this one is unconditional.")
    if generator.num_classes and not every and args.class_ is None:
        flags = "--class NAME|ID or --every-class" if hasattr(args, "every_class") else "--class NAME|ID"
        raise _config_error(
            f"This generator is class-conditional: give {flags} (its classes: {class_list(generator)})."
        )
    if every:
        facts["classes"] = list(generator.classes)
        return run, facts, generator
    drawn = in_class(generator, args.class_)
    if isinstance(drawn, ClassGenerator):
        facts["class"] = {"id": drawn.label, "name": drawn.class_name}
    return run, facts, drawn


def drawn_classes(args: argparse.Namespace, generator: Generator) -> list[tuple[str | None, Generator]]:
    """(class name, generator of z) for each panel a command draws: every class with `--every-class`, else the
    one generator `open_run` gave (name None)."""
    from dcgan.conditional import ClassGenerator

    if getattr(args, "every_class", False):
        return [(name, ClassGenerator(generator, k)) for k, name in enumerate(generator.classes)]  # type: ignore[misc]
    return [(None, generator)]


def per_class(panels: list[tuple[str | None, Image.Image]]) -> Image.Image:
    """One panel, or one panel per class, one above the other, each captioned with its class."""
    from dcgan.latent import labelled, vstack

    if len(panels) == 1 and panels[0][0] is None:
        return panels[0][1]
    return vstack([labelled(panel, f"class {name}") for name, panel in panels], gap=8)


def write_record(out: Path, command: str, args: argparse.Namespace, facts: dict[str, Any], **results: Any) -> Path:
    """`record.json`: the command, its options, the checkpoint and the results, enough to make it again."""
    from dcgan import __version__

    options = {
        k.rstrip("_"): (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("func", "command")
    }  # `class_` (a keyword's dest) is recorded as `class`
    record = {"command": f"dcgan {command}", "dcgan_version": __version__, **facts, "options": options, **results}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "record.json"
    path.write_text(json.dumps(record, indent=2, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def projector(args: argparse.Namespace, run: Run, generator: Generator) -> Any:
    """The function that brings image files into z with the command's projection options."""
    from dcgan.conditional import ClassGenerator
    from dcgan.projection import fit_encoder, load_image_files, project

    fitted: list[Any] = []  # the encoder, fitted once on first use and shared by every group of the command

    def into_z(paths: list[Path]) -> torch.Tensor:
        if generator.num_classes:  # --every-class: which class the images show is not known
            raise _config_error("Images are projected within one class: give --class with the class they show.")
        if args.feature_weight > 0 and isinstance(generator, ClassGenerator):
            raise _config_error("--feature-weight needs an unconditional run; a conditional D reads labels too.")
        images = load_image_files(paths, generator.image_size, generator.channels)
        discriminator = run.discriminator() if args.feature_weight > 0 else None
        if args.encoder_steps and not fitted:
            fitted.append(fit_encoder(generator, steps=args.encoder_steps, seed=args.seed))
        encoder = fitted[0] if fitted else None
        result = project(
            generator, images, steps=args.project_steps, restarts=args.restarts, lr=args.project_lr,
            discriminator=discriminator, feature_weight=args.feature_weight, encoder=encoder, seed=args.seed,
        )  # fmt: skip
        return result.z

    return into_z


def exemplars(args: argparse.Namespace, spec: str, run: Run, generator: Generator) -> Any:
    from dcgan.latent import resolve_ids

    return resolve_ids(spec, generator.nz, generator.prior, args.seed, projector(args, run, generator))


# ----------------------------------------------------------------------------------------------- commands


def register(sub: Any) -> None:
    p = sub.add_parser("interpolate", help="walk through z between random or given points (Figure 4)")
    add_common(p, "seed of the sample sheet: walk r goes from sheet number 2r to 2r+1 unless --points is given")
    p.add_argument("--points", metavar="IDS", help="a chain through these exemplars (sheet numbers, .npy, images)")
    p.add_argument("--rows", type=positive_int, default=8, help="random walks when no --points (default 8)")
    p.add_argument("--steps", type=positive_int, default=10, help="images per walk or leg, ends included (default 10)")
    p.add_argument("--method", choices=("linear", "slerp"), default="slerp", help="straight or spherical (default)")
    add_projection(p)
    p.set_defaults(func=run_interpolate)

    p = sub.add_parser("project", help="find z that reconstructs real images")
    add_common(p, "seed of the random starts (and of the encoder's training)", every_class=False)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    add_projection(p)
    p.set_defaults(func=run_project)

    p = sub.add_parser("arithmetic", help="vector arithmetic on mean exemplars: A - B + C (Figure 7)")
    add_common(p)
    p.add_argument("--a", required=True, metavar="IDS", help="exemplars of A: sheet numbers, .npy z files or images")
    p.add_argument("--b", required=True, metavar="IDS", help="exemplars of B, subtracted")
    p.add_argument("--c", required=True, metavar="IDS", help="exemplars of C, added")
    p.add_argument("--noise", type=float, default=0.25, help="scale of the uniform noise on the result (default 0.25)")
    p.add_argument("--n-noisy", type=non_negative_int, default=8, help="noisy copies of the result (default 8)")
    add_projection(p)
    p.set_defaults(func=run_arithmetic)

    p = sub.add_parser("direction", help="a direction between two groups and a sweep of samples along it (Figure 8)")
    add_common(p)
    p.add_argument("--a", metavar="IDS", help="exemplars of the end the direction points to")
    p.add_argument("--b", metavar="IDS", help="exemplars of the end it points away from")
    p.add_argument("--labels-from", type=Path, metavar="FOLDER", help="a folder whose file names carry labels")
    p.add_argument("--label-field", type=non_negative_int, default=1, help="'_'-separated field of the name holding the label (default 1: UTKFace gender)")  # fmt: skip
    p.add_argument("--a-label", help="label value of group A (e.g. 1 for UTKFace female)")
    p.add_argument("--b-label", help="label value of group B (e.g. 0 for UTKFace male)")
    p.add_argument(
        "--per-group", type=positive_int, default=24, help="labelled images projected per group (default 24)"
    )
    p.add_argument("--starts", metavar="IDS", help="where the sweeps start (default: sheet numbers 0..rows-1)")
    p.add_argument("--rows", type=positive_int, default=6, help="sweeps when no --starts (default 6)")
    p.add_argument("--steps", type=positive_int, default=9, help="samples per sweep (default 9)")
    p.add_argument("--span", type=positive_float, default=1.0, help="sweep z + t * direction for t in [-span, span]")
    add_projection(p)
    p.set_defaults(func=run_direction)


def run_interpolate(args: argparse.Namespace) -> int:
    from dcgan.latent import interpolate, interpolate_chain, save_frames, save_z, walk_frames
    from dcgan.sample import generate, grid_image, latents

    run, facts, generator = open_run(args)
    if args.steps < 2:
        raise _config_error(f"--steps must be at least 2, got {args.steps}.")
    sources: list[str]
    if args.points:
        points = exemplars(args, args.points, run, generator)
        if points.z.shape[0] < 2:
            raise _config_error("--points needs at least 2 exemplars.")
        z = interpolate_chain(points.z, args.steps, args.method)
        legs = points.z.shape[0] - 1
        rows_index = torch.cat([leg * (args.steps - 1) + torch.arange(args.steps) for leg in range(legs)])
        rows, sources = 1, points.sources
    else:
        ends = latents(2 * args.rows, generator.nz, generator.prior, args.seed)
        z = torch.cat([interpolate(ends[2 * r], ends[2 * r + 1], args.steps, args.method) for r in range(args.rows)])
        rows_index, rows = torch.arange(z.shape[0]), args.rows
        sources = [f"sheet {2 * r} -> {2 * r + 1} (seed {args.seed})" for r in range(args.rows)]
    drawn = [(name, generate(g, z)) for name, g in drawn_classes(args, generator)]
    args.out.mkdir(parents=True, exist_ok=True)
    per_class([(name, grid_image(images[rows_index], nrow=args.steps)) for name, images in drawn]).save(
        args.out / "walk.png"
    )
    per_frame = [walk_frames(images, rows, z.shape[0] // rows) for _, images in drawn]  # the same walk in each class
    frames = [per_class([(name, f[t]) for (name, _), f in zip(drawn, per_frame)]) for t in range(len(per_frame[0]))]
    save_frames(frames, args.out / "walk.gif")
    save_z(z, args.out / "z.npy")
    write_record(args.out, "interpolate", args, facts, exemplars=sources, outputs=["walk.png", "walk.gif", "z.npy"])
    count = sum(images.shape[0] for _, images in drawn)
    print(f"Wrote {count} walk images to {args.out / 'walk.png'} and {args.out / 'walk.gif'}.")
    return 0


def run_project(args: argparse.Namespace) -> int:
    from dcgan.latent import labelled, save_z, vstack
    from dcgan.projection import fit_encoder, load_image_files, project
    from dcgan.sample import grid_image

    run, facts, generator = open_run(args)
    if args.feature_weight > 0 and "class" in facts:
        raise _config_error("--feature-weight needs an unconditional run; a conditional D reads labels too.")
    images = load_image_files(args.images, generator.image_size, generator.channels)
    encoder = fit_encoder(generator, steps=args.encoder_steps, seed=args.seed) if args.encoder_steps else None
    discriminator = run.discriminator() if args.feature_weight > 0 else None
    result = project(
        generator, images, steps=args.project_steps, restarts=args.restarts, lr=args.project_lr,
        discriminator=discriminator, feature_weight=args.feature_weight, encoder=encoder, seed=args.seed,
    )  # fmt: skip
    nrow = min(images.shape[0], 8)
    figure = vstack(
        [labelled(grid_image(images, nrow), "images"), labelled(grid_image(result.reconstructions, nrow), "G(z)")]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    figure.save(args.out / "projection.png")
    save_z(result.z, args.out / "z.npy")
    per_image = [
        {"image": str(p), "mse_start": float(f"{float(s):.4g}"), "mse": float(f"{float(e):.4g}")}
        for p, s, e in zip(args.images, result.start_error, result.error)
    ]
    write_record(args.out, "project", args, facts, images=per_image, outputs=["projection.png", "z.npy"])
    print(
        f"Projected {images.shape[0]} images: mean pixel MSE {float(result.start_error.mean()):.4f} at the best start, "
        f"{float(result.error.mean()):.4f} after {args.project_steps} steps; z in {args.out / 'z.npy'}."
    )
    return 0


def run_arithmetic(args: argparse.Namespace) -> int:
    from dcgan.latent import arithmetic_figure, save_z, vector_arithmetic

    run, facts, generator = open_run(args)
    groups = {name: exemplars(args, getattr(args, name), run, generator) for name in "abc"}
    za, zb, zc = (groups[name].z for name in "abc")
    results = [
        (name, vector_arithmetic(g, za, zb, zc, noise=args.noise, n_noisy=args.n_noisy, seed=args.seed))
        for name, g in drawn_classes(args, generator)
    ]  # the same z in every class: noise and sums do not depend on the class
    args.out.mkdir(parents=True, exist_ok=True)
    per_class([(name, arithmetic_figure(result)) for name, result in results]).save(args.out / "arithmetic.png")
    result = results[0][1]
    save_z(torch.cat([result.result[None], result.noisy]), args.out / "z.npy")
    write_record(
        args.out, "arithmetic", args, facts, exemplars={k: g.sources for k, g in groups.items()},
        outputs=["arithmetic.png", "z.npy (row 0: A - B + C, then the noisy copies)"],
    )  # fmt: skip
    print(f"Wrote {args.out / 'arithmetic.png'} (A - B + C and {args.n_noisy} noisy copies) and its z in z.npy.")
    return 0


def run_direction(args: argparse.Namespace) -> int:
    from dcgan.latent import attribute_direction, label_groups, save_z
    from dcgan.sample import grid_image, latents

    by_ids, by_labels = bool(args.a or args.b), bool(args.labels_from or args.a_label or args.b_label)
    if by_ids == by_labels or (by_ids and not (args.a and args.b)) or (by_labels and not (args.labels_from and args.a_label and args.b_label)):  # fmt: skip
        raise _config_error("Give either --a IDS and --b IDS, or --labels-from FOLDER with --a-label and --b-label.")
    run, facts, generator = open_run(args)
    if by_ids:
        a, b = exemplars(args, args.a, run, generator), exemplars(args, args.b, run, generator)
        za, zb, sources = a.z, b.z, {"a": a.sources, "b": b.sources}
    else:
        files = label_groups(args.labels_from, args.label_field, [args.a_label, args.b_label], args.per_group)
        project = projector(args, run, generator)
        za, zb = project(files[0]), project(files[1])
        sources = {"a": [str(f) for f in files[0]], "b": [str(f) for f in files[1]]}
    starts = (
        exemplars(args, args.starts, run, generator).z
        if args.starts
        else latents(args.rows, generator.nz, generator.prior, args.seed)
    )
    results = [
        (name, attribute_direction(g, za, zb, starts, steps=args.steps, span=args.span))
        for name, g in drawn_classes(args, generator)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    panels = [(name, grid_image(result.images, nrow=args.steps)) for name, result in results]
    per_class(panels).save(args.out / "direction.png")
    result = results[0][1]
    save_z(result.direction[None], args.out / "direction.npy")
    save_z(za, args.out / "a.npy")  # the groups' z, so a new sweep (--a a.npy --b b.npy) needs no new projection
    save_z(zb, args.out / "b.npy")
    write_record(
        args.out, "direction", args, facts, exemplars=sources, amounts=result.amounts,
        direction_norm=float(result.direction.norm()), outputs=["direction.png", "direction.npy", "a.npy", "b.npy"],
    )  # fmt: skip
    print(f"Wrote {args.out / 'direction.png'} ({starts.shape[0]} sweeps of {args.steps}) and direction.npy.")
    return 0


def _config_error(message: str) -> Exception:
    from dcgan.errors import ConfigError

    return ConfigError(message)
