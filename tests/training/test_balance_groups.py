"""`--balance-groups`: a group G draws too rarely is drawn more often from the next epoch on, by as much as the
readings say; several classifiers each steer their own groups, an image weighing the product of its groups'
weights; with --balance-read samples they read what sampling draws instead of the training fakes; with --balance-by
lowest-member each group counts as the member of an ensemble that reads it lowest (lowest-reader: the lowest of the
members and their mean); the weights are part of the
training state (a resumed run equals an uninterrupted one); a bad extractor or a clash with
--class-weights is one sentence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from dcgan.cli import main
from dcgan.config import build_config
from dcgan.errors import CheckpointError, ConfigError
from dcgan.gemm_conv import use_gemm_conv
from dcgan.metrics import extractors
from dcgan.metrics.feature_extractor import FeatureExtractor
from dcgan.metrics.reference import Groups
from dcgan.models import sample_prior
from dcgan.run import load_generator
from dcgan.sample import generate, to_uint8
from dcgan.train import Trainer, train
from dcgan.training.balance import (
    GAIN,
    MAX_WEIGHT,
    SAMPLES_PER_UPDATE,
    BalanceState,
    GroupBalancer,
    JointBalance,
    next_weights,
    samples_per_reading,
)
from tests.conftest import checkpoint_weights, class_shapes_data, tiny_config


class Brightness(FeatureExtractor):
    """Reads `class_shapes_data`'s classes by mean brightness: "light" images (a bright square on a dark ground)
    are mostly dark, "dark" ones mostly bright. With `always` set it reads every image as that class instead."""

    input_size, in_channels, feature_dim, num_classes = 16, 1, 2, 2

    def __init__(self, always: int | None = None) -> None:
        super().__init__()
        self.name, self.always = "brightness", always
        self.meta = {"format": extractors.FORMAT, "classes": json.dumps(["light", "dark"])}
        self.scale = torch.nn.Parameter(torch.ones(()))  # a parameter, so it has a device

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.mean((1, 2, 3)) * self.scale
        if self.always is not None:
            mean = torch.full_like(mean, -1.0 if self.always == 0 else 1.0)
        logits = torch.stack([-mean, mean], 1)
        return logits, logits


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Brightness]:
    """Extractors the runs of a test can load by name: "brightness", and "fooled", which reads the real images as
    "brightness" does and can be told to read every fake as light once the run has read the real ones."""
    known = {"brightness": Brightness(), "fooled": Brightness()}
    real = extractors.load_features

    def load(spec: object, data: str | None = None, **kwargs: object) -> FeatureExtractor:
        return known[str(spec)] if str(spec) in known else real(spec, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(extractors, "load_features", load)
    return known


class Side(FeatureExtractor):
    """Reads a second attribute of `class_shapes_data`'s images, light or dark: which half holds the square, "left"
    or "right". With `even` set it reads any batch alternately left and right instead (half and half)."""

    input_size, in_channels, feature_dim, num_classes = 16, 1, 2, 2

    def __init__(self) -> None:
        super().__init__()
        self.name, self.even = "side", False
        self.meta = {"format": extractors.FORMAT, "classes": json.dumps(["left", "right"])}
        self.scale = torch.nn.Parameter(torch.ones(()))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mass = (x - x.mean((1, 2, 3), keepdim=True)).abs() * self.scale  # the square, bright or dark
        right = mass[..., 8:].mean((1, 2, 3)) - mass[..., :8].mean((1, 2, 3))
        if self.even:
            right = torch.arange(len(x), device=x.device) % 2 * 2.0 - 1
        logits = torch.stack([-right, right], 1)
        return logits, logits


@pytest.fixture
def side(reads: dict[str, Brightness], monkeypatch: pytest.MonkeyPatch) -> Side:
    """ "side", loadable by name beside `reads`' extractors."""
    extractor, others = Side(), extractors.load_features

    def load(spec: object, data: str | None = None, **kwargs: object) -> FeatureExtractor:
        return extractor if str(spec) == "side" else others(spec, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(extractors, "load_features", load)
    return extractor


def test_a_group_under_drawn_gains_weight_and_the_mean_draw_weight_stays_one() -> None:
    target = torch.tensor([0.8, 0.2])
    weights = next_weights([1.0, 1.0], torch.tensor([0.95, 0.05]), target)  # the second group at a quarter
    assert weights[1] / weights[0] == pytest.approx((0.2 / 0.05) ** GAIN / (0.8 / 0.95) ** GAIN)
    assert 0.8 * weights[0] + 0.2 * weights[1] == pytest.approx(1.0)
    # steered to the classifier's reading of the real images, averaged over the images' own groups
    read = next_weights([1.0, 1.0], torch.tensor([0.95, 0.05]), target, images=torch.tensor([0.7, 0.3]))
    assert read[1] / read[0] == pytest.approx(weights[1] / weights[0])
    assert 0.7 * read[0] + 0.3 * read[1] == pytest.approx(1.0)
    on_target = next_weights(weights, target.clone(), target)
    assert on_target == pytest.approx(weights), "samples in the data's shares leave the weights where they are"


def test_weights_stay_within_bounds_and_a_group_the_data_lacks_keeps_its_weight() -> None:
    missing = next_weights([1.0, 1.0, 1.0], torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.5, 0.5, 0.0]))
    assert min(missing) >= 1 / MAX_WEIGHT and max(missing) <= MAX_WEIGHT
    assert missing[0] == pytest.approx(1 / MAX_WEIGHT) and missing[1] > 1.5
    # a group no image holds is only scaled with the others, never moved by its reading
    mild = next_weights([1.0, 1.0, 1.0], torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.5, 0.5, 0.0]))
    assert mild[1] / mild[2] == pytest.approx((0.5 / 0.3) ** GAIN) and mild[0] / mild[2] == pytest.approx(
        (0.5 / 0.6) ** GAIN
    )
    history = BalanceState([(4, [1.0, 2.0]), (8, [0.5, 3.0])])
    assert history.weights_at(0, 2) == [1.0, 1.0] and history.weights_at(7, 2) == [1.0, 2.0]
    assert history.weights_at(8, 2) == [0.5, 3.0]
    assert BalanceState.from_dict(history.to_dict()) == history


