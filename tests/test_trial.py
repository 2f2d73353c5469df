"""vertaug trial: the population file, seeded patients, paired statistics, bad input, a small trial on the runner."""

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from vertaug.cli import app
from vertaug.trial.population import (
    DEFAULT_POPULATION,
    PopulationError,
    load_population,
    sample_patients,
)
from vertaug.trial.statistics import mean_difference, paired_risk_ratio

runner = CliRunner()


def _edit(tmp_path, old: str, new: str):
    text = DEFAULT_POPULATION.read_text()
    assert old in text
    path = tmp_path / "population.toml"
    path.write_text(text.replace(old, new, 1).replace("../../../tests", str(DEFAULT_POPULATION.parents[3] / "tests")))
    return path


def test_default_population_loads_with_its_sources_and_arms():
    pop = load_population()
    ids = [s.source_id for s in pop.sources]
    assert ids == [f"totalseg-L{i}" for i in range(1, 6)] + ["tptbox-L3", "phantom-L1"]
    assert set(pop.arms) == {"VP", "KP"} and pop.arms["VP"]["cement"] == "low" and pop.arms["KP"]["cement"] == "high"
    assert sum(pop.fracture_type.values()) == pytest.approx(1.0)


def test_same_seed_same_patients_and_frequencies_follow_the_file():
    pop = load_population()
    a, b = sample_patients(pop, 50, 7), sample_patients(pop, 50, 7)
    assert a == b and a != sample_patients(pop, 50, 8)
    many = sample_patients(pop, 2000, 3)
    share = np.mean([p.fracture_type == "wedge" for p in many])
    assert share == pytest.approx(pop.fracture_type["wedge"], abs=0.04)  # 4.5 sigma of a binomial share at n=2000
    assert np.mean([p.cleft for p in many]) == pytest.approx(pop.cleft, abs=0.04)
    hu = np.array([p.trabecular_hu for p in many])
    assert hu.min() >= pop.density["min_hu"] and hu.max() <= pop.density["max_hu"]
    assert np.median(hu) == pytest.approx(pop.density["mean_hu"], abs=3.0)  # truncation nearly symmetric


def test_third_arm_from_the_file(tmp_path):
    path = _edit(tmp_path, "# [arms.VP_high]\n# procedure = \"vertebroplasty\"\n# cement = \"high\"",
                 "[arms.VP_high]\nprocedure = \"vertebroplasty\"\ncement = \"high\"")
    arms = load_population(path).arms
    assert list(arms) == ["VP", "KP", "VP_high"] and arms["VP_high"]["cement"] == "high"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("wedge = 0.50", "wedge = 0.50 oops", "not valid TOML"),
    ("cleft = 0.20", "cleft = 1.20", "fracture.cleft = 1.2 is not a probability"),
    ("wedge = 0.50", "wedge = 0.40", "table fracture.type sums to 0.9, not 1"),
    ("endplate_break = 0.90", "endplat_break = 0.90", r"table fracture has unknown key\(s\) \['endplat_break'\]"),
    ('procedure = "kyphoplasty"', 'procedure = "stentoplasty"', "arms.KP.procedure = 'stentoplasty' is unknown"),
    ("mean_hu = 75.0", "mean_hu = 175.0", r"table density = .* is inconsistent"),
])
def test_bad_population_is_one_line_exit_2(tmp_path, old, new, message):
    path = _edit(tmp_path, old, new)
    with pytest.raises(PopulationError, match=message):
        load_population(path)
    r = runner.invoke(app, ["trial", "--population", str(path), "--out", str(tmp_path / "out"), "--patients", "2"])
    assert r.exit_code == 2, r.output
    assert re.search(message, " ".join(r.output.split())) and "Fix:" in r.output
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.parametrize(("args", "message"), [
    (["--patients", "0"], "patients=0 is below 1"),
    (["--patients", "-3"], "patients=-3 is below 1"),
    (["--arm", "VP_hi"], "Arm 'VP_hi' is not in the population file"),
])
def test_bad_command_line_is_one_line_exit_2(tmp_path, args, message):
    r = runner.invoke(app, ["trial", "--out", str(tmp_path / "out"), *args])
    assert r.exit_code == 2 and message in " ".join(r.output.split())
    assert not (tmp_path / "out").exists()


def test_paired_risk_ratio_matches_the_matched_pair_formula():
    # a=3 both, b=1 KP only, c=5 VP only, 11 neither: RR = 4/8, var ln RR = 6/32
    vp = np.array([1] * 3 + [0] * 1 + [1] * 5 + [0] * 11, bool)
    kp = np.array([1] * 3 + [1] * 1 + [0] * 5 + [0] * 11, bool)
    r = paired_risk_ratio(vp, kp)
    assert (r["vp_rate"], r["kp_rate"], r["estimate"]) == (8 / 20, 4 / 20, 0.5)
    assert math.log(r["ci_high"] / r["estimate"]) == pytest.approx(1.959964 * math.sqrt(6 / 32), rel=1e-6)
    assert math.isnan(paired_risk_ratio(np.zeros(5, bool), np.ones(5, bool))["estimate"])  # VP never leaks


