"""`dcgan ablate`, `dcgan find-filters`, `dcgan guided-backprop`: looking inside a trained model.

Like the latent commands, each takes a run folder or checkpoint first and `--out DIR`, and writes a
`record.json` beside its pictures.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcgan.cli.common import non_negative_int, positive_int
from dcgan.cli.latent import add_common, open_run, write_record


def register(sub: Any) -> None:
    p = sub.add_parser("ablate", help="drop filters of a G layer at every position and compare (Figure 6)")
    add_common(p, "seed of the samples (the sheet of `dcgan sample --seed S`)", every_class=False)
    p.add_argument("--layer", type=int, help="index into G.blocks (default: the second-highest hidden layer)")
    p.add_argument("--filters", required=True, metavar="LIST", help='filters to drop: "3,7,10-12" or "all"')
    p.add_argument("--n", type=positive_int, default=16, help="samples shown (default 16)")
    p.set_defaults(func=run_ablate)

    p = sub.add_parser("find-filters", help="filters whose activations mark boxed objects on samples")
    add_common(p, 'seed of the sheet the boxes were drawn on (default: the file\'s "seed", else 0)', every_class=False)
    p.set_defaults(seed=None)
    p.add_argument("--boxes", type=Path, required=True, metavar="FILE", help='JSON: {"seed": S, "boxes": {"12": [[x0, y0, x1, y1]]}}')  # fmt: skip
    p.add_argument("--layer", type=int, help="index into G.blocks (default: the second-highest hidden layer)")
    p.add_argument("--n", type=positive_int, default=16, help="fresh samples in the ablation picture (default 16)")
    p.add_argument("--drop-top", type=non_negative_int, default=0, help="filters dropped in the picture (default: all found)")  # fmt: skip
    p.set_defaults(func=run_find_filters)

    p = sub.add_parser("guided-backprop", help="guided backprop of D's features on their top samples (Figure 5)")
    add_common(p, "seed of the candidate samples and of the random D", every_class=False)
    p.add_argument("--features", default="0-5", metavar="LIST", help='channels of the D layer (default "0-5")')
    p.add_argument("--layer", type=int, default=-1, help="index into D.blocks (default -1: the last conv layer)")
    p.add_argument("--top", type=positive_int, default=4, help="top-activating samples per feature (default 4)")
    p.add_argument("--candidates", type=positive_int, default=256, help="samples searched (default 256)")
    p.set_defaults(func=run_guided_backprop)


def default_layer(generator: Any, layer: int | None) -> int:
    """The paper's choice, the second-highest hidden layer of G, unless a layer is given."""
    return len(generator.blocks) - 3 if layer is None else layer