def _drawn_dark(trainer: Trainer, steps: range) -> float:
    assert trainer.data.labels is not None
    index = torch.cat([trainer._batch_index(step) for step in steps])
    return (trainer.data.labels[index] == 1).double().mean().item()


def _fooled_trainer(out: Path, reads: dict[str, Brightness], **overrides: object) -> Trainer:
    """A run balancing with "fooled": the real images are read as they are (half light, half dark), and from the
    first step every fake is read as light, so dark is the group G never draws."""
    config = tiny_config(balance_groups="fooled", balance_every=4, **overrides)
    trainer = Trainer(config, out, data=class_shapes_data(), progress=False)
    reads["fooled"].always = 0
    return trainer


def test_a_group_g_never_draws_is_drawn_more_from_the_next_epoch(tmp_path: Path, reads: dict[str, Brightness]) -> None:
    trainer = _fooled_trainer(tmp_path / "run", reads, steps=16)
    try:
        assert trainer.balance is not None
        (balancer,) = trainer.balance.balancers
        assert balancer.share.tolist() == [0.5, 0.5]
        trainer.fit()
        state = balancer.state
        assert [step for step, _ in state.history] == [4, 8, 12]
        light, dark = state.weights_at(8, 2)
        assert light == pytest.approx(1 / MAX_WEIGHT) and dark > 1.8
        per_epoch = trainer.steps_per_epoch  # 8: the reading at step 4 counts from the epoch at step 8
        assert _drawn_dark(trainer, range(per_epoch)) == pytest.approx(0.5, abs=0.1)
        assert _drawn_dark(trainer, range(per_epoch, 2 * per_epoch)) > 0.85
    finally:
        use_gemm_conv(trainer._gemm_before)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    balance = [row for row in rows if "weight_dark" in row]
    assert [row["step"] for row in balance] == [4, 8, 12] and balance[0]["coverage_dark"] == 0.0


