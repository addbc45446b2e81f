from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.report_writer import write_report
from vla_torchrl.evaluation.results import EpisodeResult, IncrementalResults, load_results
from vla_torchrl.evaluation.tables import (
    Stat,
    format_cell,
    paired_comparisons,
    read_summary_csv,
    relative_drops,
    summarize,
    table_markdown,
    write_summary_csv,
)
from vla_torchrl.recipes.report import main

# (policy, task) -> success count per seed (out of 4 episodes); grasp and continuous grasp = 4
# unless listed in _GRASP / _CONT.
_SUCCESS = {
    ("SFT", "ind"): (3, 3, 3),
    ("RL", "ind"): (4, 4, 3),
    ("SFT", "table"): (2, 2, 2),
    ("RL", "table"): (3, 3, 3),
    ("SFT", "noise-w"): (1, 1, 1),
    ("RL", "noise-w"): (2, 2, 2),
    ("SFT", "obj"): (0, 0, 0),
    ("RL", "obj"): (1, 2, 3),
    ("SFT", "obj-pos"): (2, 3, 4),
    ("RL", "obj-pos"): (4, 4, 4),
    ("SFT", "robot-pose"): (1, 1, 1),
    ("RL", "robot-pose"): (4, 4, 4),
}
_CONT = {("SFT", "ind"): (4, 3, 4)}


def _records():
    rows = []
    for (policy, task), succ in _SUCCESS.items():
        cont = _CONT.get((policy, task), (4, 4, 4))
        for seed in range(3):
            for ep in range(4):
                rows.append(
                    EpisodeResult(
                        policy, task, seed, 100 + ep, True, ep < cont[seed], ep < succ[seed]
                    )
                )
    return rows


def test_summary_against_hand_computed_values():
    s = summarize(_records())
    # SFT/ind continuous grasp: per-seed 1, .75, 1 -> mean 11/12, population std sqrt(1/72)
    stat = s[("SFT", "ind")]["continuous_grasp"]
    assert stat.mean == pytest.approx(11 / 12)
    assert stat.std == pytest.approx(math.sqrt(1 / 72))
    assert stat.n_seeds == 3
    # RL/obj success: per-seed .25, .5, .75 -> mean .5, std sqrt(1/24)
    assert s[("RL", "obj")]["success"].mean == pytest.approx(0.5)
    assert s[("RL", "obj")]["success"].std == pytest.approx(math.sqrt(1 / 24))
    zero = s[("SFT", "obj")]["success"]
    assert (zero.mean, zero.std, zero.n_seeds, zero.n, zero.count) == (0.0, 0.0, 3, 12, 0)
    # sample std on request: sqrt(((-.25)^2 + 0 + .25^2) / 2) = .25
    assert summarize(_records(), ddof=1)[("RL", "obj")]["success"].std == pytest.approx(0.25)


def test_relative_drops_hand_computed():
    drops = relative_drops(summarize(_records()))
    assert drops[("SFT", "table")] == pytest.approx((0.5 - 0.75) / 0.75)
    assert drops[("RL", "table")] == pytest.approx(-2 / 11)
    assert drops[("RL", "noise-w")] == pytest.approx(-5 / 11)
    assert ("RL", "ind") not in drops


def test_format_cell_like_the_paper():
    assert format_cell(Stat(0.921875, 0.01276, 3)) == "0.922 (.013)"
    assert format_cell(Stat(0.5, 0.0, 3)) == "0.500 (.000)"
    assert format_cell(Stat(1.0, 0.0, 1)) == "1.000 (.000)"
    assert format_cell(Stat(0.75, 0.0, 3, n=12, count=9, ci=(0.46769, 0.91106))) == (
        "0.750 (.000) [.468, .911]"
    )


