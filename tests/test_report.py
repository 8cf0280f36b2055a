"""``write_report`` on small synthetic result tables: no Ray, no training, no data set."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lie_ray.errors import LieRayError
from lie_ray.report import AMBIGUITY, PAPER_TABLE_I, THREAT_MODELS, write_report

EPSILONS = (0.03, 0.1)
ADAPTIVE = (
    "pgd",
    "paper-literal",
    "bpda-identity",
    "bpda",
    "eot",
    "transfer",
    "gradient-free",
    "autoattack",
    "autoattack-rand",
    "key-search",
    "pba",
    "recovered-key-1",
    "recovered-key-2",
    "recovered-key-4",
    "worst-case-keyless",
    "worst-case-leaked",
    "worst-case",
    "encrypted-input",
    "worst-case-channel",
)
# Error at epsilon 0.1 per scenario and attack; the worst case is the strict maximum of each
# row's plain-image attacks (encrypted-input, a ciphertext-space attack, may exceed it).
# Plain has no cipher, so no bpda / eot / encrypted-input. Keyless (a union of fewer attacks)
# lies below worst-case on encrypted scenarios.
ERRORS = {
    "Plain": {
        "pgd": 0.95,
        "transfer": 0.60,
        "gradient-free": 0.70,
        "autoattack": 0.97,
        "worst-case": 0.98,
    },
    "Encrypted": {
        "pgd": 0.27,
        "paper-literal": 0.60,
        "bpda-identity": 0.72,
        "bpda": 0.81,
        "eot": 0.77,
        "transfer": 0.55,
        "encrypted-input": 0.95,
        "gradient-free": 0.41,
        "autoattack": 0.85,
        "worst-case-keyless": 0.79,
        "worst-case": 0.91,
        "worst-case-channel": 0.97,
    },
    "Encrypted-DK": {
        "pgd": 0.79,
        "bpda": 0.84,
        "eot": 0.88,
        "transfer": 0.62,
        "gradient-free": 0.52,
        "worst-case-keyless": 0.89,
        "worst-case": 0.93,
    },
    "Encrypted-Adv": {"pgd": 0.04, "bpda": 0.35, "eot": 0.31, "worst-case": 0.44},
    "Encrypted-Adv-DK": {"pgd": 0.69, "eot": 0.72, "gradient-free": 0.58, "worst-case": 0.76},
    "Custom-Scenario": {"pgd": 0.30, "bpda": 0.45, "worst-case": 0.50},
}
CLEAN = {
    "Plain": (0.01, 0.14),
    "Encrypted": (0.02, 0.17),
    "Encrypted-DK": (0.43, 0.51),
    "Encrypted-Adv": (0.09, 0.83),
    "Encrypted-Adv-DK": (0.66, 0.62),
    "Custom-Scenario": (0.05, 0.20),
}


def result_row(scenario: str, evaluation: str, epsilon: float, error: float) -> dict:
    return {
        "scenario": scenario,
        "evaluation": evaluation,
        "epsilon": epsilon,
        "n": 1000,
        "error": error,
        "ci_low": max(0.0, error - 0.03),
        "ci_high": min(1.0, error + 0.03),
    }


def results_table(
    errors: dict = ERRORS, epsilons: tuple[float, ...] = EPSILONS, clean: bool = True
) -> pa.Table:
    rows = []
    for scenario, attacks in errors.items():
        if clean:
            train, test = CLEAN[scenario]
            rows += [
                result_row(scenario, "train", 0.0, train),
                result_row(scenario, "test", 0.0, test),
            ]
        for evaluation, error in attacks.items():
            for epsilon in epsilons:  # smaller epsilon, smaller error
                rows.append(result_row(scenario, evaluation, epsilon, error * epsilon / 0.1))
    return pa.Table.from_pylist(rows)


def training_table() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"scenario": s, "train_error": train + 0.001, "test_error": test + 0.001, "epochs": 3}
            for s, (train, test) in CLEAN.items()
        ]
    )


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    pq.write_table(results_table(), tmp_path / "results.parquet")
    pq.write_table(training_table(), tmp_path / "training.parquet")
    return tmp_path


def table_rows(report: str, heading: str) -> dict[str, list[str]]:
    """The cells of the markdown table under ``heading``, by first cell (header row included)."""
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_report_has_paper_numbers_and_every_scenario(results_dir: Path):
    path = write_report(results_dir)
    assert path == results_dir / "report.md" and path.is_file()
    report = path.read_text()
    for scenario in ERRORS:
        assert scenario in report
    table = table_rows(report, "## Table I")
    for scenario, numbers in PAPER_TABLE_I.items():
        assert table[scenario][-3:] == [f"{v:.3f}" for v in numbers]
    # Ours beside the paper's: clean errors from results.parquet (n in the header), then each
    # reading of the paper's protocol at 0.1 in its own column.
    assert table["Scenario"][1:7] == [
        "train (during training)",
        "clean train (n=1000)",
        "test (n=1000)",
        "adversarial: pgd",
        "adversarial: paper-literal",
        "adversarial: bpda-identity",
    ]
    # The train column is training.parquet's (what was trained on), clean train beside it.
    assert table["Encrypted"] == [
        "3",
        "0.021",
        "0.020",
        "0.170",
        "0.270",
        "0.600",
        "0.720",
        "0.011",
        "0.166",
        "0.269",
    ]
    assert table["Plain"][5:7] == ["-", "-"]
    assert table["Custom-Scenario"][-3:] == ["-", "-", "-"]
    # Compared where all three readings ran (Encrypted only, here): pgd is 0.001 off.
    assert (
        "Closest to the paper's adversarial column: **`pgd`** (mean absolute difference "
        "over Encrypted: `pgd` 0.001, `paper-literal` 0.331, `bpda-identity` 0.451)"
    ) in report
    assert AMBIGUITY in report and THREAT_MODELS in report
    assert "(the paper's)" in report
    assert "worst-case" in report and "upper bound on robustness" in report
    assert "![robustness curves](curves.png)" in report
    assert "gallery.png" not in report


def test_the_attack_that_broke_most_is_bold_never_a_worst_case(results_dir: Path):
    report = write_report(results_dir).read_text()
    table = table_rows(report, "## Adaptive evaluation")
    assert table["Scenario"] == list(ADAPTIVE)
    for scenario, attacks in ERRORS.items():
        cells = dict(zip(ADAPTIVE, table[scenario]))
        bold = [name for name, cell in cells.items() if cell.startswith("**")]
        plain_image_attacks = {
            k: v
            for k, v in attacks.items()
            if k
            not in (
                "encrypted-input",
                "worst-case-channel",
                "worst-case-keyless",
                "worst-case-leaked",
                "worst-case",
            )
        }
        assert bold == [max(plain_image_attacks, key=plain_image_attacks.get)], scenario
        worst = attacks["worst-case"]
        high = min(1.0, worst + 0.03)
        assert cells["worst-case"] == f"{worst:.3f} [{worst - 0.03:.2f}, {high:.2f}]"
        for name, cell in cells.items():
            if name in attacks:
                assert re.fullmatch(r"(\*\*)?\d\.\d{3} \[\d\.\d{2}, \d\.\d{2}\](\*\*)?", cell)


def test_a_cascaded_attack_says_what_it_broke_of_the_images_it_met(tmp_path: Path):
    """In cascade mode an attack meets only what its attacker left: its cell is "broke b of
    n", not an error over all; bold goes to the attack that broke the most images, which
    here is a cascaded one with the lower error."""
    rows = [
        result_row("Encrypted", "test", 0.0, 0.2),
        result_row("Encrypted", "pgd", 0.1, 0.30),  # every image: 300 of 1000
        {**result_row("Encrypted", "eot", 0.1, 0.5), "n": 700},  # 350 of the 700 left
        {**result_row("Encrypted", "bpda", 0.1, 0.25), "n": 200},  # 50 of 200
        result_row("Encrypted", "worst-case-keyless", 0.1, 0.55),
        result_row("Encrypted", "worst-case", 0.1, 0.60),
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "results.parquet")
    report = write_report(tmp_path).read_text()
    cells = dict(zip(ADAPTIVE, table_rows(report, "## Adaptive evaluation")["Encrypted"]))
    assert cells["pgd"] == "0.300 [0.27, 0.33]"
    assert cells["eot"] == "**broke 350 of 700**"
    assert cells["bpda"] == "broke 50 of 200"
    assert cells["worst-case"] == "0.600 [0.57, 0.63]"
    assert "the b of them it broke" in report


def test_missing_evaluations_show_a_dash(results_dir: Path):
    report = write_report(results_dir).read_text()
    table = table_rows(report, "## Adaptive evaluation")
    for scenario, attacks in ERRORS.items():
        for name, cell in zip(ADAPTIVE, table[scenario]):
            assert (cell == "-") == (name not in attacks), (scenario, name, cell)


def test_curves_png_is_a_real_image(results_dir: Path):
    write_report(results_dir)
    path = results_dir / "curves.png"
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        assert image.width >= 400 and image.height >= 300
        assert len(set(image.convert("L").getdata())) > 10  # drawn on, not blank


def test_missing_results_raise_a_user_error(tmp_path: Path):
    with pytest.raises(LieRayError, match=r"results\.parquet.*lie-ray evaluate"):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_report_is_deterministic(results_dir: Path):
    first = write_report(results_dir).read_bytes()
    second = write_report(results_dir).read_bytes()
    assert first == second
    assert not [p for p in results_dir.iterdir() if p.name.startswith(".")]  # no staged leftovers


def test_training_table_fallback_and_largest_epsilon(tmp_path: Path):
    """Without clean rows in results, train/test come from the training table; without 0.1,
    the largest epsilon is the headline and the report says so."""
    pq.write_table(results_table(epsilons=(0.02, 0.05), clean=False), tmp_path / "results.parquet")
    (tmp_path / "gallery.png").write_bytes(b"")
    report = write_report(tmp_path, training_table=training_table()).read_text()
    table = table_rows(report, "## Table I")
    assert table["Plain"][:5] == ["3", "0.011", "-", "0.141*", f"{0.95 * 0.05 / 0.1:.3f}"]
    assert "* marks a value from training.parquet" in report
    assert "epsilon = 0.05, the largest evaluated" in report
    assert "![gallery](gallery.png)" in report


def test_ties_are_all_bold(tmp_path: Path):
    errors = {"Plain": {"pgd": 1.0, "autoattack": 1.0, "transfer": 0.6, "worst-case": 1.0}}
    pq.write_table(
        results_table(errors, epsilons=(0.1,), clean=False), tmp_path / "results.parquet"
    )
    report = write_report(tmp_path).read_text()
    cells = dict(zip(ADAPTIVE, table_rows(report, "## Adaptive evaluation")["Plain"]))
    assert [n for n, c in cells.items() if c.startswith("**")] == ["pgd", "autoattack"]
    assert table_rows(report, "## Table I")["Plain"][:4] == ["-", "-", "-", "-"]


def test_a_key_based_defence_is_headlined_by_its_keyless_worst_case(results_dir: Path):
    report = write_report(results_dir).read_text()
    headline = report.split("## Headline robustness", 1)[1].split("\n## ", 1)[0]
    bullets = {
        line[2:].split(":", 1)[0]: line.split(": ", 1)[1]
        for line in headline.splitlines()
        if line.startswith("- ")
    }
    # Encrypted scenarios (EOT ran on them): keyless in bold, the key-holder's beside it.
    assert bullets["Encrypted"] == (
        "**keyless 0.790 [0.76, 0.82]** (with the key 0.910 "
        "[0.88, 0.94]; on the channel 0.970 [0.94, 1.00])"
    )
    assert bullets["Encrypted-DK"].startswith("**keyless 0.890 [0.86, 0.92]** (with the key 0.930")
    # No key, or no keyless row: the one worst case.
    assert bullets["Plain"] == "0.980 [0.95, 1.00]"
    assert bullets["Encrypted-Adv"] == "0.440 [0.41, 0.47]"


def deviation_lines(report: str) -> list[str]:
    section = report.split("## Deviations from the paper", 1)[1].split("\n## ", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def test_deviations_from_the_paper_come_from_the_run_records(tmp_path: Path):
    # Records built by training's own functions: a smoke run on a slice says so, line by line;
    # the paper preset on the whole data set leaves only what the paper never stated.
    import dataclasses

    from lie_ray.evaluation.settings import EVAL_PRESETS
    from lie_ray.infra.provenance import code, with_record
    from lie_ray.scenarios import PAPER_SCENARIOS, Scenario
    from lie_ray.training.record import training_record
    from lie_ray.training.settings import get_preset
    from lie_ray.training.untrained import NO_DATA

    def write(settings, scenarios, evaluation, images):
        records = {s.name: training_record(s, settings, "f" * 16, NO_DATA) for s in scenarios}
        record = {"settings": dataclasses.asdict(evaluation), "training": records, "code": code()}
        pq.write_table(
            with_record(results_table({"Plain": {"pgd": 0.9}}), record),
            tmp_path / "results.parquet",
        )
        pq.write_table(
            pa.Table.from_pylist(
                [
                    {
                        "scenario": s.name,
                        "train_error": 0.1,
                        "test_error": 0.2,
                        "epochs": 1,
                        "train_images": images[0],
                        "test_images": images[1],
                    }
                    for s in scenarios
                ]
            ),
            tmp_path / "training.parquet",
        )
        return deviation_lines(write_report(tmp_path).read_text())

    smoke = get_preset("smoke").replace(epochs=1, train_limit=256)
    scenarios = [s.with_attack(eps=0.1, step_size=0.125, steps=1) for s in PAPER_SCENARIOS.values()]
    scenarios.append(Scenario("Encrypted-IdGroup", True, "id-group"))
    lines = write(smoke, scenarios, EVAL_PRESETS["smoke"], (256, 128))
    assert "Training epochs: 1 [100]." in lines
    assert "Training ResNet18 base width: 8 [64]." in lines
    assert "Training learning rate: 0.05 [0.1]." in lines
    assert "Training saw 256 train images per epoch [50,000]." in lines
    assert "Training saw 128 test images per epoch [10,000]." in lines
    assert (
        "Encrypted-Adv's adversarial training: PGD eps 0.1, step 0.125, 1 step(s) [eps "
        "0.1, step 0.01, 20 steps]."
    ) in lines
    assert any(
        line.startswith("Encrypted-Adv-DK's adversarial training meets the cipher by `bpda`")
        for line in lines
    )
    assert "Attacked the first 100 test images [10,000]." in lines
    assert "Evaluation PGD runs 10 steps [20]." in lines
    assert not any("keys with" in line for line in lines)  # the paper's DK is per-minibatch

    paper = write(
        get_preset("paper"), list(PAPER_SCENARIOS.values()), EVAL_PRESETS["paper"], (50_000, 10_000)
    )
    assert not any(
        line.startswith(("Training ", "Attacked", "Evaluation PGD"))
        or "adversarial training: PGD" in line
        for line in paper
    ), paper
    assert "SGD momentum and weight decay, which the paper does not state: 0.9 and 0.0005." in paper
    # the attacker's held-out images are a deviation at any scale: named from the record
    assert paper[0].startswith("The last 512 train images are held out of training")
    assert len(paper) == 1 + 3 + 2  # that, what it leaves open, each -Adv scenario's reading


def per_image(scenario, evaluation, epsilon, ids, wrong, parts=None) -> list[dict]:
    """Example rows: ``ids`` attacked, those in ``wrong`` misclassified."""
    return [
        {
            "scenario": scenario,
            "evaluation": evaluation,
            "epsilon": epsilon,
            "id": i,
            "correct": i not in wrong,
            "linf": 0.0,
            "attacked": True,
            "broken_by": (parts or {}).get(i, ""),
        }
        for i in ids
    ]


def write_checked_run(directory: Path) -> None:
    """A constructed run of 100 images where Plain passes every check and Encrypted fails each:
    pgd falls from 8/255 to 0.1, the unbounded PGD stops at 0.8, EOT with twice its keys breaks
    20 more images, Square breaks 30 of the 40 images it met where the white-box PGD that met
    them all breaks 10, and AutoAttack's Square breaks 6 its gradient attacks left."""
    from lie_ray.evaluation.tables import summarise

    every, small = range(100), 8 / 255
    rows = []
    for scenario in ("Plain", "Encrypted"):
        rows += per_image(scenario, "test", 0.0, every, range(10))
    rows += per_image("Plain", "pgd", small, every, range(60))
    rows += per_image("Plain", "pgd", 0.1, every, range(90))
    rows += per_image("Plain", "gradient-free", 0.1, every, range(50))
    rows += per_image(
        "Plain", "autoattack", 0.1, every, range(95), dict.fromkeys(range(95), "apgd-ce")
    )
    rows += per_image("Plain", "sanity-unbounded", 1.0, every, every)
    rows += per_image("Plain", "sanity-pgd", 0.1, every, range(90))
    rows += per_image("Plain", "sanity-pgd-2x", 0.1, every, range(91))
    rows += per_image("Plain", "worst-case", 0.1, every, range(95))
    rows += per_image("Encrypted", "pgd", small, every, range(30))
    rows += per_image("Encrypted", "pgd", 0.1, every, range(20))
    rows += per_image("Encrypted", "eot", 0.1, range(20, 100), range(20, 60))
    rows += per_image("Encrypted", "eot-2x", 0.1, range(20, 100), range(20, 80))
    rows += per_image("Encrypted", "gradient-free", 0.1, range(60, 100), range(60, 90))
    rows += per_image(
        "Encrypted",
        "autoattack",
        0.1,
        range(90, 100),
        range(90, 96),
        dict.fromkeys(range(90, 96), "square"),
    )
    rows += per_image("Encrypted", "sanity-unbounded", 1.0, every, range(80))
    rows += per_image("Encrypted", "sanity-pgd", 0.1, every, range(70))
    rows += per_image("Encrypted", "sanity-pgd-2x", 0.1, every, range(70))
    rows += per_image("Encrypted", "worst-case-keyless", 0.1, every, range(80))
    rows += per_image("Encrypted", "worst-case", 0.1, every, range(96))
    examples = pa.Table.from_pylist(rows)
    pq.write_table(examples, directory / "examples.parquet")
    pq.write_table(summarise(examples), directory / "results.parquet")