def _whole_and_resumed(tmp_path: Path, steps: int, **flags: object) -> list[Any]:
    """Train `steps` steps whole ("full") and stopped at step 6 then resumed ("part"), check that both end with the
    same weights, and return the balance state each one's last checkpoint holds (full's, part's)."""
    train(tiny_config(steps=steps, **flags), tmp_path / "full", data=class_shapes_data(), progress=False)
    train(tiny_config(steps=6, checkpoint_every=6, **flags), tmp_path / "part", data=class_shapes_data(),
          progress=False)  # fmt: skip
    train(tiny_config(steps=steps, **flags), tmp_path / "part", resume=True, data=class_shapes_data(), progress=False)
    full, part = checkpoint_weights(tmp_path / "full"), checkpoint_weights(tmp_path / "part")
    assert full.keys() == part.keys()
    for name in full:
        assert torch.equal(full[name], part[name]), name
    return [
        torch.load(folder / "checkpoints" / f"step-{steps:08d}.pt", weights_only=True)["balance"]
        for folder in (tmp_path / "full", tmp_path / "part")
    ]


def test_a_balanced_run_resumes_to_the_same_weights_and_differs_from_a_plain_one(
    tmp_path: Path, reads: dict[str, Brightness]
) -> None:
    """The checkpoint at step 6 falls between two updates: the fakes read since step 4 go on counting."""
    flags = {"balance_groups": "brightness", "balance_every": 4}
    histories = [state["history"] for state in _whole_and_resumed(tmp_path, 20, **flags)]
    assert histories[0] == histories[1] and [step for step, _ in histories[0]] == [4, 8, 12, 16]
    train(tiny_config(steps=20), tmp_path / "plain", data=class_shapes_data(), progress=False)
    plain = checkpoint_weights(tmp_path / "plain")
    full = checkpoint_weights(tmp_path / "full")
    assert any(not torch.equal(full[name], plain[name]) for name in full), "the readings change what is drawn"