def test_table_text_and_bold():
    text = table_markdown(summarize(_records()), tasks=["ind", "table"])
    header, _, ind_row, table_row = text.splitlines()
    assert header.split(" | ")[1:4] == ["n", "Acc. SFT", "Acc. RL"]
    cells = [c.strip() for c in ind_row.strip("|").split("|")]
    # Task | n | Acc SFT | Acc RL | Cont SFT | Cont RL | Suc SFT | Suc RL; Wilson intervals of
    # 12/12, 11/12 and 9/12 (see test_wilson_interval_against_the_formula)
    assert cells == [
        "IND",
        "12",  # 3 seeds x 4 episodes
        "**1.000 (.000) [.758, 1.000]**",
        "**1.000 (.000) [.758, 1.000]**",  # a tie: both bold
        "0.917 (.118) [.646, .985]",
        "**1.000 (.000) [.758, 1.000]**",
        "0.750 (.000) [.468, .911]",
        "**0.917 (.118) [.646, .985]**",
    ]
    assert table_row.split("|")[1].strip() == "Table"


def test_results_file_round_trips(tmp_path):
    rows = _records()
    path = tmp_path / "episodes.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(EpisodeResult.__dataclass_fields__))
        writer.writeheader()
        for r in rows:
            writer.writerow(r.__dict__)
    assert load_results(path) == rows
    jsonl = tmp_path / "episodes.jsonl"
    jsonl.write_text("\n".join(json.dumps(r.__dict__) for r in rows))
    assert load_results(jsonl) == rows
    with pytest.raises(UserError, match="lacks success"):
        load_results(
            [
                {
                    "policy": "a",
                    "task": "ind",
                    "seed": 0,
                    "episode_id": 0,
                    "grasped": 1,
                    "continuous_grasp": 1,
                }
            ]
        )
    with pytest.raises(UserError, match="not a boolean"):
        load_results([dict(rows[0].__dict__, success="maybe")])


def test_summary_csv_round_trip(tmp_path):
    s = summarize(_records())
    path = write_summary_csv(s, tmp_path / "summary.csv")
    assert read_summary_csv(path) == s


def _assert_not_blank(path):
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 0
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10