def test_each_sanity_check_fails_on_a_table_made_to_fail_it_and_names_its_figure(tmp_path):
    write_checked_run(tmp_path)
    report = write_report(tmp_path).read_text()
    rows = table_rows(report, "## Sanity checks")
    assert rows["Scenario"] == [
        "error rises with eps",
        "unbounded attack",
        "2x effort",
        "black-box <= white-box",
        "Square after gradient attacks",
    ]
    plain, encrypted = rows["Plain"], rows["Encrypted"]
    assert [cell.split(":")[0] for cell in plain] == ["pass"] * 5, plain
    assert [cell.split(":")[0] for cell in encrypted] == ["**FAIL**"] * 5, encrypted
    assert encrypted[0] == "**FAIL**: pgd 30 → 20 of 100 (eps 0.03137 → 0.1)"
    assert encrypted[1] == "**FAIL**: 0.800 at eps 1 (needs >= 0.99)"
    assert encrypted[2].startswith(
        "**FAIL**: sanity-pgd 70 → 70 of 100 (+0.000); eot 40 → 60 of 80"
    )
    assert encrypted[3] == ("**FAIL**: gradient-free 30 vs sanity-pgd 10 of 40: gradient masking?")
    assert encrypted[4] == ("**FAIL**: autoattack: Square broke 6 of the 10 its gradients left")
    assert plain[3] == "pass: gradient-free 50 vs autoattack 95 of 100"
    # Each failure beside the figure it casts doubt on: the 2x EOT on the keyless attacker's,
    # the white-box checks on the key holder's.
    headline = report.split("## Headline robustness", 1)[1].split("\n## ", 1)[0]
    line = next(x for x in headline.splitlines() if x.startswith("- Encrypted:"))
    assert line.endswith(
        "(failed sanity checks: error rises with eps, unbounded attack, black-box <= "
        "white-box, Square after gradient attacks (on with the key); 2x effort (on keyless); "
        "see Sanity checks)"
    ), line
    assert "failed sanity" not in next(x for x in headline.splitlines() if x.startswith("- Plain:"))
    # The sanity rows are no attack of the adaptive table.
    assert not any(
        "sanity" in c or "2x" in c for c in table_rows(report, "## Adaptive evaluation")["Scenario"]
    )