def test_a_run_says_what_it_balances(
    tmp_path: Path, reads: dict[str, Brightness], capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = _fooled_trainer(tmp_path / "run", reads, steps=8)
    try:
        trainer.fit()
    finally:
        use_gemm_conv(trainer._gemm_before)
    said = capsys.readouterr().out
    assert (
        "--balance-groups fooled: every 4 steps, the groups of the fakes read since set each group's draw weight "
        "(groups from the shapes labels; their shares of the images: light 50.0%, dark 50.0%)." in said
    )
    assert (
        "step 4: groups' coverage (draw weight from here): light 2.00x (weight 0.06), dark 0.00x (weight 1.94)" in said
    )
    assert "fooled is not calibrated, so it may read a small group too rarely on new images" in said
    assert build_config(None).balance_groups == "", "no preset balances"


def test_the_fakes_are_steered_to_the_labelled_shares_not_to_the_classifiers_reading_of_the_real_images(
    tmp_path: Path, reads: dict[str, Brightness]
) -> None:
    """Fakes are new images, which a classifier reads as it reads held-out ones, not as it reads its training set."""
    reads["brightness"].always = 0  # reads every image, real or fake, as light
    config = tiny_config(balance_groups="brightness", balance_every=4, steps=4)
    trainer = Trainer(config, tmp_path / "run", data=class_shapes_data(), progress=False)
    try:
        assert trainer.balance is not None
        (balancer,) = trainer.balance.balancers
        assert balancer.share.tolist() == [0.5, 0.5], "the labels' shares, not the reading's [1, 0]"
        balancer.extractor.meta["calibrated"] = "yes"
        assert "not calibrated" not in balancer.describe(4)
    finally:
        use_gemm_conv(trainer._gemm_before)


def test_two_classifiers_each_steer_their_own_groups_and_an_image_weighs_the_product(
    tmp_path: Path, reads: dict[str, Brightness], side: Side
) -> None:
    """ "fooled" reads every fake as light, so dark gains weight; "side" reads the fakes half left, half right, so its
    weights move only by how far that is from the images' left/right shares."""
    config = tiny_config(balance_groups="fooled, side", balance_every=4, steps=16)
    assert config.balance_groups == "fooled,side"
    trainer = Trainer(config, tmp_path / "run", data=class_shapes_data(), progress=False)
    reads["fooled"].always, side.even = 0, True
    try:
        assert trainer.balance is not None
        fooled, sides = trainer.balance.balancers
        trainer.fit()
        light, dark = fooled.state.weights_at(8, 2)
        assert light == pytest.approx(1 / MAX_WEIGHT) and dark > 1.8
        left, right = sides.state.weights_at(4, 2)  # from the 32 fakes of step 0, read 16 left and 16 right
        share_left, share_right = sides.share.tolist()
        assert left / right == pytest.approx((share_left / 0.5) ** GAIN / (share_right / 0.5) ** GAIN)
        assert all(0.7 < w < 1.4 for _, weights in sides.state.history for w in weights)
        assert trainer.data.labels is not None
        expected = (
            torch.tensor([light, dark], dtype=torch.float64)[trainer.data.labels]
            * torch.tensor(sides.state.weights_at(8, 2), dtype=torch.float64)[sides.groups]
        )
        assert torch.allclose(trainer.balance.image_weights(8), expected)
        assert _drawn_dark(trainer, range(8, 16)) > 0.85
    finally:
        use_gemm_conv(trainer._gemm_before)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    balance = [row for row in rows if "weight_dark" in row]
    assert [row["step"] for row in balance] == [4, 8, 12] and all("weight_left" in row for row in balance)


def test_joint_weights_and_their_checkpoint_state() -> None:
    """One classifier's state is saved as it always was; several as a list, which resumes only as many."""
    light_dark = GroupBalancer(
        Brightness(), Groups(("light", "dark"), torch.tensor([0, 1, 1, 0]), "labels"), name="brightness", every=4
    )
    sides = GroupBalancer(
        Side(), Groups(("left", "right"), torch.tensor([1, 0, 1, -1]), "labels"), name="side", every=4
    )
    light_dark.apply(4, [0.5, 2.0])
    sides.apply(4, [1.5, 0.75])
    joint, one = JointBalance([light_dark, sides]), JointBalance([light_dark])
    # the last image has no side: its light/dark weight alone
    assert joint.image_weights(4).tolist() == [0.5 * 0.75, 2.0 * 1.5, 2.0 * 0.75, 0.5]
    assert torch.equal(one.image_weights(4), light_dark.image_weights(4))
    assert one.state_dict() == light_dark.state.to_dict()
    saved = joint.state_dict()
    assert saved == [light_dark.state.to_dict(), sides.state.to_dict()]
    with pytest.raises(CheckpointError, match=r"^The checkpoint holds the --balance-groups state of 1 classifier and "):
        joint.load_state_dict(light_dark.state.to_dict())
    with pytest.raises(CheckpointError, match="state of 2 classifiers and this run gives 1;"):
        one.load_state_dict(saved)
    with pytest.raises(CheckpointError, match="state for brightness has weights for 5 groups"):
        one.load_state_dict({"history": [[4, [1.0] * 5]], "counts": []})
    light_dark.state, sides.state = BalanceState(), BalanceState()
    joint.load_state_dict(saved)
    assert joint.state_dict() == saved
    fooled = GroupBalancer(
        Brightness(), Groups(("light", "dark"), torch.tensor([1, 0]), "labels"), name="fooled", every=4
    )
    with pytest.raises(ConfigError, match=r"^--balance-groups brightness and fooled both have a group named 'light'"):
        JointBalance([light_dark, fooled])


def test_a_run_balanced_by_two_classifiers_resumes_to_the_same_weights(
    tmp_path: Path, reads: dict[str, Brightness], side: Side
) -> None:
    states = _whole_and_resumed(tmp_path, 12, balance_groups="brightness,side", balance_every=4)
    assert states[0] == states[1] and len(states[0]) == 2
    assert [[step for step, _ in state["history"]] for state in states[0]] == [[4, 8], [4, 8]]


def test_samples_per_reading_share_the_updates_samples_in_whole_batches() -> None:
    assert samples_per_reading(400, 50) == SAMPLES_PER_UPDATE // 8  # eight readings between two updates
    assert samples_per_reading(400, 200) == SAMPLES_PER_UPDATE // 2
    assert samples_per_reading(400, 800) == SAMPLES_PER_UPDATE, "a reading less often than updates: a whole update's"
    assert samples_per_reading(400, 1) == 64 and samples_per_reading(4, 3) % 64 == 0


def test_with_balance_read_samples_the_classifier_reads_what_sampling_draws_not_the_fakes(
    tmp_path: Path, reads: dict[str, Brightness], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every --snapshot-every steps the classifier reads samples of G's sampling copy, the weights the checkpoint of
    that step holds, from latents set by the seed and the step; the training fakes are not read. "fooled" reads them
    all as light, so dark gains weight as with the fakes."""
    trainer = _fooled_trainer(tmp_path / "run", reads, steps=16, balance_read="samples", snapshot_every=2)
    count = samples_per_reading(4, 2)
    read: dict[int, torch.Tensor] = {}
    try:
        assert trainer.balance is not None
        (balancer,) = trainer.balance.balancers
        observe = balancer.observe

        def spy(images: torch.Tensor) -> None:
            read[trainer.step] = images.clone()
            observe(images)

        balancer.observe = spy  # type: ignore[method-assign]
        trainer.fit()
        light, dark = balancer.state.weights_at(8, 2)
        assert light == pytest.approx(1 / MAX_WEIGHT) and dark > 1.8
    finally:
        use_gemm_conv(trainer._gemm_before)
    assert sorted(read) == [2, 4, 6, 8, 10, 12, 14, 16], "after every snapshot step, never a training step's fakes"
    assert all(len(images) == count for images in read.values())
    z = sample_prior(count, 8, "uniform", generator=torch.Generator().manual_seed(12))  # seed 0, step 12
    expected = generate(load_generator(tmp_path / "run" / "checkpoints" / "step-00000012.pt"), z)
    assert torch.equal(read[12], to_uint8(expected))
    assert (
        f"the groups of {count:,} samples of G's sampling copy read every 2 steps since set" in capsys.readouterr().out
    )


def test_a_run_balanced_on_its_samples_resumes_to_the_same_weights(
    tmp_path: Path, reads: dict[str, Brightness]
) -> None:
    """The checkpoint at step 6 falls between two updates: it holds the counts of the samples read at step 6."""
    flags = {"balance_groups": "brightness", "balance_every": 4, "balance_read": "samples", "snapshot_every": 2}
    states = _whole_and_resumed(tmp_path, 12, **flags)
    assert states[0] == states[1] and [step for step, _ in states[0]["history"]] == [4, 8]


def test_balance_read_is_fakes_or_samples_and_samples_only_unconditional() -> None:
    assert build_config(None).balance_read == "fakes"
    with pytest.raises(ConfigError, match=r"^--balance-read must be one of fakes, samples, got 'all'\.$"):
        build_config(balance_read="all")
    with pytest.raises(ConfigError, match=r"^--balance-read samples draws unconditional samples and this run is"):
        build_config(balance_read="samples", balance_groups="brightness", conditional=True)


def _pair(*members: FeatureExtractor, calibrated: bool = True) -> extractors.Ensemble:
    """An ensemble of Brightness readers, its members calibrated each (as `dcgan extractor fit` makes them) or not."""
    pair = extractors.Ensemble(list(members))
    pair.name = "pair"
    pair.meta = {"format": extractors.FORMAT, "classes": json.dumps(["light", "dark"])}
    if calibrated:
        pair.meta["members_calibrated"] = "each member's class offsets fitted on 2 images (test)"
    return pair


def _half_dark() -> torch.Tensor:
    """Eight images, the first four read dark by Brightness (bright), the last four light (dark)."""
    return torch.cat([torch.full((4, 1, 16, 16), 220), torch.full((4, 1, 16, 16), 30)]).to(torch.uint8)


def test_by_lowest_member_a_group_counts_at_the_share_the_member_reading_it_lowest_gives() -> None:
    """One member reads the fakes half light, half dark; the other reads every one light. By the ensemble's mean
    dark is read in some of them; by the lowest member, in none, so dark gains as much weight as it can."""
    groups = Groups(("light", "dark"), torch.tensor([0, 1] * 8), "labels")
    lowest = GroupBalancer(_pair(Brightness(), Brightness(always=0)), groups, name="pair", every=4, by="lowest-member")
    assert lowest.by_member
    lowest.observe(_half_dark())
    assert lowest.state.member_counts == [[4.0, 4.0], [8.0, 0.0]] and lowest.state.counts == []
    assert "(each group's share as the member of the ensemble that reads it lowest)" in lowest.describe(4)
    update = lowest.update(4)
    assert update is not None
    shares, weights = update
    assert shares == [0.5, 0.0] and lowest.state.member_counts == []
    assert weights[0] == pytest.approx(1 / MAX_WEIGHT) and weights[1] > 1.8
    sure = Brightness()
    with torch.no_grad():
        sure.scale.fill_(3.0)  # its dark readings outweigh the other member's light ones in their mean
    mean = GroupBalancer(_pair(sure, Brightness(always=0)), groups, name="pair", every=4)
    mean.observe(_half_dark())
    mean_update = mean.update(4)
    assert mean_update is not None and mean_update[0][1] > 0, "their mean reads some dark"
    single = GroupBalancer(Brightness(), groups, name="brightness", every=4, by="lowest-member")
    single.observe(_half_dark())
    assert not single.by_member and single.state.counts == [4.0, 4.0], "one classifier is its own lowest member"


def test_by_lowest_reader_a_group_the_members_mean_reads_low_gains_weight_though_every_member_reads_it() -> None:
    """Each member reads half the fakes dark, each a different half, and is sure only of its light readings; by their
    mean probability (calibrated to lean light) every fake is light. The lowest member sees dark at half, the
    lowest reader, counting the mean too, at none."""
    groups = Groups(("light", "dark"), torch.tensor([0, 1] * 8), "labels")
    inverted = Brightness()
    with torch.no_grad():
        inverted.scale.fill_(-1.0)  # reads the dark images dark, Brightness the bright ones
    pair = _pair(Brightness(), inverted)
    pair.offsets.copy_(torch.tensor([0.0, -0.5]))  # the mean's own calibration, which the members' rows do not take
    rows = pair.member_logits(_half_dark(), with_mean=True)
    assert rows.shape == (3, 8, 2)
    own = pair.extract(_half_dark(), logits=True).logits
    assert own is not None and torch.allclose(rows[-1], own, atol=1e-5), "the last row is the ensemble's own reading"
    assert torch.equal(rows[:2], pair.member_logits(_half_dark()))
    member = GroupBalancer(pair, groups, name="pair", every=4, by="lowest-member")
    reader = GroupBalancer(pair, groups, name="pair", every=4, by="lowest-reader")
    assert (member.readers, reader.readers) == (2, 3)
    for balancer in (member, reader):
        balancer.observe(_half_dark())
    assert reader.state.member_counts == [[4.0, 4.0], [4.0, 4.0], [8.0, 0.0]]
    assert "(each group's share as the lowest of the ensemble's members and their mean)" in reader.describe(4)
    by_member, by_reader = member.update(4), reader.update(4)
    assert by_member is not None and by_reader is not None
    assert by_member[0] == [0.5, 0.5] and by_member[1] == pytest.approx([1.0, 1.0])
    assert by_reader[0] == [0.5, 0.0] and by_reader[1][1] > 1.8 and reader.state.member_counts == []
    single = GroupBalancer(Brightness(), groups, name="brightness", every=4, by="lowest-reader")
    single.observe(_half_dark())
    assert single.readers == 0 and single.state.counts == [4.0, 4.0], "one classifier is its own lowest reader"


def test_lowest_member_needs_members_calibrated_each() -> None:
    groups = Groups(("light", "dark"), torch.tensor([0, 1]), "labels")
    with pytest.raises(ConfigError, match=r"^--balance-by lowest-member reads each member of pair alone, and its "):
        GroupBalancer(_pair(Brightness(), Brightness(), calibrated=False), groups, name="pair", every=4,
                      by="lowest-member")  # fmt: skip
    assert build_config(None).balance_by == "ensemble"
    with pytest.raises(ConfigError, match=r"^--balance-by lowest-reader reads each member of pair alone, and its "):
        GroupBalancer(_pair(Brightness(), Brightness(), calibrated=False), groups, name="pair", every=4,
                      by="lowest-reader")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^--balance-by must be one of ensemble, lowest-member, lowest-reader, got "):
        build_config(balance_by="min")


@pytest.mark.parametrize(("by", "rows"), [("lowest-member", 2), ("lowest-reader", 3)])
def test_a_run_balanced_by_the_lowest_member_resumes_to_the_same_weights(
    tmp_path: Path, reads: dict[str, FeatureExtractor], by: str, rows: int
) -> None:
    """The checkpoint at step 6 falls between two updates: it holds each member's counts since step 4 (and with
    lowest-reader, their mean's)."""
    reads["pair"] = _pair(Brightness(), Side())  # two readers that disagree unevenly
    flags = {"balance_groups": "pair", "balance_every": 4, "balance_by": by}
    states = _whole_and_resumed(tmp_path, 12, **flags)
    assert states[0] == states[1] and [step for step, _ in states[0]["history"]] == [4, 8]
    assert any(abs(w - 1) > 0.05 for _, weights in states[0]["history"] for w in weights), "the readings steer"
    between = torch.load(tmp_path / "part" / "checkpoints" / "step-00000006.pt", weights_only=True)["balance"]
    assert len(between["member_counts"]) == rows and sum(between["member_counts"][-1]) > 0
    groups = Groups(("light", "dark"), torch.tensor([0, 1]), "labels")
    plain = JointBalance([GroupBalancer(reads["pair"], groups, name="pair", every=4)])
    with pytest.raises(CheckpointError, match=rf"counts {rows} readers' readings apart and this run counts the "):
        plain.load_state_dict(between)
    mean = torch.load(tmp_path / "part" / "checkpoints" / "step-00000006.pt", weights_only=True)["balance"]
    mean["counts"], mean["member_counts"] = [3.0, 5.0], []
    lowest = JointBalance([GroupBalancer(reads["pair"], groups, name="pair", every=4, by=by)])
    with pytest.raises(CheckpointError, match=rf"counts the classifier's own readings and this run counts {rows} rea"):
        lowest.load_state_dict(mean)
    other = "lowest-member" if by == "lowest-reader" else "lowest-reader"
    switched = JointBalance([GroupBalancer(reads["pair"], groups, name="pair", every=4, by=other)])
    with pytest.raises(
        CheckpointError, match=rf"counts {rows} readers' readings apart and this run counts {5 - rows} "
    ):
        switched.load_state_dict(between)


def test_several_classifiers_are_given_once_each() -> None:
    assert build_config(balance_groups=" brightness , side ").balance_groups == "brightness,side"
    with pytest.raises(ConfigError, match=r"^--balance-groups takes extractor names separated by commas"):
        build_config(balance_groups="brightness,,side")
    with pytest.raises(ConfigError, match=r"^--balance-groups names 'side' twice; give each classifier once\.$"):
        build_config(balance_groups="side,brightness, side")


def test_balance_groups_and_class_weights_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--class-weights and --balance-groups both set how often"):
        build_config(class_weights="dark=2", balance_groups="brightness")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--balance-groups", "cnn-nowhere-race"], "No feature extractor 'cnn-nowhere-race' in "),
        (["--balance-groups", "cnn-nowhere-race,cnn-nowhere-gender"], "No feature extractor 'cnn-nowhere-race' in "),
        (["--balance-groups", "x,"], "--balance-groups takes extractor names separated by commas"),
        (["--balance-groups", "x", "--class-weights", "a=2"], "--class-weights and --balance-groups both set"),
    ],
)
@pytest.mark.parametrize("dry", [True, False])
def test_balance_errors_are_one_sentence_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str, dry: bool
) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", "mnist5k", "--image-size", "16", "--steps", "2", "--no-progress", "--out", str(out)]
    assert main([*args, *flags, "--dry-run"] if dry else [*args, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