def test_write_report(tmp_path):
    files = write_report(_records(), tmp_path / "report")
    md = files["report.md"].read_text()
    for title in ("Table 1: Vision", "Table 2: Semantics", "Table 3: Execution"):
        assert title in md
    assert "| Obj. Pos. |" in md and "| Robot Pose |" in md
    # Vision axis: SFT success (.5 + .25) / 2, RL (.75 + .5) / 2; drops -50.0% and -7/22
    assert "| Vision | 0.375 | 0.625 | -50.0% | -31.8% |" in md
    for name in ("radar_success.png", "radar_ood_ind_ratio.png", "bars_success.png"):
        _assert_not_blank(files[name])
    with open(files["table_vision.csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["task"] for r in table] == ["IND", "Table", "Noise-w"]
    assert float(table[0]["Suc. RL mean"]) == pytest.approx(11 / 12, abs=1e-6)
    with open(files["drops.csv"], newline="") as fh:
        drops = {(r["policy"], r["task"]): float(r["relative_drop"]) for r in csv.DictReader(fh)}
    assert drops[("SFT", "noise-w")] == pytest.approx(-2 / 3)
    with pytest.raises(UserError, match="no episode results"):
        write_report([], tmp_path / "empty")


def test_ind_only_report_shows_the_ind_table(tmp_path):
    ind = [r for r in _records() if r.task == "ind"]
    files = write_report(ind, tmp_path / "report")
    md = files["report.md"].read_text()
    assert "## In-distribution" in md and "Summary by axis" not in md
    with open(files["table_ind.csv"], newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["task"] == "IND"
    assert float(row["Suc. RL mean"]) == pytest.approx(11 / 12, abs=1e-6)  # as in the full report


def test_incremental_results_survive_interruption(tmp_path):
    store = IncrementalResults(tmp_path / "eval" / "episodes.jsonl")
    rows = _records()

    def episodes(policy, task, seed):
        return [
            {k: getattr(r, k) for k in ("episode_id", "grasped", "continuous_grasp", "success")}
            for r in rows
            if (r.policy, r.task, r.seed) == (policy, task, seed)
        ]

    store.append_group("RL", "ind", 0, episodes("RL", "ind", 0))
    store.append_group("RL", "ind", 1, episodes("RL", "ind", 1))
    # interrupted while writing seed 2: two episode lines and half a third, no completion line
    with open(store.path, "a") as fh:
        for ep in episodes("RL", "ind", 2)[:2]:
            row = {"kind": "episode", "attempt": "dead", "policy": "RL", "task": "ind", "seed": 2}
            fh.write(json.dumps({**row, **ep}) + "\n")
        fh.write('{"kind": "episode", "attem')
    assert store.completed() == {("RL", "ind", 0), ("RL", "ind", 1)}
    assert not store.is_complete("RL", "ind", 2)
    assert len(store.results()) == 8
    # resume: only the missing group is evaluated again
    store.append_group("RL", "ind", 2, episodes("RL", "ind", 2))
    got = store.results()
    expected = [r for r in rows if (r.policy, r.task) == ("RL", "ind")]
    assert sorted(got, key=lambda r: (r.seed, r.episode_id)) == expected
    assert load_results(store.path) == got
    assert summarize(got)[("RL", "ind")]["success"].mean == pytest.approx(11 / 12)


def test_report_cli(tmp_path, capsys):
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in _records()))
    out = tmp_path / "out"
    assert main([f"results={path}", f"out={out}", "policies=[RL,SFT]", "resamples=200"]) == 0
    md = (out / "report.md").read_text()
    assert "| Task | n | Acc. RL | Acc. SFT |" in md
    assert "## Paired comparison: SFT vs RL" in md  # the first policy is the baseline
    axes = tmp_path / "axes.json"
    axes.write_text(json.dumps({"ind": "ind", "table": "vision", "obj": "semantics"}))
    assert main([f"results={path}", f"out={tmp_path / 'o2'}", f"task_axes={axes}"]) == 0
    md2 = (tmp_path / "o2" / "report.md").read_text()
    # tasks missing from the mapping are kept, under "Other"
    assert "Table 1: Vision" in md2 and "Table 2: Semantics" in md2
    other = md2.split("## Table 3: Other")[1].split("##")[0]
    assert "| Noise-w |" in other and "| Robot Pose |" in other and "| Table |" not in other
    capsys.readouterr()
    assert main([f"results={path}", f"out={out}", "ddof=2"]) == 2
    assert "ddof=2 must be 0" in capsys.readouterr().err


def test_report_cli_deprecated_flags(tmp_path, capsys):
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in _records()))
    assert main([str(path), "--out", str(tmp_path / "out"), "--policies", "RL,SFT"]) == 0
    err = capsys.readouterr().err
    assert "deprecated" in err and "policies=['RL','SFT']" in err
    assert "| Task | n | Acc. RL | Acc. SFT |" in (tmp_path / "out" / "report.md").read_text()


# -- statistics users can trust (issue 15 item 5) ------------------------------------------------
Z95 = 1.959963984540054


def _wilson(k, n):
    p, z2 = k / n, Z95**2
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def test_every_cell_has_n_and_a_wilson_interval_pooled_over_seeds():
    s = summarize(_records())
    for (policy, task), stats in s.items():
        for metric, stat in stats.items():
            # a plain loop over the records, independent of summarize's grouping
            eps = [r for r in _records() if (r.policy, r.task) == (policy, task)]
            count = sum(1 for r in eps if getattr(r, metric))
            assert (stat.n, stat.count) == (len(eps), count)
            assert stat.ci == pytest.approx(_wilson(count, len(eps)), abs=1e-12)
    # RL/obj success: seed means .25 .5 .75 -> t-interval .5 +- 4.302653 * .25 / sqrt(3) =
    # [-.121, 1.121], clipped to [0, 1]; SFT/ind cont. grasp: 1 .75 1 -> 11/12 +- t_2 sd / sqrt(3)
    assert s[("RL", "obj")]["success"].seed_ci == (0.0, 1.0)
    half = 4.302652729911275 * math.sqrt(1 / 48) / math.sqrt(3)  # sample sd of (1, .75, 1)
    assert s[("SFT", "ind")]["continuous_grasp"].seed_ci == pytest.approx((11 / 12 - half, 1.0))
    assert s[("SFT", "obj")]["success"].seed_ci == (0.0, 0.0)
    one_seed = summarize([r for r in _records() if r.seed == 0])
    assert one_seed[("RL", "obj")]["success"].seed_ci is None