def test_mean_difference_interval_is_students():
    r = mean_difference([1.0, 2.0, 3.0, 4.0])
    assert r["estimate"] == 2.5
    assert r["ci_high"] - 2.5 == pytest.approx(3.182446 * math.sqrt(5 / 3) / 2, rel=1e-6)


def test_scaling_sets_the_median_body_hu_to_the_target(example):
    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.anatomy.levels import BODY_LABEL, label_table
    from vertaug.trial.runner import scale_level_hu

    ct = load_ct(example["ct"])
    seg, body = load_labels(example["seg"], ct), load_labels(example["body"], ct)
    scaled, factor = scale_level_hu(ct, seg, body, "L2", "v2", 60.0)
    core = (seg.data == label_table("v2")["L2"]) & (body.data == BODY_LABEL)
    assert np.median(scaled.data[core]) == pytest.approx(60.0, rel=1e-4)
    other = seg.data != label_table("v2")["L2"]
    assert np.array_equal(scaled.data[other], np.asarray(ct.data, np.float32)[other]) and 0 < factor < 1


@pytest.mark.slow
def test_small_trial_on_the_runner_resumes_with_the_same_rows(tmp_path):
    from vertaug.cohort.run import load_results
    from vertaug.trial.runner import run_trial

    pop = load_population()
    pop = replace(pop, sources=tuple(s for s in pop.sources if s.phantom), spacing_mm=2.0)
    run, summary = run_trial(tmp_path, pop, patients=8, seed=2, scheduler="serial", progress=False)
    rows = load_results(tmp_path).to_pylist()
    assert run.n_tasks == 8 and run.n_failed == 0 and len(rows) == 16  # one row per patient and arm
    assert {(r["case_id"], r["procedure"]) for r in rows} == {(f"p{i:05d}", a) for i in range(8) for a in ("VP", "KP")}
    assert summary["n_patients_paired"] == 8 and len(summary["table"]) == 4
    # 15 % of the body planned in both arms; an injection ends earlier only by a recorded clinical rule
    for r in rows:
        planned = 0.15 * r["body_volume_ml"]
        assert r["injected_ml"] <= planned * (1 + 1e-3)
        assert r["injected_ml"] == pytest.approx(planned, rel=1e-3) or r["stop_reason"] != "volume reached"
    again, summary2 = run_trial(tmp_path, pop, patients=8, seed=2, scheduler="serial", progress=False)
    assert again.n_skipped == 8 and again.n_written == 0
    assert json.dumps(load_results(tmp_path).to_pylist(), default=str) == json.dumps(rows, default=str)
    assert json.dumps(summary2["table"]) == json.dumps(summary["table"])  # NaN-safe: same numbers, same text
    for name in ("trial_summary.json", "trial_summary.md", "trial_summary.html"):
        assert (tmp_path / name).stat().st_size > 0
    page = (tmp_path / "trial_summary.html").read_text()
    assert page.count("<table") == 2 and "<th>effect</th>" in page and "Xing et al. 2013" in page


@pytest.mark.slow
def test_trial_on_a_dask_cluster_by_address_matches_serial(tmp_path):
    """The task and its TrialSpec travel to worker processes (scheduler given as tcp://...): the same rows as serial."""
    pytest.importorskip("distributed")
    from vertaug.cohort.run import load_results, local_cluster
    from vertaug.trial.runner import run_trial

    pop = load_population()
    pop = replace(pop, sources=tuple(s for s in pop.sources if s.phantom), spacing_mm=2.0)
    client, cluster = local_cluster(1)
    try:
        run, _ = run_trial(tmp_path / "dask", pop, patients=2, seed=5, scheduler=cluster.scheduler_address,
                           progress=False)
    finally:
        client.close()
        cluster.close()
    run_trial(tmp_path / "serial", pop, patients=2, seed=5, scheduler="serial", progress=False)
    assert run.scheduler.startswith("tcp://127.0.0.1:") and run.n_failed == 0
    keep = ("case_id", "procedure", "injected_ml", "leaked_ml", "height_restored_mm", "trabecular_hu")
    rows = [[{k: r[k] for k in keep} for r in load_results(tmp_path / d).to_pylist()] for d in ("dask", "serial")]
    assert rows[0] == rows[1] and len(rows[0]) == 4