def run_ablate(args: argparse.Namespace) -> int:
    from dcgan.inspection import drop_filters, num_filters, parse_filters
    from dcgan.latent import labelled, vstack
    from dcgan.sample import generate, grid_image, latents

    _, facts, generator = open_run(args)
    layer = default_layer(generator, args.layer)
    filters = parse_filters(args.filters, num_filters(generator, layer))
    z = latents(args.n, generator.nz, generator.prior, args.seed)
    before, after = generate(generator, z), drop_filters(generator, z, layer, filters)
    nrow = min(args.n, 8)
    figure = vstack(
        [
            labelled(grid_image(before, nrow), "samples"),
            labelled(grid_image(after, nrow), f"layer {layer}: {len(filters)} filters dropped"),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    figure.save(args.out / "ablation.png")
    change = float((after - before).abs().mean())
    write_record(
        args.out, "ablate", args, facts, layer=layer, filters=filters, mean_abs_change=change, outputs=["ablation.png"]
    )
    print(
        f"Dropped {len(filters)} filters of layer {layer}: mean pixel change {change:.4f}; see {args.out / 'ablation.png'}."
    )
    return 0


def run_find_filters(args: argparse.Namespace) -> int:
    from dcgan.errors import ConfigError
    from dcgan.inspection import drop_filters, find_filters, read_boxes
    from dcgan.latent import hstack, labelled, vstack
    from dcgan.sample import generate, grid_image, latents

    _, facts, generator = open_run(args)
    file_seed, masks = read_boxes(args.boxes, generator.image_size)
    if args.seed is not None and file_seed is not None and args.seed != file_seed:
        raise ConfigError(f"--seed {args.seed} differs from the boxes file's seed {file_seed}; the numbers would name other samples.")  # fmt: skip
    seed = args.seed if args.seed is not None else (file_seed or 0)
    args.seed = seed
    numbers = sorted(masks)
    z = latents(numbers[-1] + 1, generator.nz, generator.prior, seed)[numbers]
    layer = default_layer(generator, args.layer)
    marks = torch.from_numpy(np.stack([masks[i] for i in numbers]))
    search = find_filters(generator, z, marks, layer, seed)
    if not search.filters:
        raise ConfigError(f"No filter of layer {layer} has a positive weight for the boxes; mark more samples.")
    dropped = search.filters[: args.drop_top] if args.drop_top else search.filters
    fresh = latents(args.n, generator.nz, generator.prior, seed + 1)
    marked = generate(generator, z)
    shaded = marked.clone()
    inside = marks[:, None].expand_as(shaded)
    shaded[inside] = shaded[inside] * 0.5 + 0.5  # the boxes, lightened
    without = drop_filters(generator, z, layer, dropped)
    change = (without - marked).abs().mean(1)  # (n, S, S): how much each pixel moved when the filters went
    inside_change, outside_change = float(change[marks].mean()), float(change[~marks].mean())
    nrow = min(len(numbers), 8)
    top = hstack([labelled(grid_image(shaded, nrow), "marked samples"), labelled(grid_image(without, nrow), "filters dropped")])  # fmt: skip
    nrow = min(args.n, 8)
    bottom = hstack([labelled(grid_image(generate(generator, fresh), nrow), f"new samples (seed {seed + 1})"), labelled(grid_image(drop_filters(generator, fresh, layer, dropped), nrow), f"{len(dropped)} filters of layer {layer} dropped")])  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    vstack([top, bottom]).save(args.out / "filters.png")
    (args.out / "filters.txt").write_text(",".join(map(str, search.filters)) + "\n")
    write_record(
        args.out, "find-filters", args, facts, layer=layer, samples=numbers, filters=search.filters,
        weights=[round(float(w), 4) for w in search.weights], dropped=dropped, balanced_accuracy=search.accuracy,
        positions_inside=search.positives, positions_outside=search.negatives,
        mean_abs_change_inside_boxes=inside_change, mean_abs_change_outside_boxes=outside_change,
        outputs=["filters.png", "filters.txt"],
    )  # fmt: skip
    print(
        f"{len(search.filters)} of {len(search.weights)} filters of layer {layer} mark the boxes (balanced accuracy "
        f"{search.accuracy:.3f}); strongest: {','.join(map(str, search.filters[:10]))}. List in {args.out / 'filters.txt'}."
    )
    print(
        f"Dropping {len(dropped)} of them changes the marked samples by {inside_change:.3f} per pixel inside the boxes "
        f"and {outside_change:.3f} outside (pixels in [-1, 1])."
    )
    return 0


def run_guided_backprop(args: argparse.Namespace) -> int:
    from dcgan.inspection import gradient_images, guided_backprop, out_channels, parse_filters
    from dcgan.latent import hstack, labelled, row_labelled
    from dcgan.models import Discriminator
    from dcgan.sample import generate, grid_image, latents

    run, facts, generator = open_run(args)
    trained = run.discriminator()
    if "class" in facts:  # a conditional D judges the candidates as images of the class they were drawn in
        from dcgan.conditional import ClassDiscriminator

        trained = ClassDiscriminator(trained, facts["class"]["id"])
    if not -len(trained.blocks) <= args.layer < len(trained.blocks):
        from dcgan.errors import ConfigError

        raise ConfigError(
            f"--layer must be from {-len(trained.blocks)} to {len(trained.blocks) - 1}, got {args.layer}."
        )
    features = parse_filters(args.features, out_channels(trained.blocks[args.layer]))
    torch.manual_seed(args.seed)
    random = Discriminator(trained.image_size, trained.channels, trained.ndf).to(args.device).eval()
    images = generate(generator, latents(args.candidates, generator.nz, generator.prior, args.seed)).to(args.device)
    panels, results = [], {}
    for name, d in (("trained D", trained), ("random D", random)):
        found = guided_backprop(d, images, features, args.top, args.layer)
        grads = gradient_images(found.gradients.cpu()).flatten(0, 1)
        panels.append(labelled(grid_image(grads, args.top), name))
        results[name] = {"samples": found.indices, "strengths": found.strengths}
        if name == "trained D":
            top = grid_image(images[found.indices.flatten()].cpu(), args.top)
            rows = [f"f{f}" for f in features]
            panels.insert(0, labelled(row_labelled(top, rows, generator.image_size + 2, 2), "top samples"))
    args.out.mkdir(parents=True, exist_ok=True)
    hstack(panels, gap=8).save(args.out / "guided_backprop.png")
    write_record(
        args.out, "guided-backprop", args, facts, features=features, results=results, outputs=["guided_backprop.png"]
    )
    print(f"Wrote {args.out / 'guided_backprop.png'}: rows are features {args.features}, {args.top} top samples each.")
    return 0