def _mcnemar(b, c):
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def test_paired_comparison_on_the_same_episodes(tmp_path):
    rows = _records()
    comps = {
        (c.task, c.metric): c for c in paired_comparisons(rows, baseline="SFT", resamples=2000)
    }
    assert len(comps) == 6 * 3  # 6 tasks x 3 metrics, RL vs SFT
    # hand count, RL/obj vs SFT/obj success: SFT never; RL 1, 2, 3 of 4 -> 6 RL-only pairs
    c = comps[("obj", "success")]
    assert (c.n, c.only_baseline, c.only_policy) == (12, 0, 6)
    assert c.p_value == pytest.approx(2 / 2**6) and c.diff == pytest.approx(0.5)
    assert c.low <= 0.5 <= c.high
    # every comparison: discordant counts by a plain loop, McNemar by a binomial sum
    for (task, metric), c in comps.items():
        pairs = {}
        for r in rows:
            if r.task == task:
                pairs.setdefault((r.seed, r.episode_id), {})[r.policy] = getattr(r, metric)
        b = sum(1 for v in pairs.values() if v["SFT"] and not v["RL"])
        cc = sum(1 for v in pairs.values() if v["RL"] and not v["SFT"])
        assert (c.n, c.only_baseline, c.only_policy) == (len(pairs), b, cc)
        assert c.p_value == pytest.approx(_mcnemar(b, cc))
    # only shared episodes are paired: drop RL's seed 2 -> 8 pairs
    part = [r for r in rows if not (r.policy == "RL" and r.seed == 2)]
    c = next(
        c
        for c in paired_comparisons(part, baseline="SFT", metrics=["success"], resamples=100)
        if c.task == "obj"
    )
    assert (c.n, c.only_policy) == (8, 3)
    # no shared episode: numbers are missing with the reason
    moved = [
        r if r.policy == "SFT" else EpisodeResult(**{**r.__dict__, "episode_id": r.episode_id + 50})
        for r in rows
    ]
    c = paired_comparisons(moved, baseline="SFT", metrics=["success"], resamples=100)[0]
    assert c.n == 0 and "no shared episodes" in c.note
    with pytest.raises(UserError, match="appears twice"):
        paired_comparisons(rows + rows[:1], baseline="SFT")


def test_report_shows_n_intervals_and_the_paired_test(tmp_path):
    files = write_report(_records(), tmp_path / "report", resamples=2000)
    md = files["report.md"].read_text()
    assert "95% Wilson interval" in md
    assert "| Obj. | 12 | **1.000 (.000) [.758, 1.000]** |" in md
    assert "## Paired comparison: RL vs SFT (success, same episodes)" in md
    row = next(line for line in md.splitlines() if line.startswith("| Robot Pose | 12 | 0.250"))
    # SFT 3/12, RL 12/12: 9 RL-only episodes, p = 2 / 2^9
    assert row.endswith("| 0 | 9 | 0.004 |")
    with open(files["paired.csv"], newline="") as fh:
        paired = {(r["task"], r["metric"]): r for r in csv.DictReader(fh)}
    assert float(paired[("robot-pose", "success")]["mcnemar_p"]) == pytest.approx(2 / 2**9)
    assert paired[("robot-pose", "success")]["n_pairs"] == "12"
    with open(files["summary.csv"], newline="") as fh:
        summary = {(r["policy"], r["task"], r["metric"]): r for r in csv.DictReader(fh)}
    cell = summary[("SFT", "ind", "success")]  # 9 of 12
    assert (cell["n_episodes"], cell["count"]) == ("12", "9")
    assert (float(cell["ci_low"]), float(cell["ci_high"])) == pytest.approx(_wilson(9, 12))
    with open(files["table_semantics.csv"], newline="") as fh:
        obj = list(csv.DictReader(fh))[1]
    assert obj["task"] == "Obj." and obj["Suc. SFT n"] == "12"
    assert float(obj["Suc. SFT ci_high"]) == pytest.approx(_wilson(0, 12)[1], abs=1e-6)