def test_a_cascaded_attack_can_only_rise_so_the_check_says_how_many_met_every_image(tmp_path):
    """An attack the cascade gave only the images it had not broken: compared on the images it
    met at both eps, which it had not broken at the smaller; the check passes and says that
    only the comparisons on every image could have failed."""
    rows = per_image("Encrypted", "test", 0.0, range(10), [])
    rows += per_image("Encrypted", "eot", 8 / 255, range(10), range(4))
    rows += per_image("Encrypted", "eot", 0.1, range(4, 10), range(4, 6))
    examples = pa.Table.from_pylist(rows)
    from lie_ray.report.catalogue import Catalogue
    from lie_ray.report.sanity import PerImage, rising_with_epsilon

    check = rising_with_epsilon(PerImage(examples), "Encrypted", Catalogue.builtin())
    assert check.passed is True
    assert check.detail == "1 comparison(s) on the images met at both eps, 0 on every image"


def test_a_run_that_named_its_attacks_renders_with_an_outside_one_shown_as_recorded(tmp_path):
    """--attacks eot,probe-outside: no paper reading ran, and 'probe-outside' is not
    installed where the report is rendered; the run record says how to show it (its label in
    the adaptive table), lie_ray's own attacks keep their columns, with '-' where none ran."""
    from lie_ray.attacks import AttackSpec, pgd_cost, registry
    from lie_ray.evaluation.settings import EvalSettings
    from lie_ray.evaluation.tables import attack_record
    from lie_ray.infra import provenance

    outside = AttackSpec(
        name="probe-outside",
        tier="keyless",
        run=lambda *args: None,
        cost=pgd_cost,
        cascade_rank=35,
        label="probe (outside)",
        colour="crimson",
    )
    registry.register(outside)
    try:
        settings = EvalSettings(attacks=("eot", "probe-outside"))
        record = {"attacks": attack_record(settings), "code": provenance.code()}
    finally:
        del registry.EXTERNAL["probe-outside"]  # rendered below without it, as elsewhere
    errors = {"Encrypted": {"eot": 0.3, "probe-outside": 0.4, "worst-case-keyless": 0.5}}
    table = provenance.with_record(results_table(errors), record)
    pq.write_table(table, tmp_path / "results.parquet")
    pq.write_table(training_table(), tmp_path / "training.parquet")
    report = write_report(tmp_path).read_text()
    adaptive = table_rows(report, "## Adaptive evaluation")
    header = adaptive["Scenario"]
    assert "probe (outside)" in header and "eot" in header and "pgd" in header
    cells = dict(zip(header, adaptive["Encrypted"]))
    assert cells["probe (outside)"].startswith("**0.400") and cells["pgd"] == "-"
    assert header.index("probe (outside)") < header.index("worst-case-keyless")
    assert "probe-outside" not in registry.EXTERNAL


def test_the_sign_test_is_the_binomial_tail_by_enumeration():
    """The chance the sanity checks allow for: of every way n discordant images could split
    evenly at random, the share with at least ``lost`` going one way (counted here, one by
    one, against the closed form)."""
    import itertools

    from lie_ray.report.sanity import sign_test

    for n in range(0, 11):
        outcomes = list(itertools.product((0, 1), repeat=n))
        for lost in range(n + 1):
            share = sum(sum(o) >= lost for o in outcomes) / len(outcomes)
            assert sign_test(lost, n - lost) == pytest.approx(share, abs=1e-12)
    assert sign_test(10, 0) < 0.001 < 0.3 < sign_test(5, 3)
