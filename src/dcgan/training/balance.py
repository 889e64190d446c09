"""`--balance-groups`: draw more often the real images of the groups G draws too rarely, measured as it trains.

`--class-weights black=3` needs its weight found by trial (a full run per guess: docs/training.md). This finds it
as the run goes. A classifier fitted on the groups (`dcgan extractor fit ... --labels-from-name race`) reads the
fake batch G draws for D every OBSERVE_EVERY steps, and every `--balance-every` steps each group's draw weight moves
by the log of its coverage error over those readings,

    w_g <- w_g * (share of g among the training images / share of g among the fakes, as read) ** GAIN,

and the weights are scaled so the draws' mean weight is 1 (a weight of 2: the group is drawn twice as often as
the data holds it) and kept within [1 / MAX_WEIGHT, MAX_WEIGHT]. A group G under-draws is then shown to D more
often, which makes D ask G for it; one G over-draws is shown less. An integral controller: the weights settle
where the samples' shares meet the data's. Reading the fakes of the steps themselves costs no sampling, and sums G's
swings between modes over the whole interval (a single snapshot's shares swing by 2x and more from one 200 steps on).

Each image's group is its label where the data's classes are the classifier's (a labelled set, or the field of
UTKFace-style names the classifier was fitted on), else the classifier's reading of it, so unlabelled data can be
balanced too. The fakes are steered to the images' groups, not to the classifier's reading of the training images:
G's samples are new images, and a classifier reads new images as it reads held-out ones, not as it reads those it
was fitted on (`cnn-utkface64-race` before calibration read 3.8% of its training faces as black, 2.4% of held-out
ones, 3.9% labelled). `dcgan extractor fit` calibrates a classifier so that it reads held-out images in their
labelled proportions, which makes the count of its readings of the fakes a fair measure of G's shares.

Several classifiers can balance at once, comma-separated (`--balance-groups cnn-utkface64-race,cnn-utkface64-gender`;
race alone left UTKFace's men drawn at 0.78x their share). Each steers its own groups as above, from its own reading
of the same fakes, and each image's draw weight is the product of its groups' weights, one per classifier (a
classifier that gives the image no group counts 1). Each one's readings already hold what the others' weights do
to its groups, so they need no coordination: each integrates its own error away (`JointBalance`).

What is read, `--balance-read`: "fakes" (the default) reads the fake batches of the training steps, as above;
"samples" reads, every `--snapshot-every` steps, samples of G's sampling copy (its EMA, batchnorm re-estimated: the
snapshot that step writes, what `dcgan sample` and `dcgan evaluate` draw from), SAMPLES_PER_UPDATE of them between
two updates. The two can differ: of a run steered on its fakes (faces, seed 0, 6,400 steps), the steering classifier
read Indian faces at 0.81-1.06x over the last quarter of the fakes, and at 0.82x among the mixture's samples. Steering
the samples steers what the user gets; it costs a sampling pass and a classifier pass per snapshot (not timed apart).

Whose reading, `--balance-by`: "ensemble" (the default) counts the classifier's own reading (an ensemble's: its
members' mean probability); "lowest-member" counts each member of an ensemble apart (each calibrated alone, as
`dcgan extractor fit` does since 2026-12-02) and takes each group's share as the member that reads it lowest. Race
classifiers disagree on G's ambiguous faces, and more between fits on different images than between members of one
fit: of one run's 10,000 samples (faces, seed 0, 2,790 steps), the steering ensemble read Indian faces at 0.85x, its
five members alone at 0.71-0.81x, and five classifiers fitted on another split (the judges) at 0.57-0.63x. Steering
the lowest reading raises a group until every member draws it; the weights settle where the groups' lowest readings
are even (a group the members agree on gives way to one they do not). The lowest shares do not add up to 1, so the
coverage a run logs then is the lowest member's, at or below what the ensemble would read. The members read the same
samples, so the lowest of them is low by their disagreement, not by five draws' worth of sampling noise.

"lowest-reader" counts the ensemble's own reading beside its members' and takes each group's lowest of them. The
members' mean is not the mean of their counts: a face that one member files as black and the others as Indian is
counted black by one member in five, and by their mean probability not at all (nor after the mean's own calibration
offsets). Steered by the lowest member (faces, seed 0, 2,851 steps), black faces fell to 0.67x by the steering
ensemble's mean while each of its members read them at 0.83-1.27x (the judges: 0.68x, members 0.75-1.11x), so the
lowest member never saw them drop; Indian faces had gone the other way. Counting both, a group gains weight when any
of the six readers reads it low.

Which images an epoch draws depends only on the weights in force at its first step, and the weights' history is
part of the training state: a resumed run, and every DDP rank, draws the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from dcgan.data.balance import per_image
from dcgan.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from dcgan.metrics.extractors import Ensemble, FeatureExtractor
    from dcgan.metrics.reference import Groups

#: How much of a group's log coverage error one update corrects: all of it. G answers a group's draw weight w with a
#: share that grows about as w ** 0.3 (UTKFace: black faces drawn 3x as often went from 0.45x to 0.63x), so the
#: error left after an update is about (1 - 0.3 * GAIN) of the one before: half of it (the first version) left 85%,
#: and "others", over-read by 1.3x, needed 16 updates (6,400 steps) to reach its floor.
GAIN = 1.0
#: The weights stay within [1 / MAX_WEIGHT, MAX_WEIGHT] of the data's own share (8 until 2026-12-01: "others" sat
#: at 1/8 with its coverage still 1.3x).
MAX_WEIGHT = 16.0
#: Steps between readings of the fake batch: a classifier pass on every 8th adds a few percent to a faces64 step.
OBSERVE_EVERY = 8
#: A group no fake showed counts as this share, not zero (a finite step up, still the largest there is).
FLOOR = 1e-3
#: `--balance-read samples`: how many samples are read between two updates, split over the readings (every
#: `--snapshot-every` steps) that fall between them; an Indian share of 15% is then counted to about +-6%.
SAMPLES_PER_UPDATE = 2048


def samples_per_reading(balance_every: int, snapshot_every: int) -> int:
    """How many samples one `--balance-read samples` reading draws: SAMPLES_PER_UPDATE over the readings between two
    updates (at least one), in whole batches of 64."""
    readings = max(1, balance_every // snapshot_every)
    return max(64, math.ceil(SAMPLES_PER_UPDATE / readings / 64) * 64)


def parse_balance_groups(text: str | None) -> list[str]:
    """`"cnn-utkface64-race, cnn-utkface64-gender"` -> ["cnn-utkface64-race", "cnn-utkface64-gender"]; "" -> [] (off).

    Raises:
        ConfigError: an empty part, or a classifier given twice.
    """
    if not (text or "").strip():
        return []
    names = [part.strip() for part in (text or "").split(",")]
    if not all(names):
        raise ConfigError(
            "--balance-groups takes extractor names separated by commas, e.g. cnn-utkface64-race,cnn-utkface64-gender;"
            f" {text!r} has an empty one."
        )
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise ConfigError(f"--balance-groups names {twice!r} twice; give each classifier once.")
    return names


#: The `--balance-by` values that read each member of an ensemble apart.
BY_MEMBERS = ("lowest-member", "lowest-reader")


def reads_members(extractor: FeatureExtractor, name: str, by: str) -> bool:
    """Whether `--balance-by by` counts each member of `extractor` apart: "lowest-member" or "lowest-reader" with an
    ensemble.

    Raises:
        ConfigError: either with an ensemble whose members were not calibrated each.
    """
    from dcgan.metrics.extractors import Ensemble

    if by not in BY_MEMBERS or not isinstance(extractor, Ensemble):
        return False
    if "members_calibrated" not in extractor.meta:
        raise ConfigError(
            f"--balance-by {by} reads each member of {name} alone, and its members were not calibrated each: "
            "fit it again with `dcgan extractor fit ... --members N`, calibrated (the default on a folder, --calibrate "
            "on a set with a test split; ensembles fitted before 2026-12-02 lack it)."
        )
    return True


@dataclass
class BalanceState:
    """The part of the training state `--balance-groups` adds: the weights and from which step each held.

    Attributes:
        history: (step, per-group weights) pairs in step order: the weights in force for an epoch are the last
            ones set at or before its first step (none: every weight 1).
        counts: how many fakes the classifier read as each group since the last update (empty: none yet).
        member_counts: the same for each member of an ensemble, with `--balance-by lowest-member` (and a last row
            for the ensemble's own reading with "lowest-reader").
    """

    history: list[tuple[int, list[float]]] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    #: `--balance-by lowest-member`: each member's counts since the last update, one row per member (else empty);
    #: "lowest-reader": the ensemble's own counts in a last row.
    member_counts: list[list[float]] = field(default_factory=list)

    def weights_at(self, step: int, groups: int) -> list[float]:
        """The per-group weights in force for an epoch that starts at `step`."""
        current = [1.0] * groups
        for since, weights in self.history:
            if since > step:
                break
            current = weights
        return current

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"history": [[step, list(w)] for step, w in self.history], "counts": list(self.counts)}
        if self.member_counts:
            state["member_counts"] = [list(row) for row in self.member_counts]
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any] | None) -> BalanceState:
        if not state:
            return cls()
        history = [(int(step), [float(w) for w in weights]) for step, weights in state["history"]]
        members = [[float(c) for c in row] for row in state.get("member_counts", [])]
        return cls(history, [float(c) for c in state.get("counts", [])], members)


def next_weights(
    weights: list[float], samples: torch.Tensor, target: torch.Tensor, images: torch.Tensor | None = None
) -> list[float]:
    """The weights after one update: each moved by GAIN of its log coverage error, then scaled to a mean of 1 over
    the images and clipped to [1 / MAX_WEIGHT, MAX_WEIGHT].

    Args:
        weights: the per-group weights now.
        samples: each group's share among G's samples (as the classifier reads them).
        target: what each group's share among the samples should be; a group with none keeps its weight.
        images: each group's share among the training images, which the mean is taken over (default `target`).
    """
    moved = [
        w * (float(t) / max(float(s), FLOOR)) ** GAIN if t > 0 else w
        for w, s, t in zip(weights, samples.tolist(), target.tolist(), strict=True)
    ]
    mass = (target if images is None else images).tolist()
    for _ in range(3):  # scale, clip, and scale again: a clipped group moves the others' mean a little
        mean = sum(w * float(m) for w, m in zip(moved, mass, strict=True)) or 1.0
        moved = [min(max(w / mean, 1 / MAX_WEIGHT), MAX_WEIGHT) for w in moved]
    return moved


class GroupBalancer:
    """Reads the groups of G's fakes as it trains and sets each training image's draw weight from them.

    Args:
        extractor: a classifier fitted on labelled groups (`class_names(extractor)` not None).
        groups: the training images' groups under its classes (`reference_groups`: labels, names or its reading).
        name: the extractor's name as the user gave it, for messages.
        every: steps between updates; the fakes are read every OBSERVE_EVERY steps, or at each update's if fewer.
        by: "ensemble", "lowest-member" or "lowest-reader" (module docstring; a single classifier is its own lowest
            member and reader).

    Raises:
        ConfigError: no training image has a group; "lowest-member" or "lowest-reader" with an ensemble whose members
            are not calibrated each.
    """

    def __init__(
        self, extractor: FeatureExtractor, groups: Groups, *, name: str, every: int, by: str = "ensemble"
    ) -> None:
        self.extractor, self.name = extractor, name
        #: Whether each member's reading is counted apart (`--balance-by lowest-member` with an ensemble).
        self.by_member = reads_members(extractor, name, by)
        #: Whether the ensemble's own reading is counted beside its members' ("lowest-reader").
        self.with_mean = self.by_member and by == "lowest-reader"
        #: Rows of `BalanceState.member_counts`: the readers counted apart (0: the classifier's own, in `counts`).
        self.readers = len(getattr(extractor, "members", ())) + self.with_mean if self.by_member else 0
        #: Steps between readings of the fake batch (at least one reading between two updates).
        self.observe_every = min(OBSERVE_EVERY, every)
        self.classes, self.source = groups.classes, groups.source
        #: (N,) each training image's group, -1 where it has none (drawn with weight 1).
        self.groups = groups.labels.long()
        known = self.groups[self.groups >= 0]
        if len(known) == 0:
            raise ConfigError(f"--balance-groups {name}: none of the training images has a group to balance.")
        count = len(self.classes)
        #: Each group's share among the training images (their groups): what the fakes' shares, as the classifier
        #: reads them, are steered to (module docstring).
        self.share = torch.bincount(known, minlength=count)[:count].double() / len(known)
        self.state = BalanceState()

    def image_weights(self, step: int) -> torch.Tensor:
        """Each training image's draw weight (float64) for an epoch that starts at `step`."""
        return per_image(self.state.weights_at(step, len(self.classes)), self.groups)

    @torch.no_grad()
    def observe(self, fakes: torch.Tensor) -> None:
        """Add the classifier's reading of `fakes` (G's output as uint8 images on the host) to the counts."""
        count = len(self.classes)
        if self.by_member:
            ensemble = cast("Ensemble", self.extractor)
            per_member = ensemble.member_logits(fakes, batch_size=len(fakes), with_mean=self.with_mean).cpu()
            read = torch.stack([torch.bincount(m.argmax(1), minlength=count)[:count] for m in per_member]).double()
            before = torch.tensor(self.state.member_counts or torch.zeros_like(read).tolist(), dtype=torch.float64)
            self.state.member_counts = (before + read).tolist()
            return
        logits = self.extractor.extract(fakes, batch_size=len(fakes), logits=True).logits
        assert logits is not None
        read = torch.bincount(logits.argmax(1), minlength=count)[:count].double()
        counts = torch.tensor(self.state.counts or [0.0] * count, dtype=torch.float64)
        self.state.counts = (counts + read).tolist()

    def update(self, step: int) -> tuple[list[float], list[float]] | None:
        """The groups' shares among the fakes read since the last update, and the weights they set for the epochs
        from `step` on (None when nothing was read); the counts start again.

        Only the process that reads calls this; every process then puts the weights in force with `apply`.
        """
        if self.by_member:  # each group's share as the member (or "lowest-reader": the reader) reading it lowest
            if not self.state.member_counts or sum(self.state.member_counts[0]) == 0:
                return None
            counts = torch.tensor(self.state.member_counts, dtype=torch.float64)
            shares = (counts / counts.sum(1, keepdim=True)).min(0).values
        else:
            if not self.state.counts or sum(self.state.counts) == 0:
                return None
            counts = torch.tensor(self.state.counts, dtype=torch.float64)
            shares = counts / counts.sum()
        weights = next_weights(self.state.weights_at(step, len(self.classes)), shares, self.share)
        self.state.counts, self.state.member_counts = [], []
        return shares.tolist(), weights

    def apply(self, step: int, weights: list[float]) -> None:
        """Put `weights` in force for the epochs that start at or after `step` (replacing any set later)."""
        self.state.history = [h for h in self.state.history if h[0] < step] + [(step, list(weights))]

    def describe(self, every: int, read: str = "the fakes read since") -> str:
        """The line a run prints when it starts: what is read (`read`), how often, and each group's share of the
        images."""
        parts = ", ".join(f"{n} {100 * float(t):.1f}%" for n, t in zip(self.classes, self.share, strict=True))
        whose = ""
        if self.by_member:
            whose = " (each group's share as the member of the ensemble that reads it lowest)"
        if self.with_mean:
            whose = " (each group's share as the lowest of the ensemble's members and their mean)"
        line = (
            f"--balance-groups {self.name}: every {every} steps, the groups of {read}{whose} set each group's "
            f"draw weight (groups from {self.source}; their shares of the images: {parts})."
        )
        if "calibrated" not in self.extractor.meta:
            line += (
                f" {self.name} is not calibrated, so it may read a small group too rarely on new images and steer G "
                "to draw it too often: fit it again with `dcgan extractor fit`, which calibrates it."
            )
        return line

    def report(self, shares: list[float], weights: list[float]) -> dict[str, float]:
        """The values logged at an update: each group's coverage (the fakes' share, as the classifier reads them,
        over the training images') and its new weight."""
        values: dict[str, float] = {}
        for name, s, t, w in zip(self.classes, shares, self.share.tolist(), weights, strict=True):
            if t > 0:
                values[f"coverage_{name}"] = round(s / t, 4)
            values[f"weight_{name}"] = round(w, 4)
        return values


class JointBalance:
    """`--balance-groups` with one classifier or several: each `GroupBalancer` steers its own groups, and each
    image's draw weight is the product of its weights under each (module docstring).

    Args:
        balancers: one per classifier, in the order given.

    Raises:
        ConfigError: two classifiers have a group of the same name (their values in the log would share a name).
    """

    def __init__(self, balancers: list[GroupBalancer]) -> None:
        for i, later in enumerate(balancers):
            for earlier in balancers[:i]:
                shared = next((name for name in later.classes if name in earlier.classes), None)
                if shared is not None:
                    raise ConfigError(
                        f"--balance-groups {earlier.name} and {later.name} both have a group named {shared!r}, and "
                        "each group's coverage and weight are logged by its name: give classifiers of different groups."
                    )
        self.balancers = balancers
        #: Steps between readings of the fake batch (every balancer reads the same fakes).
        self.observe_every = min(balancer.observe_every for balancer in balancers)

    def image_weights(self, step: int) -> torch.Tensor:
        """Each training image's draw weight (float64) for an epoch that starts at `step`: the product of its
        weights under each classifier (one classifier: its weights as they are)."""
        weights = self.balancers[0].image_weights(step)
        for balancer in self.balancers[1:]:
            weights = weights * balancer.image_weights(step)
        return weights

    def observe(self, fakes: torch.Tensor) -> None:
        """Every classifier reads `fakes` (G's output in [-1, 1], as D was shown it) into its own counts; the images
        are made uint8 on the host once for all of them."""
        from dcgan.sample import to_uint8

        images = to_uint8(fakes)
        for balancer in self.balancers:
            balancer.observe(images)

    def update(self, step: int) -> list[tuple[list[float], list[float]] | None]:
        """Each classifier's `GroupBalancer.update`: its groups' shares among the fakes and its next weights."""
        return [balancer.update(step) for balancer in self.balancers]

    def apply(self, step: int, updates: list[tuple[list[float], list[float]] | None]) -> None:
        """Put each classifier's new weights (from `update`) in force for the epochs that start at or after `step`."""
        for balancer, update in zip(self.balancers, updates, strict=True):
            if update is not None:
                balancer.apply(step, update[1])

    def report(
        self, step: int, updates: list[tuple[list[float], list[float]] | None]
    ) -> tuple[dict[str, float], list[str]]:
        """The values logged at an update (every classifier's in one row) and one line per classifier."""
        values: dict[str, float] = {}
        lines = []
        for balancer, update in zip(self.balancers, updates, strict=True):
            if update is not None:
                own = balancer.report(*update)
                values.update(own)
                name = balancer.name if len(self.balancers) > 1 else None
                lines.append(format_update(step, balancer.classes, own, name=name))
        return values, lines

    def describe(self, every: int, read: str = "the fakes read since") -> list[str]:
        """The lines a run prints when it starts: one per classifier (`read`: what they read, as in
        `GroupBalancer.describe`)."""
        return [balancer.describe(every, read) for balancer in self.balancers]

    def state_dict(self) -> dict[str, Any] | list[dict[str, Any]]:
        """What a checkpoint holds: one classifier's `BalanceState` as a dict (as before several could be given),
        a list of them for several."""
        states = [balancer.state.to_dict() for balancer in self.balancers]
        return states[0] if len(states) == 1 else states

    def load_state_dict(self, saved: dict[str, Any] | list[dict[str, Any]] | None) -> None:
        """Restore `state_dict`'s output (None: a checkpoint from before balancing began, every weight 1).

        Raises:
            CheckpointError: it holds another number of classifiers, or another number of groups, than this run's.
        """
        states: list[dict[str, Any] | None]
        if isinstance(saved, list):
            states = list(saved)
        else:
            states = [saved] if saved is not None else [None] * len(self.balancers)
        if len(states) != len(self.balancers):
            saved_count = f"{len(states)} classifier" + ("s" if len(states) != 1 else "")
            raise CheckpointError(
                f"The checkpoint holds the --balance-groups state of {saved_count} and this run gives "
                f"{len(self.balancers)}; resume with the run's own --balance-groups, or start a new --out."
            )
        restored = [BalanceState.from_dict(state) for state in states]
        for balancer, state in zip(self.balancers, restored, strict=True):
            sizes = {len(weights) for _, weights in state.history} | ({len(state.counts)} if state.counts else set())
            sizes |= {len(row) for row in state.member_counts}
            other = sizes - {len(balancer.classes)}
            if other:
                raise CheckpointError(
                    f"The checkpoint's --balance-groups state for {balancer.name} has weights for {min(other)} groups "
                    f"and {balancer.name} reads {len(balancer.classes)}; resume with the run's own --balance-groups, "
                    "or start a new --out."
                )
        for balancer, state in zip(self.balancers, restored, strict=True):
            readers = balancer.readers
            if state.member_counts:  # counts between two updates, read under the --balance-by it was saved with
                held, clash = f"{len(state.member_counts)} readers' readings apart", len(state.member_counts) != readers
            else:
                held, clash = "the classifier's own readings", bool(state.counts) and readers > 0
            if clash:
                runs = f"{readers} readers' readings apart" if readers else "the classifier's own"
                raise CheckpointError(
                    f"The checkpoint's --balance-groups state for {balancer.name} counts {held} and this run counts "
                    f"{runs}; resume with the run's own --balance-groups and --balance-by, or start a new --out."
                )
        for balancer, state in zip(self.balancers, restored, strict=True):
            balancer.state = state


def format_update(step: int, classes: tuple[str, ...], values: dict[str, float], name: str | None = None) -> str:
    """One line for an update: each group's coverage and its new weight (`name`: the classifier's, where several
    balance at once)."""
    parts = []
    for group in classes:
        coverage = values.get(f"coverage_{group}")
        shown = f"{coverage:.2f}x" if coverage is not None and math.isfinite(coverage) else "-"
        parts.append(f"{group} {shown} (weight {values[f'weight_{group}']:.2f})")
    by = f" by {name}" if name else ""
    return f"step {step:,}: groups' coverage{by} (draw weight from here): " + ", ".join(parts)