def test_ind_zero_shows_na_with_the_reason(tmp_path):
    rows = [
        EpisodeResult(**{**r.__dict__, "success": False})
        if (r.policy, r.task) == ("SFT", "ind")
        else r
        for r in _records()
    ]
    files = write_report(rows, tmp_path / "report", resamples=200)
    md = files["report.md"].read_text()
    assert "nan" not in md.lower()
    assert "| Table | n/a (IND = 0) | -18.2% |" in md
    assert "| Vision | 0.375 | 0.625 | n/a (IND = 0) | -31.8% |" in md
    assert "IND success is 0, so (OOD - IND) / IND is undefined" in md
    for name in ("drops.csv", "axes.csv", "summary.csv", "paired.csv"):
        assert "nan" not in files[name].read_text().lower(), name
    with open(files["drops.csv"], newline="") as fh:
        drops = {(r["policy"], r["task"]): r for r in csv.DictReader(fh)}
    assert drops[("SFT", "table")]["relative_drop"] == "n/a"
    assert "undefined" in drops[("SFT", "table")]["note"]
    assert drops[("RL", "table")]["note"] == ""


def test_a_task_on_no_ood_axis_gets_no_relative_drop(tmp_path):
    # hand case: IND 3/4, "reach-corner" (a toy task, on no OOD axis) 1/4, "table" (Vision) 2/4;
    # the drop (2/4 - 3/4) / (3/4) = -33.3% exists only for "table"
    rows = [
        EpisodeResult("SFT", task, 0, 100 + ep, True, True, ep < k)
        for task, k in (("ind", 3), ("reach-corner", 1), ("table", 2))
        for ep in range(4)
    ]
    write_report(rows, tmp_path / "rep", resamples=200)
    md = (tmp_path / "rep" / "report.md").read_text()
    drop_section = md.split("## Relative drop of success per task")[1].split("\n## ")[0]
    assert "-33.3%" in drop_section and "+" not in drop_section
    assert "reach" not in drop_section.lower()
    with open(tmp_path / "rep" / "drops.csv", encoding="utf-8") as fh:
        tasks = [r["task"] for r in csv.DictReader(fh)]
    assert tasks == ["table"]
    other_row = next(line for line in md.splitlines() if line.startswith("| Other |"))
    assert "0.250" in other_row and "n/a (no OOD axis)" in other_row and "%" not in other_row


def test_report_of_several_evaluations_pairs_their_episodes(tmp_path, capsys):
    """``results=[a,b]``: policies evaluated at different times on the same episodes give the
    report of one file holding all of them; an episode of one policy in two files is refused."""
    rows = _records()
    files = {}
    for policy in ("SFT", "RL"):
        files[policy] = tmp_path / f"{policy}.jsonl"
        files[policy].write_text(
            "\n".join(json.dumps(r.__dict__) for r in rows if r.policy == policy)
        )
    both = tmp_path / "both.jsonl"  # the reference: one file, the same rows in the same order
    ordered = [r for p in ("SFT", "RL") for r in rows if r.policy == p]
    both.write_text("\n".join(json.dumps(r.__dict__) for r in ordered))
    args = ["policies=[SFT,RL]", "resamples=300"]
    assert main([f"results={both}", f"out={tmp_path / 'one'}", *args]) == 0
    merged = f"results=[{files['SFT']},{files['RL']}]"
    assert main([merged, f"out={tmp_path / 'two'}", *args]) == 0
    for name in ("summary.csv", "paired.csv", "report.md"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    # the paired table is RL vs SFT on the 12 shared obj episodes (hand count: 6 RL-only)
    paired = (tmp_path / "two" / "paired.csv").read_text()
    assert "obj" in paired
    capsys.readouterr()
    assert main([f"results=[{files['RL']},{both}]", f"out={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err
    assert f"is in {files['RL']} and in {both}" in err and "policy RL" in err
    assert main(["results=[]", f"out={tmp_path / 'bad'}"]) == 2
    assert "results is empty or has an empty entry" in capsys.readouterr().err


def test_report_of_one_seed_slice(tmp_path, capsys):
    """``seeds=[1]``: the report of that seed's episodes only; the cells' n and rates are the
    hand counts of seed 1 (4 episodes per task and policy)."""
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in _records()))
    out = tmp_path / "s1"
    assert main([f"results={path}", f"out={out}", "seeds=[1]", "resamples=200"]) == 0
    rows = read_summary_csv(out / "summary.csv")
    for (policy, task), succ in _SUCCESS.items():
        stat = rows[(policy, task)]["success"]
        assert (stat.n, stat.count) == (4, succ[1]), (policy, task)
        assert stat.mean == pytest.approx(succ[1] / 4) and stat.n_seeds == 1
    capsys.readouterr()
    assert main([f"results={path}", f"out={out}", "seeds=[7]"]) == 2
    assert "seeds=[7]: no episode of these seeds in the results (their seeds: [0, 1, 2])" in (
        capsys.readouterr().err
    )


def test_methods_over_their_training_runs(tmp_path, capsys):
    """``runs={BASE:[SFT],M:[SFT,RL]}``: a method's cell is mean (std) over its runs of each
    run's pooled rate; an axis cell averages a run's rates (and drops against its own IND) over
    the axis's tasks first. Reference: a plain loop over the episodes."""
    rows = _records()
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in rows))
    out = tmp_path / "rep"
    assert main([f"results={path}", f"out={out}", "runs={BASE:[SFT],M:[SFT,RL]}"]) == 0

    def rate(policy, task):
        eps = [r.success for r in rows if (r.policy, r.task) == (policy, task)]
        return sum(eps) / len(eps)

    def ood(policy, tasks):
        return sum(rate(policy, t) for t in tasks) / len(tasks)

    def drop(policy, tasks):
        ind = rate(policy, "ind")
        return sum((rate(policy, t) - ind) / ind for t in tasks) / len(tasks)

    got = {
        (r["method"], r["task"] or r["axis"], r["quantity"]): r
        for r in csv.DictReader((out / "runs.csv").open())
    }
    for task in ("ind", "obj", "robot-pose"):
        a, b = rate("SFT", task), rate("RL", task)
        row = got[("M", task, "rate")]
        assert float(row["mean"]) == pytest.approx((a + b) / 2)
        assert float(row["std"]) == pytest.approx(abs(a - b) / 2)  # population std of two
        assert row["runs"] == f"SFT={a!r} RL={b!r}" and row["n_runs"] == "2"
    vision = ["table", "noise-w"]
    row = got[("M", "vision", "ood_rate")]
    assert float(row["mean"]) == pytest.approx((ood("SFT", vision) + ood("RL", vision)) / 2)
    row = got[("M", "vision", "relative_drop")]
    assert float(row["mean"]) == pytest.approx((drop("SFT", vision) + drop("RL", vision)) / 2)
    md = (out / "report.md").read_text()
    section = md[md.index("## Over training runs") :]
    m_vision = (ood("SFT", vision) + ood("RL", vision)) / 2
    delta = 100 * (m_vision - ood("SFT", vision))
    assert (
        f"| Vision | {ood('SFT', vision):.3f} | {m_vision:.3f} (.125) | {delta:+.1f} |" in section
    )
    capsys.readouterr()
    assert main([f"results={path}", f"out={out}", "runs={M:[SFT,PPO]}"]) == 2
    assert "runs.M: no policy PPO in the results (they hold SFT, RL)" in capsys.readouterr().err
